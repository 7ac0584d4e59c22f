"""The papers' claims as the study tests them (docs/STUDY_PROTOCOL.md sections 1, 7, 9): the
primary family and the secondary (exploratory) analyses, as contrasts over the test bases.

    table = verdict_table(read_cells("results/study/cells.csv"), choice)

``choice`` is the calibration's ``choice.json`` (``analysis.calibration``): the primary anchor
weight and the logodds range. Only test-base rows enter (``role == "test"``).
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
)
from bapo_exp.analysis.verdicts import Endpoint, Frontiers, Slope, verdict_rows

MAIN_WHERE = tuple(MAIN.items())
MIXES = ("concise", "concise,business", "concise,business,academic")  # k = 1, 2, 3
CLAIMS = {
    "C1": "Anchoring: at equal personalisation, BAPO keeps more knowledge and alignment than DPO",
    "C2": "Several references: with scarce data, a second reference helps the preference "
    "generalise",
    "C3": "Heterogeneity: forgetting grows with the heterogeneity of the preferences",
}
METRICS = ("knowledge", "alignment")
POOLED = f"DPO (beta {', '.join(f'{b:g}' for b in CONTROL_BETAS)} pooled)"


def bapo_where(weight: float) -> tuple:
    return (("method_name", "bapo"), ("anchor_weight", weight), ("beta", DEFAULT_BETA))


DPO = (("method_name", "dpo"), ("beta", DEFAULT_BETA))
DPO_POOLED = (("method_name", "dpo"), ("beta", CONTROL_BETAS))
MRPO = (("method_name", "mrpo"), ("ctro_eps", MRPO_EPS))
RESCALED = (("method_name", "dpo_rescaled"), ("ctro_eps", MRPO_EPS))
REFS = (("exposure", MAIN["exposure"]), ("preferences", MAIN["preferences"]))


def _anchor(weight: float, metric: str, pid: str, **kw: Any) -> Frontiers:
    args = {"control": POOLED, "where_c": DPO_POOLED + MAIN_WHERE} | kw
    return Frontiers(
        pid,
        "C1",
        f"BAPO lambda={weight:g} keeps more {metric} than "
        f"{args['control']} at equal personalisation",
        f"BAPO lambda={weight:g}",
        where_t=bapo_where(weight) + MAIN_WHERE,
        metric=metric,
        **args,
    )


def _refs(pid: str, control: str, where_c: tuple, metric: str, sizes, **kw: Any) -> Endpoint:
    return Endpoint(
        pid,
        "C2",
        f"MRPO eps={MRPO_EPS:g} ends with a larger held-out {metric} than {control}",
        f"MRPO eps={MRPO_EPS:g}",
        control,
        MRPO + REFS + (("n_pairs", sizes),),
        where_c + REFS + (("n_pairs", sizes),),
        metric,
        **kw,
    )


def _het(choice: dict, outcome: str) -> dict:
    """Heterogeneity's x-range from the calibration; without one reached, "matched" falls back
    to "final" (protocol section 9)."""
    if "het_range" not in choice:
        return {"outcome": outcome}
    if choice["het_range"] is None:
        return {"outcome": "final"}
    return {"outcome": outcome, "x_range": tuple(choice["het_range"])}


def _mixing(method: str, where: tuple, metric: str, pid: str, **kw) -> Slope:
    return Slope(
        pid,
        "C3",
        f"{method}: {metric} loss grows with the number of mixed preferences",
        method,
        where
        + (("exposure", MAIN["exposure"]), ("n_pairs", MAIN["n_pairs"]), ("preferences", MIXES)),
        "k_prefs",
        "k_prefs",
        metric,
        **kw,
    )


def _exposure(method: str, where: tuple, metric: str, pid: str, **kw) -> Slope:
    return Slope(
        pid,
        "C3",
        f"{method}: {metric} loss grows with the measured distance of the preferred style",
        method,
        where
        + (
            ("exposure", EXPOSURES),
            ("n_pairs", MAIN["n_pairs"]),
            ("preferences", MAIN["preferences"]),
        ),
        "exposure",
        "log_distance",
        metric,
        family="secondary",
        **kw,
    )


def primary(choice: dict) -> list:
    """P1-P5 (protocol section 7)."""
    weight = float(choice["anchor_weight"])
    return [
        _anchor(weight, "knowledge", "P1"),
        _anchor(weight, "alignment", "P2"),
        _refs("P3", "DPO", DPO, "hard_margin", SCARCE),
        _refs("P4", f"DPO rescaled eps={MRPO_EPS:g}", RESCALED, "hard_margin", SCARCE),
        _mixing("DPO", DPO, "knowledge", "P5", **_het(choice, "matched")),
    ]


def _other_settings(cells: pd.DataFrame, weight: float) -> list[float]:
    bapo = cells[(cells["method_name"] == "bapo") & (cells["method"].str.count(" ") == 1)]
    return sorted(set(bapo["anchor_weight"].dropna()) - {weight})


def secondary(choice: dict, cells: pd.DataFrame) -> list:
    """The exploratory analyses of protocol section 9 (rows without runs read "not run")."""
    weight, lam = float(choice["anchor_weight"]), f"BAPO lambda={float(choice['anchor_weight']):g}"
    sec = {"family": "secondary"}
    out: list = []
    for i, m in enumerate(METRICS):
        s = "ab"[i]
        out.append(_anchor(weight, m, f"S1{s}", kind="envelope", **sec))
        if choice.get("logodds_range"):
            out.append(
                _anchor(
                    weight, m, f"S2{s}", x="logodds", x_range=tuple(choice["logodds_range"]), **sec
                )
            )
        out.append(_anchor(weight, m, f"S3{s}", control="DPO", where_c=DPO + MAIN_WHERE, **sec))
        out.append(
            Endpoint(
                f"S3{s}+",
                "C1",
                f"{lam} keeps more {m} than DPO after the full horizon (unmatched)",
                lam,
                "DPO",
                bapo_where(weight) + MAIN_WHERE,
                DPO + MAIN_WHERE,
                m,
                **sec,
            )
        )
        for w in _other_settings(cells, weight):
            out.append(_anchor(w, m, f"S3{s}-{w:g}", **sec))
    for j, (ctl, where) in enumerate((("DPO", DPO), (f"DPO rescaled eps={MRPO_EPS:g}", RESCALED))):
        out.append(_refs(f"S4{'ab'[j]}", ctl, where, "hard_margin", (64,), **sec))
        out.append(_refs(f"S4{'cd'[j]}", ctl, where, "hard_pref_acc", SCARCE, **sec))
    out += [
        _exposure(meth, where, m, f"S5 exposure {meth} {m} {o}", **_het(choice, o))
        for meth, where in (("DPO", DPO), (lam, bapo_where(weight)))
        for m in METRICS
        for o in ("matched", "final")
    ]
    out += [
        _mixing(meth, where, m, f"S5 mixing {meth} {m} {o}", **sec, **_het(choice, o))
        for meth, where in (("DPO", DPO), (lam, bapo_where(weight)))
        for m in METRICS
        for o in ("matched", "final")
        if (meth, m, o) != ("DPO", "knowledge", "matched")
    ]
    statement = f"{lam} ends with more well-formed generations than DPO at the last step"
    where_t, where_c = bapo_where(weight) + MAIN_WHERE, DPO + MAIN_WHERE
    out.append(Endpoint("S6", "C1", statement, lam, "DPO", where_t, where_c, "well_formed", **sec))
    return out


def verdict_table(
    cells: pd.DataFrame, choice: dict, n_boot: int = N_BOOT, rng: int = 0
) -> pd.DataFrame:
    """Every contrast's verdict row (``verdicts.ROW_COLS``), over the test bases only."""
    test = cells[cells["role"] == "test"]
    return verdict_rows([*primary(choice), *secondary(choice, test)], test, n_boot, rng)
