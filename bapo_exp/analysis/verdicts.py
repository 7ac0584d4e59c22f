"""Each claim of the papers as a computed verdict with its interval, n and per-base spread.

    from bapo_exp.analysis.verdicts import Claim, TrendClaim, claim_table
    claims = [Claim("anchor-knowledge", "BAPO keeps more knowledge than DPO at matched x",
                    treatment="BAPO lambda=0.01", control="DPO", metric="knowledge",
                    expected_sign=+1, levels=(0.25, 0.5, 0.75), by=("preference",))]
    table = claim_table(claims, curves)      # curves: see bapo_exp.analysis.matched

A :class:`Claim` compares two methods paired within (base, seed), at matched personalisation
(``levels``) or at equal strength (``levels=None``). A :class:`TrendClaim` tests the sign of a
slope (e.g. knowledge loss against measured heterogeneity). Both give rows of one schema
(:data:`ROW_COLS`), rendered by :func:`bapo_exp.analysis.report.to_markdown`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bapo_exp.analysis.matched import (
    START,
    check_columns,
    matched,
    paired_at_strength,
    paired_differences,
)
from bapo_exp.analysis.stats import MIN_BASES, Interval, interval, verdict

ROW_COLS = (
    "claim", "statement", "treatment", "control", "metric", "compare", "at", "group",
    "n_bases", "n_pairs", "n_not_reached_treatment", "n_not_reached_control", "n_missing",
    "estimate", "lo", "hi", "ci", "interval", "verdict", "bases_expected", "per_base",
)  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """A paired comparison, ``treatment - control``, with the sign the claim predicts.

    Args:
        id: short key, sorts the report (e.g. ``"A1-knowledge"``).
        statement: the claim in words, printed beside its verdict.
        treatment, control: method labels as in the table's ``method`` column.
        metric: the compared column (e.g. ``"knowledge"``).
        expected_sign: +1 if the claim predicts ``treatment > control``, -1 for ``<``.
        levels: personalisation levels to match at; ``None`` compares at fixed strength.
        strengths: with ``levels=None``, the strengths to compare (``None``: all but the start).
        by: columns that split the table into groups, each with its own verdict.
        where: filters ``((column, value), ...)``; a tuple value means "any of these".
        x: the personalisation column for ``levels``.
    """

    id: str
    statement: str
    treatment: str
    control: str
    metric: str
    expected_sign: int
    levels: tuple[float, ...] | None = (0.25, 0.5, 0.75)
    strengths: tuple[float, ...] | None = None
    by: tuple[str, ...] = ()
    where: tuple[tuple[str, Any], ...] = ()
    x: str = "x"

    def __post_init__(self) -> None:
        _check_sign(self.id, self.expected_sign)


@dataclass(frozen=True)
class TrendClaim:
    """The sign of the slope of ``y`` against ``x`` (e.g. loss against heterogeneity).

    ``design`` names the column that identifies a point across seeds (e.g. ``exposure``); by
    default ``x`` itself. Other fields as in :class:`Claim`.
    """

    id: str
    statement: str
    x: str
    y: str
    expected_sign: int
    by: tuple[str, ...] = ()
    where: tuple[tuple[str, Any], ...] = ()
    design: str | None = None

    def __post_init__(self) -> None:
        _check_sign(self.id, self.expected_sign)


def _check_sign(claim_id: str, sign: Any) -> None:
    if sign not in (1, -1):
        raise ValueError(f"claim {claim_id!r}: expected_sign must be +1 or -1, got {sign!r}")


def select(df: pd.DataFrame, where: Sequence[tuple[str, Any]]) -> pd.DataFrame:
    """Rows matching every ``(column, value)``; a tuple/list value matches any of its items."""
    check_columns(df, [c for c, _ in where], "claim filter")
    keep = pd.Series(True, index=df.index)
    for col, value in where:
        allowed = list(value) if isinstance(value, (tuple, list)) else [value]
        keep &= df[col].isin(allowed)
    return df[keep]


def group_label(by: Sequence[str], key: Sequence[Any]) -> str:
    """``"preference=concise, exposure=0.1"``; ``"all"`` without groups."""
    return ", ".join(f"{c}={v}" for c, v in zip(by, key, strict=True)) or "all"


def summarise(
    units: pd.DataFrame,
    expected_sign: int,
    n_not_reached: tuple[int, int] = (0, 0),
    method: str = "bootstrap",
    ci: float = 0.95,
    n_boot: int = 2000,
    rng: int = 0,
    min_bases: int = MIN_BASES,
) -> dict[str, Any]:
    """The statistics part of a row from units (base, seed, value): interval, verdict, spread.

    ``bases_expected`` is ``"k/n"``: of the ``n`` bases with a value, ``k`` have a per-base
    mean strictly on the expected side of 0.
    """
    res: Interval = interval(units, "value", method=method, ci=ci, n_boot=n_boot, rng=rng)
    k = sum(expected_sign * v > 0 for v in res.per_base.values())
    return {
        "n_bases": res.n_bases,
        "n_pairs": res.n_units,
        "n_not_reached_treatment": n_not_reached[0],
        "n_not_reached_control": n_not_reached[1],
        "estimate": res.estimate,
        "lo": res.lo,
        "hi": res.hi,
        "ci": ci,
        "interval": method,
        "verdict": verdict(
            res.lo, res.hi, expected_sign, res.n_bases, sum(n_not_reached), min_bases
        ),
        "bases_expected": f"{k}/{res.n_bases}",
        "per_base": res.per_base,
    }


def _pairs(claim: Claim, df: pd.DataFrame, start: float | None, base_method: str | None):
    """The claim's paired differences and the name of the column they are compared at."""
    by = list(claim.by)
    if claim.levels is not None:
        m = matched(df, claim.levels, [claim.metric], by, claim.x, start, base_method)
        return paired_differences(m, claim.treatment, claim.control, by), "level"
    pairs = paired_at_strength(
        df, claim.treatment, claim.control, [claim.metric], by, claim.strengths, start, base_method
    )
    return pairs, "strength"


