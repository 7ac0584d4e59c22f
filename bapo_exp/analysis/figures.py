"""Which figure each experiment preset gets, and how it is drawn from a results folder.

python -m bapo_exp.analysis runs/fig2_knowledge_retention --figure auto --out notebooks/figures
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bapo_exp.analysis import plots
from bapo_exp.analysis.aggregate import BASE_METHOD, add_forgetting, aggregate, pick_metric

KNOWLEDGE = ("eval/mmlu/humanities/acc", "eval/scienceqa/acc")  # BAPO paper Fig. 2
ALIGNMENT = ("eval/hhh/honest/acc", "eval/hhh/harmless/acc")  # BAPO paper Fig. 3
# Generated personalisation first (what a user sees, METHODS §6), likelihood last (fallback).
SUITE_MEANS = ("eval/mmlu/acc", "eval/scienceqa/acc", "eval/hhh/acc")  # reduced eval runs
# The embedded demo (issue #9): the synthetic world's own suites.
SYNTHETIC = (
    "eval/synthetic_knowledge/neutral/acc",
    "eval/synthetic_knowledge/acc",
    "eval/synthetic_alignment/acc",
)
PERSONALISATION = ("eval/gen/style_share", "eval/gen/win_rate", "eval/personal/pref_acc")


@dataclass(frozen=True)
class FigureSpec:
    kind: str  # bars | drift | heterogeneity | frontier
    metrics: tuple[str, ...] = KNOWLEDGE + ALIGNMENT
    by: tuple[str, ...] = ("method.label", "data.preferences")  # the printed table's cells
    fallback: tuple[str, ...] = SUITE_MEANS  # plotted when none of ``metrics`` was measured


FIGURES: dict[str, FigureSpec] = {
    "knowledge": FigureSpec("bars", KNOWLEDGE),
    "alignment": FigureSpec("bars", ALIGNMENT),
    "retention": FigureSpec("bars"),
    # the fixed probe set: measured for every method (a DPO batch has no base responses)
    "drift": FigureSpec(
        "drift",
        ("train/probe/drift/chosen", "train/probe/drift/base", "train/probe/drift/rejected"),
        fallback=("train/drift/chosen", "train/drift/base", "train/drift/rejected"),
    ),
    "heterogeneity": FigureSpec("heterogeneity"),
    "frontier": FigureSpec(
        "frontier", by=("method.label", "method.beta", "method.anchor.weight", "train.steps")
    ),
    "demo": FigureSpec(
        "frontier",
        SYNTHETIC,
        by=("method.label", "method.anchor.weight", "data.preferences", "train.steps"),
    ),
}
# Preset name (cfg.name) -> figure, for --figure auto. "_seeds" variants share their base's.
PRESET_FIGURES = {
    "fig2_knowledge_retention": "knowledge",
    "fig3_alignment_retention": "alignment",
    "fig5_drift": "drift",
    "heterogeneity": "heterogeneity",
    "mrpo_references": "retention",
    "frontier": "frontier",
    "frontier_anchor": "frontier",
    "mrpo_references_dpo": "retention",
    "demo": "demo",
}


# For runs no preset made (an ad-hoc grid, name=adhoc): the first figure whose metrics they have.
BY_MEASURED = ("retention", "demo", "drift")


def figure_for(df: pd.DataFrame) -> str:
    """The figure of the preset that produced ``df`` (its runs' ``name``); for runs of no preset,
    the first of ``BY_MEASURED`` whose metrics (or fallback metrics) the runs measured."""
    names = sorted({str(n).removesuffix("_seeds") for n in df.get("name", pd.Series()).dropna()})
    known = sorted({PRESET_FIGURES[n] for n in names if n in PRESET_FIGURES})
    if len(known) == 1:
        return known[0]
    if not known:
        trained = df[df["method.name"] != BASE_METHOD] if "method.name" in df else df
        for figure in BY_MEASURED:
            if _measured(trained, FIGURES[figure].metrics + FIGURES[figure].fallback):
                return figure
    raise ValueError(
        f"cannot pick a figure for runs named {names}: pass --figure, one of {sorted(FIGURES)}"
    )


def _measured(df: pd.DataFrame, metrics: tuple[str, ...]) -> list[str]:
    return [m for m in metrics if m in df and pd.to_numeric(df[m], errors="coerce").notna().any()]


def available(
    df: pd.DataFrame, metrics: tuple[str, ...], fallback: tuple[str, ...] = ()
) -> list[str]:
    """The ``metrics`` the runs measured, else the measured ``fallback`` ones, else an error."""
    found = _measured(df, metrics) or _measured(df, fallback)
    if not found:
        have = sorted(c for c in df if c.startswith(("eval/", "train/")))[:40]
        raise KeyError(f"none of {list(metrics)} in the runs; some columns there: {have}")
    return found


def render(
    df: pd.DataFrame,
    figure: str,
    out: Path,
    x: str | None = None,
    metrics: tuple[str, ...] | None = None,
    name: str | None = None,
) -> tuple[pd.DataFrame, list[Path]]:
    """Draw ``figure`` from complete runs (base-model runs included) into ``out/<stem>.png|pdf``.

    Returns the aggregated table (mean, s.e., n over seeds) and the written files.
    """
    spec = FIGURES[figure]
    trained = df[df["method.name"] != BASE_METHOD]
    stem = out / (name or str(trained["name"].dropna().iloc[0] if "name" in df else figure))
    ms = available(df, metrics) if metrics else available(df, spec.metrics, spec.fallback)
    by = [c for c in spec.by if c in df]
    if spec.kind == "bars":
        return aggregate(trained, by, ms), plots.retention_bars(df, ms, stem)
    if spec.kind == "drift":
        return aggregate(trained, by, ms), plots.drift_curves(df, stem)
    if spec.kind == "heterogeneity":
        return _heterogeneity(df, ms, stem, by)
    px = x or pick_metric(df, list(PERSONALISATION))
    return aggregate(trained, by, [px, *ms]), plots.frontier(df, px, ms, stem)


def _heterogeneity(
    df: pd.DataFrame, ms: list[str], stem: Path, by: list[str]
) -> tuple[pd.DataFrame, list[Path]]:
    """Two panels sets: against the number of mixed preferences and the measured distance."""
    df = add_forgetting(df, ms)
    forget = ["forget/" + m.removeprefix("eval/") for m in ms]
    count = pick_metric(df, ["het/n_preferences", "data.n_preferences"])
    files = plots.forgetting_vs_heterogeneity(df, forget, count, f"{stem}_count")
    if "het/nll_distance" in df:
        files += plots.forgetting_vs_heterogeneity(
            df, forget, "het/nll_distance", f"{stem}_distance"
        )
    trained = df[df["method.name"] != BASE_METHOD]
    return aggregate(trained, by, [count, *forget]), files
