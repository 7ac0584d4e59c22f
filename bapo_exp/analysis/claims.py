"""The papers' claims, as the study tests them (issue 17), and the table of their verdicts.

    table = verdict_table(read_cells("results/study/cells.csv"))

Every comparison is paired within a (base, data seed) and summarised over bases (the random
factor) with an interval that takes the wider of the hierarchical bootstrap and the t-interval
over base means (``INTERVAL``, ours: with 5 bases the percentile bootstrap alone covers the
truth only ~85% of the time at 95% nominal, ``analysis.stats``). A verdict is *supported* when
the interval excludes 0 on the claimed side, *refuted* on the other side, *inconclusive* when
it includes 0.

- **Anchoring** (BAPO): at matched generated personalisation (style share 0.25, 0.5, 0.75), and
  after the full 80 steps, every BAPO setting keeps more knowledge and alignment than DPO.
- **Several references** (MRPO): with 16, 64 and 256 training pairs, MRPO (eps 0.1 and 0.5)
  learns the preference (held-out pref_acc, style share) better than DPO after 80 steps and keeps
  more at matched personalisation; and it beats its own reduction, DPO against the main
  reference rescaled by (1 + eps_y).
- **Heterogeneity** (BAPO): knowledge and alignment loss after 80 steps (base minus trained)
  grow with the measured distance of the preferred style from the base (exposure 0, 1%, 10%,
  30%) and with the number of mixed preferences (1, 2, 3): the slope per base is positive; and
  the same at matched personalisation (the losses where each curve first reaches style share
  0.5, ``matched_losses``).
"""

from __future__ import annotations

import pandas as pd

from bapo_exp.analysis.matched import matched
from bapo_exp.analysis.verdicts import Claim, TrendClaim, claim_table, select

INTERVAL = "both"  # the wider of the hierarchical bootstrap and the t-interval over bases
LEVELS = (0.25, 0.5, 0.75)
HET_LEVEL = 0.5  # heterogeneity's matched comparison: the losses where a curve reaches this x
FINAL = 80  # the study's training steps
MAIN = {"exposure": 0.1, "n_pairs": 128, "preferences": "concise"}
SCARCE = [16, 64, 256]  # MRPO's training-set sizes (pairs)
METRICS = ("knowledge", "alignment")
DESIGN = ["exposure", "n_pairs", "preferences", "k_prefs"]


def with_base(cells: pd.DataFrame, where: dict) -> pd.DataFrame:
    """The trained cells matching ``where`` and, for each of their (base, seed), the untrained
    base's row of the same base and exposure as step 0 (``method == "base"``)."""
    sel = select(cells, list(where.items()))
    trained = sel[sel["method"] != "base"]
    bases = cells[cells["method"] == "base"].drop(columns=[*DESIGN[1:], "seed"])
    units = trained[["base", "seed", *DESIGN]].drop_duplicates()
    start = units.merge(bases, on=["base", "exposure"], how="inner").assign(step=0)
    return pd.concat([trained, start[trained.columns]], ignore_index=True)


def with_losses(cells: pd.DataFrame, untrained: pd.DataFrame | None = None) -> pd.DataFrame:
    """``knowledge_loss`` and ``alignment_loss``: the base's score minus the cell's (positive =
    forgotten), the base matched on (base, exposure); the base rows are taken from ``untrained``
    (default: ``cells`` itself)."""
    source = cells if untrained is None else untrained
    base = source[source["method"] == "base"][["base", "exposure", *METRICS]]
    out = cells.merge(base, on=["base", "exposure"], how="left", suffixes=("", "_untrained"))
    for m in METRICS:
        out[f"{m}_loss"] = out[f"{m}_untrained"] - out[m]
    return out


def anchoring(cells: pd.DataFrame) -> list[Claim]:
    settings = sorted(m for m in with_base(cells, MAIN)["method"].unique() if m.startswith("BAPO"))
    return [
        Claim(
            f"A {s} {m}{' @80' if levels is None else ''}",
            f"{s} keeps more {m} than DPO",
            s,
            "DPO",
            m,
            +1,
            levels,
            (FINAL,) if levels is None else None,
        )  # fmt: skip
        for s in settings
        for m in METRICS
        for levels in (LEVELS, None)
    ]


