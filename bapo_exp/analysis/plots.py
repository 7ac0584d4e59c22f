"""Figures from the runs table, written as PNG and PDF (Agg canvas, no pyplot state).

    from bapo_exp.analysis import load_runs, plots
    df = load_runs("runs/fig2_knowledge_retention", complete_only=True)
    plots.retention_bars(df, ["eval/mmlu/humanities/acc", "eval/scienceqa/acc"], "figs/fig2")

Every function returns the written paths. Error bars are standard errors over seeds
(:func:`bapo_exp.analysis.aggregate.aggregate`); the base model (``method=none``) is drawn as a
dashed reference line or a star.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bapo_exp.analysis.aggregate import BASE_METHOD, aggregate
from bapo_exp.analysis.load import load_metrics

DRIFT_KEYS = ("drift/chosen", "drift/base", "drift/rejected")  # Fig. 5: y_w, y_b, y_l
COLORS = ("C0", "C3", "C2", "C1", "C4", "C5")  # the study's figures: one per method


def ci95(values: np.ndarray, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, and the half-width of the 95% t-interval over ``axis`` (NaN-aware: NaN where no
    value, no half-width below 2 values), and the number of values."""
    from scipy.stats import t

    n = np.sum(np.isfinite(values), axis=axis)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN, said above
        mean = np.nanmean(values, axis=axis)
        sd = np.nanstd(values, axis=axis, ddof=1)
        half = np.where(n > 1, t.ppf(0.975, np.maximum(n - 1, 1)) * sd / np.sqrt(n), np.nan)
    return mean, half, n


