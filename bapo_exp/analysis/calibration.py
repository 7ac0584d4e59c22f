"""Calibration on the calibration bases only (docs/STUDY_PROTOCOL.md sections 4, 5): the regime
(learning rate, horizon, evaluation steps) and the primary anchor weight.

    python -m bapo_exp.analysis.study runs/study --calibrate     # make study-calibrate

writes ``regime.csv``, ``anchor.csv``, ``choice.json``, ``calibration.png|pdf`` and the generated
presets ``conf/experiment/study_regime.yaml`` and ``conf/method/bapo_study.yaml`` that every
test preset uses. :func:`choose` drops every row whose base is not a calibration base before
anything else (``protocol.CALIBRATION_BASES``): the choice cannot depend on a test base.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.verdicts import Frontiers, frontier_units, runs, select

REPO = Path(__file__).resolve().parents[2]
DPO = (("method_name", "dpo"), ("beta", P.DEFAULT_BETA))


def main_where(design: dict | None) -> tuple:
    """The main design point's filters (``claims.where``): the protocol's, or ``design`` over
    it for another grid (a null value: no filter)."""
    from bapo_exp.analysis.claims import where

    return where({"design": design})


def calibration_rows(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows of calibration bases, and only those (the base decides, not a stored role)."""
    return cells[cells["base"].map(P.role) == "calibration"]


def median_curve(
    cal: pd.DataFrame, lr: float, horizon: int, design: dict | None = None
) -> pd.DataFrame:
    """DPO's pointwise median over the calibration runs of one regime, per evaluated step
    (step 0: the untrained bases): ``x``, ``well_formed``, ``logodds`` and ``n`` runs."""
    pts = runs(cal, (*DPO, *main_where(design), ("lr", lr), ("horizon", horizon)))
    g = pts.groupby("step")
    out = g[["x", "well_formed", "logodds"]].median()
    out["n"] = g["cell"].nunique()
    return out.reset_index()


def crossing(steps: np.ndarray, values: np.ndarray, level: float) -> float:
    """The first step where ``values`` reach ``level``, linear between evaluated steps."""
    hit = np.flatnonzero(values >= level)
    if hit.size == 0:
        return math.nan
    i = hit[0]
    if i == 0:
        return float(steps[0])
    s0, s1, v0, v1 = steps[i - 1], steps[i], values[i - 1], values[i]
    return float(s0 + (level - v0) / (v1 - v0) * (s1 - s0))


def regime_row(curve: pd.DataFrame, horizon: int) -> dict:
    """The protocol's regime criterion on one median curve (section 4), item by item."""
    steps, x = curve["step"].to_numpy(float), curve["x"].to_numpy(float)
    t50 = crossing(steps, x, P.CROSS)
    frac = t50 / horizon
    before = int(((steps > 0) & (steps < t50)).sum()) if math.isfinite(t50) else 0
    drop = float(np.max(np.maximum.accumulate(x) - x))
    wf = curve["well_formed"].min()
    lo, hi = P.CROSS_WINDOW
    checks = {
        "crosses_mid": bool(math.isfinite(frac) and lo <= frac <= hi),
        "resolved": before >= P.MIN_POINTS_BEFORE,
        "no_collapse": drop <= P.COLLAPSE_DROP and not (wf < P.MIN_WELL_FORMED),
        "reaches": bool(x[-1] >= P.FINAL_REACH),
    }
    return {
        "t50": t50,
        "t50_frac": frac,
        "points_before": before,
        "max_drop": drop,
        "min_well_formed": wf,
        "final_x": float(x[-1]),
        "runs": int(curve["n"].min()),
        **checks,
        "passes": all(checks.values()),
    }


def regime_table(cal: pd.DataFrame, design: dict | None = None) -> pd.DataFrame:
    """One row per candidate (learning rate, horizon) of DPO on the calibration bases."""
    dpo = cal[(cal["method_name"] == "dpo") & (cal["beta"] == P.DEFAULT_BETA)]
    rows = []
    for (lr, horizon), _ in dpo.groupby(["lr", "horizon"], sort=True):
        curve = median_curve(cal, lr, horizon, design)
        rows.append({"lr": lr, "horizon": int(horizon), **regime_row(curve, int(horizon))})
    return pd.DataFrame(rows)