def claim_rows(
    claim: Claim,
    df: pd.DataFrame,
    start: float | None = START,
    base_method: str | None = None,
    **stats: Any,
) -> list[dict[str, Any]]:
    """One row per (group, level or strength) of a paired claim (see :func:`claim_table`)."""
    sub = select(df, claim.where)
    sub = sub[sub["method"].isin([claim.treatment, claim.control, base_method])]
    pairs, at = _pairs(claim, sub, start, base_method)
    rows = []
    for key, g in pairs.groupby([*claim.by, at], sort=True, dropna=False):
        not_reached = tuple(
            int((g[f"{side}_status"] == "not reached").sum()) for side in ("treatment", "control")
        )
        missing = (g["treatment_status"] == "missing") | (g["control_status"] == "missing")
        units = g[["base", "seed"]].assign(value=g["diff"])
        rows.append(
            {
                "claim": claim.id,
                "statement": claim.statement,
                "treatment": claim.treatment,
                "control": claim.control,
                "metric": claim.metric,
                "compare": "matched x" if at == "level" else "fixed strength",
                "at": float(key[-1]),
                "group": group_label(claim.by, key[:-1]),
                "n_missing": int(missing.sum()),
                **summarise(units, claim.expected_sign, not_reached, **stats),
            }
        )
    return rows


def base_slopes(
    df: pd.DataFrame,
    x: str,
    y: str,
    by: Sequence[str] = (),
    design: str | None = None,
    average_seeds: bool = True,
) -> pd.DataFrame:
    """Least-squares slope of ``y`` on ``x`` per (by..., base), seeds averaged first.

    With ``average_seeds`` (the issue's rule), ``x`` and ``y`` are averaged over seeds at each
    ``design`` point (default: each distinct ``x``) and one slope is fitted per base (its
    ``seed`` is 0). ``average_seeds=False`` fits one slope per (base, seed) instead, for the
    two-stage bootstrap. Rows with a NaN ``x`` or ``y`` are dropped; a fit over fewer than 2
    distinct ``x`` values gives a NaN slope. Returns by..., base, seed, value (the slope),
    n_points.
    """
    design = design or x
    check_columns(df, list(dict.fromkeys([*by, "base", "seed", x, y, design])), "trend")
    pts = df[list(dict.fromkeys([*by, "base", "seed", x, y, design]))].copy()
    pts[[x, y]] = pts[[x, y]].apply(pd.to_numeric, errors="coerce")
    pts = pts.dropna(subset=[x, y])
    if average_seeds:
        keys = [*by, "base"]
        values = [y] if design == x else [x, y]
        pts = pts.groupby([*keys, design], dropna=False, sort=True)[values].mean().reset_index()
        pts["seed"] = 0
    keys = [*by, "base", "seed"]
    rows = []
    for key, g in pts.groupby(keys, dropna=False, sort=True):
        xs, ys = g[x].to_numpy(float), g[y].to_numpy(float)
        dx = xs - xs.mean()
        ss = float(dx @ dx)
        slope = float(dx @ (ys - ys.mean()) / ss) if ss > 0 else np.nan
        rows.append({**dict(zip(keys, key, strict=True)), "value": slope, "n_points": len(g)})
    return pd.DataFrame(rows, columns=[*keys, "value", "n_points"])