def several_references(cells: pd.DataFrame) -> list[Claim]:
    mrpo = sorted(m for m in cells["method"].unique() if m.startswith("MRPO"))
    controls = ["DPO", *sorted(c for c in cells["method"].unique() if c.startswith("DPO resc"))]
    claims = []
    for t in mrpo:
        for control in controls:
            for m in ("pref_acc", "x"):
                claims.append(Claim(f"M {t} vs {control} {m} @80", f"{t} learns the preference "
                                    f"better than {control}", t, control, m, +1, None, (FINAL,),
                                    by=("n_pairs",)))  # fmt: skip
            for m in METRICS:
                claims.append(
                    Claim(
                        f"M {t} vs {control} {m}",
                        f"{t} keeps more {m} than {control}",
                        t,
                        control,
                        m,
                        +1,
                        LEVELS,
                        by=("n_pairs",),
                    )
                )
    return claims


def heterogeneity(cells: pd.DataFrame, final: bool = True) -> list[TrendClaim]:
    """Loss against distance and against the number of mixed preferences, per method: after the
    full training (``final``) or on :func:`matched_losses`' table (no step filter)."""
    methods = sorted(set(cells.loc[cells["exposure"] != MAIN["exposure"], "method"]) - {"base"})
    step = (("step", FINAL),) if final else ()
    claims = []
    for m in METRICS:
        for method in methods:
            claims.append(TrendClaim(
                f"H exposure {method} {m}_loss", f"{method}: {m} loss grows with the measured "
                "distance of the preferred style", "distance", f"{m}_loss", +1,
                design="exposure", where=(("method", method), *step,
                                          ("preferences", MAIN["preferences"])),
            ))  # fmt: skip
            claims.append(TrendClaim(
                f"H mixing {method} {m}_loss", f"{method}: {m} loss grows with the number of "
                "mixed preferences", "k_prefs", f"{m}_loss", +1,
                where=(("method", method), *step, ("exposure", MAIN["exposure"])),
            ))  # fmt: skip
    return claims


def matched_losses(cells: pd.DataFrame, level: float) -> pd.DataFrame:
    """Knowledge and alignment loss where each curve first reaches style share ``level`` (the
    untrained base's score minus the interpolated one), with the curve's measured distance;
    curves that never reach ``level`` are left out (the verdict rows count the bases left)."""
    by = ["exposure", "k_prefs", "preferences"]
    keys = [*by, "base", "seed", "method"]
    curves = with_base(cells, {"n_pairs": MAIN["n_pairs"]}).rename(columns={"step": "strength"})
    points = matched(curves, [level], METRICS, by=by, base_method="base")
    points = points[points["reached"].eq(True)]
    wide = points.pivot_table(index=keys, columns="metric", values="value").reset_index()
    distance = cells[cells["method"] != "base"].groupby(keys)["distance"].mean().reset_index()
    return with_losses(wide.merge(distance, on=keys, how="left"), untrained=cells)


def verdict_table(cells: pd.DataFrame, n_boot: int = 2000) -> pd.DataFrame:
    """Every claim's verdict rows (``verdicts.ROW_COLS``)."""
    stats = {"method": INTERVAL, "n_boot": n_boot, "base_method": "base"}
    curves = {"step": "strength"}  # a curve's position, as analysis.matched names it
    main = claim_table(anchoring(cells), with_base(cells, MAIN).rename(columns=curves), **stats)
    refs = with_base(cells, {"exposure": MAIN["exposure"], "n_pairs": SCARCE})
    mrpo = claim_table(several_references(cells), refs.rename(columns=curves), **stats)
    trend = {"method": INTERVAL, "n_boot": n_boot}
    het = claim_table(heterogeneity(cells), with_losses(cells), **trend).assign(at=float(FINAL))
    at_level = matched_losses(cells, HET_LEVEL)
    het_matched = claim_table(heterogeneity(cells, final=False), at_level, **trend)
    het_matched = het_matched.assign(at=HET_LEVEL)
    return pd.concat([main, mrpo, het, het_matched], ignore_index=True)
