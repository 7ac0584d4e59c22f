"""The papers' claims as the study tests them (docs/STUDY_PROTOCOL.md sections 1, 7, 9): the
primary family and the secondary (exploratory) analyses, as contrasts over the test bases.

    table = verdict_table(read_cells("results/study/cells.csv"), choice)

``choice`` is the calibration's ``choice.json`` (``analysis.calibration``): the primary anchor
weight, the logodds and heterogeneity ranges, and optionally ``design``, the main design point
over the protocol's (``protocol.MAIN``; a null value drops that filter, e.g. ``exposure`` for a
pretrained model), so the same claims run on any grid. Only test-base rows enter.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bapo_exp.analysis.protocol import (
    CONTROL_BETAS,
    DEFAULT_BETA,
    EXPOSURES,
    MAIN,
    MRPO_EPS,
    N_BOOT,
    SCARCE,
    on_test_bases,
)
from bapo_exp.analysis.verdicts import Endpoint, Frontiers, Slope, verdict_rows

MIXES = ("concise", "concise,business", "concise,business,academic")  # k = 1, 2, 3
CLAIMS = {
    "C1": "Anchoring: at equal personalisation, BAPO keeps more knowledge and alignment than DPO",
    "C2": "Several references: with scarce data, a second reference helps the preference "
    "generalise",
    "C3": "Heterogeneity: forgetting grows with the heterogeneity of the preferences",
}
# P1, P2 and P5's outcomes: the continuous retention measures (1 - Brier score), protocol
# section 13, R1; the accuracies (the protocol's outcome as first written) are secondary S7.
METRICS = ("knowledge_skill", "alignment_skill")
ACCURACY = ("knowledge", "alignment")
UNMATCHED = (
    "no heterogeneity range was reached on calibration: the runs cannot be compared at "
    "equal personalisation; their loss after the full horizon is S5's (exploratory)"
)
POOLED = f"DPO (beta {', '.join(f'{b:g}' for b in CONTROL_BETAS)} pooled)"
DPO = (("method_name", "dpo"), ("beta", DEFAULT_BETA))
DPO_POOLED = (("method_name", "dpo"), ("beta", CONTROL_BETAS))
MRPO = (("method_name", "mrpo"), ("ctro_eps", MRPO_EPS))
RESCALED = (("method_name", "dpo_rescaled"), ("ctro_eps", MRPO_EPS))


def design(choice: dict | None = None) -> dict:
    """The main design point: the protocol's, with ``choice["design"]`` over it."""
    return {**MAIN, **((choice or {}).get("design") or {})}


def where(choice: dict | None = None, *keys: str, **values: Any) -> tuple:
    """Filters on the design's ``keys`` (all of them by default), ``values`` over them; a null
    value is no filter."""
    d = {**design(choice), **values}
    return tuple((k, d[k]) for k in (keys or d) if d[k] is not None)


def bapo_where(weight: float) -> tuple:
    return (("method_name", "bapo"), ("anchor_weight", weight), ("beta", DEFAULT_BETA))


def _anchor(choice: dict, weight: float, metric: str, pid: str, **kw: Any) -> Frontiers:
    """BAPO at ``weight`` against DPO's pooled frontier; its reach against DPO at beta 0.1
    alone (one run against one run, protocol section 13, R2)."""
    main = where(choice)
    args = {"control": POOLED, "where_c": DPO_POOLED + main, "reach_c": DPO + main} | kw
    statement = f"BAPO lambda={weight:g} keeps more {metric} than {args['control']} at equal "
    return Frontiers(
        pid,
        "C1",
        statement + "personalisation",
        f"BAPO lambda={weight:g}",
        where_t=bapo_where(weight) + where(choice),
        metric=metric,
        **args,
    )


def _refs(choice, pid, control, where_c, metric, sizes, **kw: Any) -> Endpoint:
    refs = where(choice, "exposure", "preferences") + (("n_pairs", sizes),)
    pairs = "/".join(f"{n:g}" for n in sizes)
    statement = (f"With {pairs} training pairs, MRPO eps={MRPO_EPS:g} ends with a larger "
                 f"held-out {metric} than {control}")  # fmt: skip
    return Endpoint(
        pid,
        "C2",
        statement,
        f"MRPO eps={MRPO_EPS:g}",
        control,
        MRPO + refs,
        where_c + refs,
        metric,
        **kw,
    )


def _het(choice: dict, outcome: str) -> dict:
    """Heterogeneity's x-range from the calibration; without one reached, "matched" falls back
    to "final" (protocol section 9) and cannot be judged as matched (section 13, R3): the
    primary and the secondary "matched" rows read "not matched", the "final" rows carry it."""
    if "het_range" not in choice:
        return {"outcome": outcome}
    if choice["het_range"] is None:
        return {"outcome": "final", **({"unmatched": UNMATCHED} if outcome == "matched" else {})}
    return {"outcome": outcome, "x_range": tuple(choice["het_range"])}


def _mixing(choice, method, by, metric, pid, outcome, **kw) -> Slope:
    design_ = where(choice, "exposure", "n_pairs", "preferences", preferences=MIXES)
    return Slope(
        pid,
        "C3",
        f"{method}: {metric} loss grows with the number of mixed preferences",
        method,
        by + design_,
        "k_prefs",
        "k_prefs",
        metric,
        **_het(choice, outcome),
        **kw,
    )