def choose_regime(table: pd.DataFrame) -> pd.Series | None:
    """Among passing candidates: t50 / horizon closest to 0.5, then shorter, then lower lr."""
    ok = table[table["passes"]]
    if ok.empty:
        return None
    order = ok.assign(_d=(ok["t50_frac"] - 0.5).abs()).sort_values(["_d", "horizon", "lr"])
    return order.iloc[0]


def anchor_table(
    cal: pd.DataFrame, lr: float, horizon: int, design: dict | None = None
) -> pd.DataFrame:
    """Per anchor weight at the regime: mean coverage of the x-range, whether every run covers
    it, and the score (mean frontier gap against DPO's pooled control, over units and over
    knowledge and alignment)."""
    regime = (("lr", lr), ("horizon", horizon))
    bapo = cal[(cal["method_name"] == "bapo") & (cal["lr"] == lr) & (cal["horizon"] == horizon)]
    rows = []
    for weight in sorted(bapo["anchor_weight"].dropna().unique()):
        t = (("method_name", "bapo"), ("anchor_weight", weight), ("beta", P.DEFAULT_BETA))
        c = (("method_name", "dpo"), ("beta", P.CONTROL_BETAS))
        gaps, cov = [], None
        for metric in ("knowledge", "alignment"):
            f = Frontiers(
                "cal",
                "C1",
                "",
                "",
                "",
                t + main_where(design) + regime,
                c + main_where(design) + regime,
                metric,
            )
            u = frontier_units(f, cal)
            gaps.append(u["value"].mean())
            cov = u["coverage_t"]
        rows.append(
            {
                "anchor_weight": weight,
                "runs": len(cov),
                "coverage": cov.mean(),
                "covers_all": bool(len(cov) and (cov >= 1).all()),
                "gap_knowledge": gaps[0],
                "gap_alignment": gaps[1],
                "score": _mean(gaps),
            }
        )
    return pd.DataFrame(rows)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def choose_anchor(table: pd.DataFrame) -> tuple[float | None, str]:
    """The protocol's rule (section 5), and the reason in words."""
    if table.empty:
        return None, "no BAPO runs on the calibration bases"
    full = table[table["covers_all"]]
    if not full.empty:
        best = full.sort_values(["score", "anchor_weight"], ascending=[False, True]).iloc[0]
        return float(best["anchor_weight"]), (
            f"highest score ({best['score']:+.4f}) among the {len(full)} weights whose every "
            "calibration run covers the x-range"
        )
    best = table.sort_values(["coverage", "anchor_weight"], ascending=[False, True]).iloc[0]
    return float(best["anchor_weight"]), (
        f"FLAGGED: no weight covers the x-range in every calibration run; highest mean "
        f"coverage ({best['coverage']:.2f})"
    )


def logodds_range(
    cal: pd.DataFrame, lr: float, horizon: int, design: dict | None = None
) -> list[float] | None:
    """The median DPO logodds where the median style share crosses the ends of the x-range."""
    curve = median_curve(cal, lr, horizon, design)
    if curve["logodds"].isna().all():
        return None
    steps = curve["step"].to_numpy(float)
    at = [crossing(steps, curve["x"].to_numpy(float), level) for level in P.X_RANGE]
    if not all(map(math.isfinite, at)):
        return None
    return [float(np.interp(s, steps, curve["logodds"].to_numpy(float))) for s in at]


def het_range(
    cal: pd.DataFrame, lr: float, horizon: int, design: dict | None = None
) -> list[float] | None:
    """Heterogeneity's x-range (protocol section 9): from the bottom of the x-range to the
    highest of ``HET_TOPS`` that DPO's median calibration run reaches at its last step for
    every number of mixed preferences; None if not even the lowest (P5 then compares losses
    after the full horizon)."""
    from bapo_exp.analysis.claims import where

    fixed = (
        *DPO,
        ("lr", lr),
        ("horizon", horizon),
        *where({"design": design}, "exposure", "n_pairs"),
    )
    dpo = select(cal, fixed)
    last = dpo[dpo["step"] == horizon].groupby("k_prefs")["x"].median()
    if not set(P.K_PREFS) <= set(last.index):
        return None
    top = float(last.loc[list(P.K_PREFS)].min())
    return next(([P.X_RANGE[0], h] for h in P.HET_TOPS if top >= h), None)


