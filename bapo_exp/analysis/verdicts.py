"""Contrasts as per-unit values, and the verdict table (docs/STUDY_PROTOCOL.md sections 6-9).

    rows = verdict_rows([Frontiers(...), Endpoint(...), Slope(...)], cells)

Model-agnostic: a contrast names its runs by column values of the study's table (``cells.csv``:
one row per (cell, evaluated step), ``analysis.load.CELL_COLUMNS``), so the same code runs on
any grid with evaluation points. A *run* is a cell; its points are its evaluated steps and, as
step 0, the untrained base of its (base, exposure) (``method_name == "none"``). A *unit* is a
(base, seed). Every contrast gives one value per unit; :func:`verdict_rows` summarises them
over bases, applies Holm over the primary family and reads each verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bapo_exp.analysis.frontier import coverage, fit, frontier_mean, mean_gap
from bapo_exp.analysis.protocol import ALPHA, MIN_BASES, N_BOOT, X_RANGE
from bapo_exp.analysis.stats import holm, mde, needed, summarise, verdict

Where = tuple[tuple[str, Any], ...]
NOT_MATCHED = "not matched"  # a claim "at equal personalisation" the runs cannot be matched for
UNIT = ["base", "seed"]
ROW_COLS = (
    "id",
    "family",
    "claim",
    "statement",
    "treatment",
    "control",
    "metric",
    "outcome",
    "n_bases",
    "n_units",
    "n_no_value",
    "estimate",
    "lo",
    "hi",
    "ci",
    "p",
    "p_holm",
    "verdict",
    "note",
    "agree",
    "need",
    "mde",
    "reach",
    "reach_lo",
    "reach_hi",
    "per_base",
)


@dataclass(frozen=True)
class Frontiers:
    """Treatment frontier minus control frontier, averaged over ``x_range`` (section 6); the
    control's runs are pooled within a unit (e.g. DPO over beta) before the fit. ``reach_c``:
    the runs whose coverage the treatment's is compared with in the reach outcome (default the
    control's; protocol section 13, R2: one run against one run, DPO at the treatment's beta)."""

    id: str
    claim: str
    statement: str
    treatment: str  # labels, for the tables
    control: str
    where_t: Where
    where_c: Where
    metric: str
    x: str = "x"
    x_range: tuple[float, float] = X_RANGE
    kind: str = "isotonic"
    expected_sign: int = 1
    family: str = "primary"
    reach_c: Where | None = None


@dataclass(frozen=True)
class Endpoint:
    """Treatment minus control at each run's last step, paired within a unit and a value of
    ``pool`` (e.g. the training-set size), then averaged over ``pool``."""

    id: str
    claim: str
    statement: str
    treatment: str
    control: str
    where_t: Where
    where_c: Where
    metric: str
    pool: str = "n_pairs"
    expected_sign: int = 1
    family: str = "primary"


@dataclass(frozen=True)
class Slope:
    """The per-unit least-squares slope of a loss (the base's score minus the run's: at matched
    personalisation, ``outcome="matched"``, the run frontier's mean over ``x_range``; or at its
    last step, ``"final"``) against ``against`` (``k_prefs``, or ``log_distance``: the log of the
    run's measured distance), over the design points ``design`` takes among the runs of
    ``where``. A unit needs ``min_points`` design points with a value."""

    id: str
    claim: str
    statement: str
    treatment: str
    where: Where
    design: str
    against: str
    metric: str
    outcome: str = "matched"
    x_range: tuple[float, float] = X_RANGE
    min_points: int = 3
    expected_sign: int = 1
    family: str = "primary"
    control: str = ""
    unmatched: str = ""  # why it cannot be judged as claimed (verdict "not matched", p = 1)


Contrast = Frontiers | Endpoint | Slope


def select(df: pd.DataFrame, where: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    """Rows matching every ``(column, value)``; a tuple/list value matches any of its items."""
    missing = [c for c, _ in where if c not in df]
    if missing:
        raise KeyError(f"filter columns {missing} not in the table (has {list(df.columns)})")
    keep = pd.Series(True, index=df.index)
    for col, value in where:
        allowed = list(value) if isinstance(value, tuple | list) else [value]
        keep &= df[col].isin(allowed)
    return df[keep]


# What a run's start (its base's row at step 0) takes from the run rather than from the base.
IDENTITY = [
    "cell",
    "role",
    "seed",
    "method",
    "method_name",
    "beta",
    "anchor_weight",
    "ctro_eps",
    "lr",
    "horizon",
    "n_pairs",
    "preferences",
    "k_prefs",
    "distance",
    "clip_frac",
    "ref_disagreement",
]


def runs(cells: pd.DataFrame, where: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    """The trained runs matching ``where``, each with its untrained base (same base and
    exposure) as step 0; a run without a base row has no step 0."""
    trained = select(cells[cells["method_name"] != "none"], where)
    starts = cells[cells["method_name"] == "none"].drop_duplicates(["base", "exposure"])
    ident = [c for c in IDENTITY if c in cells]
    heads = trained.drop_duplicates("cell")[["base", "exposure", *ident]]
    first = heads.merge(starts.drop(columns=ident), on=["base", "exposure"], how="inner")
    return pd.concat([trained, first.assign(step=0)[trained.columns]], ignore_index=True)


def frontier_units(c: Frontiers, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per unit: ``value`` (the gap, NaN if not reached), each side's coverage and
    ``reach`` (treatment coverage minus control coverage)."""
    t, k = runs(cells, c.where_t), runs(cells, c.where_c)
    controls = dict(tuple(k.groupby(UNIT, sort=False)))
    reach_runs = controls if c.reach_c is None else dict(
        tuple(runs(cells, c.reach_c).groupby(UNIT, sort=False))
    )  # fmt: skip
    rows = []
    for key, tg in t.groupby(UNIT, sort=True):
        kg = controls.get(key)
        if kg is None:
            continue
        ft = fit(tg[c.x], tg[c.metric], c.kind)
        fc = fit(kg[c.x], kg[c.metric], c.kind)
        g = mean_gap(ft, fc, c.x_range)
        rg = reach_runs.get(key)
        cov_r = g.coverage_c if c.reach_c is None else (
            math.nan if rg is None else coverage(float(rg[c.x].max()), c.x_range)
        )  # fmt: skip
        rows.append(
            {
                "base": key[0],
                "seed": key[1],
                "value": g.gap,
                "coverage_t": g.coverage_t,
                "coverage_c": g.coverage_c,
                "reach": g.coverage_t - cov_r,
            }
        )
    return pd.DataFrame(rows, columns=[*UNIT, "value", "coverage_t", "coverage_c", "reach"])


def last_points(cells: pd.DataFrame, where: Where) -> pd.DataFrame:
    """Each matching trained run's row at its last evaluated step."""
    trained = select(cells[cells["method_name"] != "none"], where)
    return trained.loc[trained.groupby("cell")["step"].idxmax()]


def endpoint_units(c: Endpoint, cells: pd.DataFrame) -> pd.DataFrame:
    keys = [*UNIT, c.pool]
    t = last_points(cells, c.where_t).groupby(keys)[c.metric].mean()
    k = last_points(cells, c.where_c).groupby(keys)[c.metric].mean()
    diff = (t - k).dropna().rename("value").reset_index()
    return diff.groupby(UNIT)["value"].mean().reset_index()


def run_losses(c: Slope, cells: pd.DataFrame) -> pd.DataFrame:
    """Per run: its unit, design value, ``against`` value and the loss (NaN if not reached)."""
    pts = runs(cells, c.where)
    rows = []
    for cell, g in pts.groupby("cell", sort=True):
        g = g.sort_values("step")
        start = float(g[c.metric].iloc[0])
        if c.outcome == "matched":
            kept = frontier_mean(fit(g["x"], g[c.metric]), c.x_range)
        else:
            kept = float(g[c.metric].iloc[-1])
        head = g.iloc[-1]
        if c.against == "log_distance":
            d = float(head["distance"])
            against = math.log(d) if d > 0 else math.nan
        else:
            against = float(head[c.against])
        rows.append(
            {
                "cell": cell,
                "base": head["base"],
                "seed": head["seed"],
                "design": head[c.design],
                "against": against,
                "loss": start - kept,
            }
        )
    return pd.DataFrame(rows, columns=["cell", *UNIT, "design", "against", "loss"])


def slope_units(c: Slope, cells: pd.DataFrame) -> pd.DataFrame:
    """One row per unit with runs at ``min_points`` design points or more: the slope, NaN when
    some of those runs did not reach the x-range (fewer than ``min_points`` values left)."""
    rows = []
    for key, g in run_losses(c, cells).groupby(UNIT, sort=True):
        if g["design"].nunique() < c.min_points:
            continue  # not run at enough design points: no unit
        g = g.dropna(subset=["against", "loss"])
        ok = g["against"].nunique() >= c.min_points
        slope = float(np.polyfit(g["against"], g["loss"], 1)[0]) if ok else math.nan
        rows.append({"base": key[0], "seed": key[1], "value": slope})
    return pd.DataFrame(rows, columns=[*UNIT, "value"])


def units(c: Contrast, cells: pd.DataFrame) -> pd.DataFrame:
    """The contrast's value per unit (``base``, ``seed``, ``value``, ...)."""
    if isinstance(c, Frontiers):
        return frontier_units(c, cells)
    if isinstance(c, Endpoint):
        return endpoint_units(c, cells)
    return slope_units(c, cells)


def _row(
    c: Contrast,
    u: pd.DataFrame,
    reject: bool,
    level: float,
    p_adj: float,
    m: int,
    n_boot: int,
    rng: int,
) -> dict[str, Any]:
    s = summarise(u, n_boot=n_boot, rng=rng)
    ci = 1 - level
    lo, hi = s.interval(ci)
    reach, reach_lo, reach_hi = _reach(u, n_boot, rng)
    sign = c.expected_sign
    unreached = u.loc[~u["base"].isin(s.per_base), "base"].nunique()
    word, note = verdict(
        lo,
        hi,
        sign,
        s.n_bases,
        s.agreeing(sign),
        s.agreeing(-sign),
        reject,
        s.constant,
        bool(reach_hi < 0),
        unreached,
    )
    if getattr(c, "unmatched", "") and s.n_bases:  # a contrast without runs stays "not run"
        word, note = NOT_MATCHED, c.unmatched
    return {
        "id": c.id,
        "family": c.family,
        "claim": c.claim,
        "statement": c.statement,
        "treatment": c.treatment,
        "control": c.control,
        "metric": c.metric,
        "outcome": _outcome(c),
        "n_bases": s.n_bases,
        "n_units": len(u),
        "n_no_value": int(u["value"].isna().sum()),
        "estimate": s.estimate,
        "lo": lo,
        "hi": hi,
        "ci": ci,
        "p": s.p_value(),
        "p_holm": p_adj,
        "verdict": word,
        "note": note,
        "agree": s.agreeing(sign),
        "need": needed(s.n_bases),
        "mde": mde(s.sd, s.n_bases, alpha=ALPHA / m),
        "reach": reach,
        "reach_lo": reach_lo,
        "reach_hi": reach_hi,
        "per_base": s.per_base,
    }


def _reach(u: pd.DataFrame, n_boot: int, rng: int) -> tuple[float, float, float]:
    """The reach outcome (treatment minus control coverage) with its unadjusted 95% interval;
    NaN for a contrast without one."""
    if "reach" not in u or u["reach"].isna().all():
        return math.nan, math.nan, math.nan
    r = summarise(u.assign(value=u["reach"]), n_boot=n_boot, rng=rng)
    return (r.estimate, *r.interval(1 - ALPHA))


def _p(c: Contrast, u: pd.DataFrame, n_boot: int, rng: int) -> float:
    """A primary's p-value for Holm; NaN (p = 1 in the family) when its verdict cannot be
    "supported" or "refuted" whatever the test says (fewer than ``MIN_BASES`` bases, a constant
    outcome, a treatment that covers credibly less of the range, a claim the runs cannot be
    matched for), so an undecidable contrast never spends a step of Holm's and loosens the
    others'."""
    if getattr(c, "unmatched", ""):
        return math.nan
    s = summarise(u, n_boot=n_boot, rng=rng)
    if s.n_bases < MIN_BASES or s.constant or _reach(u, n_boot, rng)[2] < 0:
        return math.nan
    return s.p_value()


def _outcome(c: Contrast) -> str:
    if isinstance(c, Frontiers):
        lo, hi = c.x_range
        return f"{c.kind} frontier gap over {c.x} {lo:g}-{hi:g}"
    if isinstance(c, Endpoint):
        return f"at the last step, mean over {c.pool}"
    where = "at matched frontier" if c.outcome == "matched" else "after the full horizon"
    return f"slope on {c.against} {where}"


def verdict_rows(
    contrasts: Sequence[Contrast], cells: pd.DataFrame, n_boot: int = N_BOOT, rng: int = 0
) -> pd.DataFrame:
    """The verdict table: one row per contrast (``ROW_COLS``). Primaries: Holm over the family,
    intervals at their Holm level; secondaries: unadjusted 95% intervals. Every row's bootstrap
    starts from the seed ``rng``, so a row does not change when contrasts are added."""
    table = [(c, units(c, cells)) for c in contrasts]
    primary = [i for i, (c, _) in enumerate(table) if c.family == "primary"]
    p = [_p(table[i][0], table[i][1], n_boot, rng) for i in primary]
    reject, p_adj, levels = holm(p) if primary else ([], [], [])
    adjusted = {
        i: (bool(r), float(lv), float(pa))
        for i, r, lv, pa in zip(primary, reject, levels, p_adj, strict=True)
    }
    rows = []
    for i, (c, u) in enumerate(table):
        rej, level, pa = adjusted.get(i, (True, ALPHA, math.nan))
        m = len(primary) if i in adjusted else 1
        rows.append(_row(c, u, rej, level, pa, m, n_boot, rng))
    return pd.DataFrame(rows, columns=list(ROW_COLS))