def _exposure(choice, method, by, metric, pid, outcome) -> Slope:
    design_ = where(choice, "exposure", "n_pairs", "preferences", exposure=EXPOSURES)
    return Slope(
        pid,
        "C3",
        f"{method}: {metric} loss grows with the measured distance of the preferred style",
        method,
        by + design_,
        "exposure",
        "log_distance",
        metric,
        family="secondary",
        **_het(choice, outcome),
    )


def retention(cells: pd.DataFrame) -> tuple[str, str]:
    """P1/P2/P5's outcomes: ``METRICS`` (1 - Brier); the accuracies for a table scored before
    the Brier score was recorded (its results say so: ``study_tables.deviations``)."""
    if all(m in cells and cells[m].notna().any() for m in METRICS):
        return METRICS
    return ACCURACY


def primary(choice: dict, metrics: tuple[str, str] = METRICS) -> list:
    """P1-P5 (protocol section 7, outcomes revised in section 13)."""
    weight = float(choice["anchor_weight"])
    return [
        _anchor(choice, weight, metrics[0], "P1"),
        _anchor(choice, weight, metrics[1], "P2"),
        _refs(choice, "P3", "DPO", DPO, "hard_margin", SCARCE),
        _refs(choice, "P4", f"DPO rescaled eps={MRPO_EPS:g}", RESCALED, "hard_margin", SCARCE),
        _mixing(choice, "DPO", DPO, metrics[0], "P5", "matched"),
    ]


def _other_settings(cells: pd.DataFrame, weight: float) -> list[float]:
    bapo = cells[(cells["method_name"] == "bapo") & (cells["method"].str.count(" ") == 1)]
    return sorted(set(bapo["anchor_weight"].dropna()) - {weight})


def _anchoring(choice: dict, cells: pd.DataFrame) -> list:
    """S1-S3, S6 and S7: C1 with the envelope, on logodds, against DPO at beta 0.1 alone, after
    the full horizon, at every other anchor weight in the grid, well-formedness, and on the
    accuracies (P1-P2's outcome as first written)."""
    weight, sec = float(choice["anchor_weight"]), {"family": "secondary"}
    lam, main = f"BAPO lambda={weight:g}", where(choice)
    out: list = []
    for m, s in zip(retention(cells), "ab", strict=True):
        out.append(_anchor(choice, weight, m, f"S1{s}", kind="envelope", **sec))
        if choice.get("logodds_range"):
            out.append(
                _anchor(
                    choice,
                    weight,
                    m,
                    f"S2{s}",
                    x="logodds",
                    x_range=tuple(choice["logodds_range"]),
                    **sec,
                )
            )
        out.append(_anchor(choice, weight, m, f"S3{s}", control="DPO", where_c=DPO + main, **sec))
        out.append(
            Endpoint(
                f"S3{s}+",
                "C1",
                f"{lam} keeps more {m} than DPO after the full horizon (unmatched)",
                lam,
                "DPO",
                bapo_where(weight) + main,
                DPO + main,
                m,
                **sec,
            )
        )
        out += [
            _anchor(choice, w, m, f"S3{s}-{w:g}", **sec) for w in _other_settings(cells, weight)
        ]
    if retention(cells) != ACCURACY:  # else P1-P2 are on the accuracies already
        pairs = zip(ACCURACY, "ab", strict=True)
        out += [_anchor(choice, weight, m, f"S7{s}", **sec) for m, s in pairs]
    statement = f"{lam} ends with more well-formed generations than DPO at the last step"
    out.append(
        Endpoint(
            "S6",
            "C1",
            statement,
            lam,
            "DPO",
            bapo_where(weight) + main,
            DPO + main,
            "well_formed",
            **sec,
        )
    )
    return out


def secondary(choice: dict, cells: pd.DataFrame) -> list:
    """The exploratory analyses of protocol section 9 (rows without runs read "not run")."""
    weight, sec = float(choice["anchor_weight"]), {"family": "secondary"}
    lam = f"BAPO lambda={weight:g}"
    out = _anchoring(choice, cells)
    for j, (ctl, w) in enumerate((("DPO", DPO), (f"DPO rescaled eps={MRPO_EPS:g}", RESCALED))):
        out.append(_refs(choice, f"S4{'ab'[j]}", ctl, w, "hard_margin", (64,), **sec))
        out.append(_refs(choice, f"S4{'cd'[j]}", ctl, w, "hard_pref_acc", SCARCE, **sec))
    methods = (("DPO", DPO), (lam, bapo_where(weight)))
    metrics = retention(cells)
    outcomes = [
        (meth, by, m, o) for meth, by in methods for m in metrics for o in ("matched", "final")
    ]
    out += [
        _exposure(choice, meth, by, m, f"S5 exposure {meth} {m} {o}", o)
        for meth, by, m, o in outcomes
    ]
    out += [
        _mixing(choice, meth, by, m, f"S5 mixing {meth} {m} {o}", o, **sec)
        for meth, by, m, o in outcomes
        if (meth, m, o) != ("DPO", metrics[0], "matched")
    ]
    return out


def verdict_table(
    cells: pd.DataFrame, choice: dict, n_boot: int = N_BOOT, rng: int = 0
) -> pd.DataFrame:
    """Every contrast's verdict row (``verdicts.ROW_COLS``), over the test bases only."""
    test = on_test_bases(cells)
    contrasts = [*primary(choice, retention(test)), *secondary(choice, test)]
    return verdict_rows(contrasts, test, n_boot, rng)