def choose(
    cells: pd.DataFrame, design: dict | None = None
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """``choice.json``'s content, the regime table and the anchor table, from the calibration
    rows of ``cells`` (all other rows are dropped first); ``design``: another main design point
    than the protocol's (for another grid), recorded in the choice."""
    cal = calibration_rows(cells)
    regimes = regime_table(cal, design)
    pick = choose_regime(regimes) if not regimes.empty else None
    if pick is None:
        raise ValueError(
            "no candidate regime passes the protocol's criterion on the "
            "calibration bases: widen the calibration grid (a deviation)"
        )
    lr, horizon = float(pick["lr"]), int(pick["horizon"])
    anchors = anchor_table(cal, lr, horizon, design)
    weight, why = choose_anchor(anchors)
    choice = {
        "provisional": False,
        "calibration_bases": sorted(int(b) for b in cal["base"].unique()),
        "lr": lr,
        "horizon": horizon,
        "eval_steps": P.eval_steps(horizon),
        "regime_reason": f"t50 at {pick['t50_frac']:.2f} of the horizon, "
        f"{int(pick['points_before'])} points before it",
        "anchor_weight": weight,
        "anchor_reason": why,
        "logodds_range": logodds_range(cal, lr, horizon, design),
        "het_range": het_range(cal, lr, horizon, design),
    }
    if design:
        choice["design"] = design
    return choice, regimes, anchors


HEADER = (
    "# GENERATED by `make study-calibrate` then `make study-choose` from\n"
    "# results/study_calibration/choice.json ({what};\n"
    "# docs/STUDY_PROTOCOL.md section {sec}). Do not edit: re-run the calibration.\n"
)


def presets(choice: dict) -> dict[str, str]:
    """The generated presets' text (relative path -> content)."""
    note = (
        "PROVISIONAL, not calibrated"
        if choice.get("provisional")
        else (f"calibration bases {', '.join(map(str, choice['calibration_bases']))}")
    )
    steps = [s for s in choice["eval_steps"] if s < choice["horizon"]]
    regime = (
        "# @package _global_\n"
        + HEADER.format(what=note, sec=4)
        + "defaults:\n  - study\n  - _self_\nname: study_regime\n"
        + f"train:\n  lr: {choice['lr']:g}\n  steps: {choice['horizon']}\n"
        f"eval:\n  at_steps: [{', '.join(map(str, steps))}]  # + the last step\n"
    )
    weight = choice.get("anchor_weight")
    method = (
        HEADER.format(what=note, sec=5)
        + "defaults:\n  - bapo\n  - _self_\nanchor:\n"
        + (
            f"  weight: {weight:g}\n"
            if weight is not None
            else "  weight: ???  # not chosen yet: run study_calibrate_anchor and calibrate\n"
        )
    )
    return {"conf/experiment/study_regime.yaml": regime, "conf/method/bapo_study.yaml": method}


def write(
    choice: dict,
    regimes: pd.DataFrame,
    anchors: pd.DataFrame,
    out: Path,
    repo: Path = REPO,
    presets_too: bool = True,
) -> list[Path]:
    """``regime.csv``, ``anchor.csv``, ``choice.json`` into ``out``; with ``presets_too``, the
    generated presets into ``repo``'s ``conf/``."""
    out.mkdir(parents=True, exist_ok=True)
    regimes.to_csv(out / "regime.csv", index=False)
    anchors.to_csv(out / "anchor.csv", index=False)
    (out / "choice.json").write_text(json.dumps(choice, indent=1, sort_keys=True) + "\n")
    paths = [out / "regime.csv", out / "anchor.csv", out / "choice.json"]
    for rel, text in presets(choice).items() if presets_too else ():
        (repo / rel).write_text(text)
        paths.append(repo / rel)
    return paths