def new_figure(
    n_panels: int, width: float = 4.2, height: float = 3.2, rows: int = 1, **share
) -> tuple[Figure, list]:
    """A figure of ``rows`` x ``n_panels`` axes (``width`` x ``height`` inches each), returned
    row by row; ``share``: ``sharex``/``sharey`` as matplotlib's ``subplots`` takes them."""
    fig = Figure(figsize=(width * n_panels, height * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, n_panels, squeeze=False, **share)
    return fig, list(axes.ravel())


def save(fig: Figure, out: str | Path) -> list[Path]:
    """Write ``<out>.png`` and ``<out>.pdf`` (``out`` without suffix); parents are created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".pdf")]
    for p in paths:  # no creation date in the PDF: the same figure gives the same bytes
        fig.savefig(p, dpi=150, metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    return paths


def _label(metric: str) -> str:
    return metric.removeprefix("eval/").removeprefix("train/")


def retention_bars(
    df: pd.DataFrame,
    metrics: list[str],
    out: str | Path,
    group: str = "data.preferences",
    hue: str = "method.label",
) -> list[Path]:
    """Grouped bars (one group per preference, one bar per method) with the base model's score
    as a dashed line: the BAPO paper's Fig. 2 (knowledge) and Fig. 3 (alignment) analogues."""
    trained = df[df["method.name"] != BASE_METHOD]
    table = aggregate(trained, [group, hue], metrics)
    base = df[df["method.name"] == BASE_METHOD]
    groups, hues = sorted(table[group].unique(), key=str), sorted(table[hue].unique(), key=str)
    fig, axes = new_figure(len(metrics))
    width = 0.8 / max(len(hues), 1)
    for ax, m in zip(axes, metrics, strict=True):
        for j, h in enumerate(hues):
            sub = table[table[hue] == h].set_index(group).reindex(groups)
            x = np.arange(len(groups)) + (j - (len(hues) - 1) / 2) * width
            ax.bar(x, sub[m], width, yerr=sub[f"{m}_se"].fillna(0), capsize=2, label=str(h))
        if not base.empty and m in base:
            ax.axhline(pd.to_numeric(base[m]).mean(), ls="--", c="k", lw=1, label="base model")
        ax.set_xticks(np.arange(len(groups)), [str(g) for g in groups], rotation=20)
        ax.set_title(_label(m))
        ax.set_xlabel(group)
    axes[0].set_ylabel("accuracy")
    axes[-1].legend(fontsize=7)
    return save(fig, out)


def drift_table(df: pd.DataFrame, keys: tuple[str, ...] = DRIFT_KEYS) -> pd.DataFrame:
    """Long table (run_dir, method.label, step, key, value) from every run's metrics.jsonl;
    the fixed probe set's ``probe/<key>`` is preferred over the batch's ``<key>``."""
    frames = []
    for _, run in df.iterrows():
        rows = load_metrics(run["run_dir"])
        if rows.empty or "step" not in rows:
            continue
        for key in keys:
            col = f"probe/{key}" if f"probe/{key}" in rows else key
            if col in rows:
                part = rows[["step", col]].rename(columns={col: "value"})
                frames.append(
                    part.assign(
                        key=key, run_dir=run["run_dir"], **{"method.label": run["method.label"]}
                    )
                )
    if not frames:
        raise ValueError(f"no train/metrics.jsonl with {list(keys)} in {len(df)} runs")
    return pd.concat(frames, ignore_index=True)


def drift_curves(
    df: pd.DataFrame, out: str | Path, keys: tuple[str, ...] = DRIFT_KEYS
) -> list[Path]:
    """Log-prob drift log pi_theta(y) - log pi_ref(y) of chosen, base and rejected responses
    against the training step, one panel per method (BAPO paper Fig. 5 analogue), mean +/- s.e.
    over seeds."""
    long = drift_table(df[df["method.name"] != BASE_METHOD], keys)
    table = aggregate(long, ["method.label", "key", "step"], ["value"], seed_col="run_dir")
    methods = sorted(table["method.label"].unique(), key=str)
    fig, axes = new_figure(len(methods))
    for ax, method in zip(axes, methods, strict=True):
        for key in keys:
            sub = table[(table["method.label"] == method) & (table["key"] == key)]
            ax.plot(sub["step"], sub["value"], label=key.split("/")[-1])
            se = sub["value_se"].fillna(0)
            ax.fill_between(sub["step"], sub["value"] - se, sub["value"] + se, alpha=0.2)
        ax.axhline(0.0, c="k", lw=0.5)
        ax.set_title(str(method))
        ax.set_xlabel("step")
    axes[0].set_ylabel("log-prob drift (nats)")
    axes[-1].legend(fontsize=7)
    return save(fig, out)


def _pref_key(prefs) -> str:
    """``data.preferences`` as one label (a list in the config, a string in some tables)."""
    return "+".join(map(str, prefs)) if isinstance(prefs, list | tuple) else str(prefs)


def _curves(ax, table: pd.DataFrame, x: str, y: str, hue: str) -> None:
    styles = [("-", "o", 4), ("--", "s", 7), (":", "^", 6), ("-.", "D", 5)]  # overlaps stay visible
    for i, h in enumerate(sorted(table[hue].unique(), key=str)):
        sub = table[table[hue] == h].sort_values(x)
        line, marker, size = styles[i % len(styles)]
        ax.errorbar(
            sub[x],
            sub[y],
            xerr=sub.get(f"{x}_se"),
            yerr=sub.get(f"{y}_se"),
            ls=line,
            marker=marker,
            ms=size,
            mfc="none" if i % 2 else None,
            capsize=2,
            label=str(h),
        )


def forgetting_vs_heterogeneity(
    df: pd.DataFrame, metrics: list[str], x: str, out: str | Path, hue: str = "method.label"
) -> list[Path]:
    """``forget/<m>`` (from :func:`add_forgetting`) against a heterogeneity axis ``x``: the number
    of mixed preferences or the measured distance ``het/nll_distance`` (METHODS §7)."""
    trained = df[df["method.name"] != BASE_METHOD]
    cell = [hue, "data.preferences"]
    table = aggregate(trained, cell, [x, *metrics])
    fig, axes = new_figure(len(metrics))
    for ax, m in zip(axes, metrics, strict=True):
        _curves(ax, table, x, m, hue)
        ax.axhline(0.0, c="k", lw=0.5)
        ax.set_title(_label(m))
        ax.set_xlabel(x)
    axes[0].set_ylabel("forgetting (base - trained)")
    axes[-1].legend(fontsize=7)
    return save(fig, out)


def frontier(
    df: pd.DataFrame,
    x: str,
    metrics: list[str],
    out: str | Path,
    strength: list[str] | None = None,
    hue: str = "method.label",
) -> list[Path]:
    """Retention (each metric) against personalisation ``x``, one curve per method through its
    strength settings (beta, anchor weight, steps), mean +/- s.e. over seeds in both axes; the
    base model is a black star (METHODS §6, fair comparison)."""
    strength = strength or [
        c for c in ("method.beta", "method.anchor.weight", "train.steps") if c in df
    ]
    trained = df[df["method.name"] != BASE_METHOD]
    base = df[df["method.name"] == BASE_METHOD]
    prefs = trained.get("data.preferences", pd.Series(dtype=object)).map(_pref_key)
    if prefs.nunique() > 1:  # preferences are different frontiers: one figure each
        return [
            path
            for p in sorted(prefs.unique())
            for path in frontier(
                pd.concat([trained[prefs == p], base]), x, metrics, f"{out}_{p}", strength, hue
            )
        ]
    table = aggregate(trained, [hue, *strength], [x, *metrics])
    fig, axes = new_figure(len(metrics))
    if prefs.nunique() == 1:
        fig.suptitle(f"preference: {prefs.iloc[0]}")
    for ax, m in zip(axes, metrics, strict=True):
        _curves(ax, table, x, m, hue)
        if not base.empty and x in base and m in base:
            bx, by = pd.to_numeric(base[x]).mean(), pd.to_numeric(base[m]).mean()
            ax.plot([bx], [by], "k*", ms=10, label="base model")
        ax.set_title(_label(m))
        ax.set_xlabel(f"personalisation: {_label(x)}")
    axes[0].set_ylabel("score after training (higher = retained)")
    axes[-1].legend(fontsize=7)
    return save(fig, out)