def trend(
    df: pd.DataFrame,
    x: str,
    y: str,
    by: Sequence[str] = (),
    expected_sign: int = 1,
    design: str | None = None,
    average_seeds: bool = True,
    claim_id: str = "trend",
    statement: str = "",
    **stats: Any,
) -> pd.DataFrame:
    """The sign of the slope of ``y`` against ``x``, per ``by`` group, as verdict rows.

    Per base: the least-squares slope over that base's points, seeds averaged first
    (:func:`base_slopes`); then the interval over bases of the slope (hierarchical bootstrap by
    default; with ``average_seeds`` there is one unit per base, so it resamples bases only) and
    :func:`~bapo_exp.analysis.stats.verdict` on its sign. ``stats`` go to :func:`summarise`
    (``method``, ``ci``, ``n_boot``, ``rng``, ``min_bases``).

    Returns:
        Rows of :data:`ROW_COLS`; ``metric`` is ``y``, ``compare`` is ``"slope on <x>"``.
    """
    slopes = base_slopes(df, x, y, by, design, average_seeds)
    rows = []
    for key, g in slopes.groupby(list(by), sort=True, dropna=False) if by else [((), slopes)]:
        key = key if isinstance(key, tuple) else (key,)
        row = {
            "claim": claim_id,
            "statement": statement,
            "treatment": "",
            "control": "",
            "metric": y,
            "compare": f"slope on {x}",
            "at": np.nan,
            "group": group_label(by, key),
            "n_missing": int(g["value"].isna().sum()),
            **summarise(g[["base", "seed", "value"]], expected_sign, **stats),
        }
        rows.append(row)
    return pd.DataFrame(rows, columns=list(ROW_COLS))


def claim_table(
    claims: Sequence[Claim | TrendClaim],
    df: pd.DataFrame,
    method: str = "bootstrap",
    ci: float = 0.95,
    n_boot: int = 2000,
    rng: int = 0,
    min_bases: int = MIN_BASES,
    start: float | None = START,
    base_method: str | None = None,
) -> pd.DataFrame:
    """The verdict table: one row per (claim, level or strength, group).

    Each row: n_bases and n_pairs with a value, not-reached counts per side, n_missing, the
    estimate (mean over bases of the mean over seeds of the paired difference, or of the slope),
    its interval (``method="bootstrap"``: the hierarchical bootstrap, the issue's choice and our
    default; ``"t"``: the t-interval over per-base means, the conservative check for few bases),
    the verdict, per-base estimates and ``bases_expected`` ("3/4": bases whose estimate has the
    expected sign). A pair enters only when both methods reached the level, so a verdict is
    over the (base, seed) units where both did; the not-reached counts say how many were left
    out. A level the untrained base already reaches gives both methods the base's value (a
    difference of exactly 0). Every row's bootstrap starts from the same seed ``rng``, so a row
    does not change when claims are added or reordered (ours). ``start`` and ``base_method``
    go to :func:`~bapo_exp.analysis.matched.matched` and ``paired_at_strength``.
    """
    stats = {"method": method, "ci": ci, "n_boot": n_boot, "rng": rng, "min_bases": min_bases}
    rows: list[dict[str, Any]] = []
    for claim in claims:
        if isinstance(claim, TrendClaim):
            sub = select(df, claim.where)
            t = trend(
                sub, claim.x, claim.y, claim.by, claim.expected_sign, claim.design,
                claim_id=claim.id, statement=claim.statement, **stats,
            )  # fmt: skip
            rows.extend(t.to_dict("records"))
        else:
            rows.extend(claim_rows(claim, df, start, base_method, **stats))
    return pd.DataFrame(rows, columns=list(ROW_COLS))


def per_base_table(table: pd.DataFrame) -> pd.DataFrame:
    """The verdict table's per-base estimates, one row per (claim, metric, compare, at, group,
    base): what a figure needs to show whether a verdict holds for each base."""
    keys = ["claim", "metric", "compare", "at", "group"]
    rows = [
        {**{k: r[k] for k in keys}, "base": base, "estimate": value}
        for r in table.to_dict("records")
        for base, value in r["per_base"].items()
    ]
    return pd.DataFrame(rows, columns=[*keys, "base", "estimate"])
