"""The study's figures (results/study/*.png and .pdf), drawn from ``cells.csv`` and the verdicts.

- ``frontier``: knowledge and alignment against generated personalisation, DPO and BAPO at three
  anchor weights, mean over bases at each step (bars: standard error over bases, n in the legend);
  the untrained bases' mean is the star.
- ``anchoring``: BAPO minus DPO at matched personalisation, per setting, with 95% intervals.
- ``references``: MRPO minus its controls against the number of training pairs.
- ``heterogeneity``: knowledge and alignment loss against the measured distance, one thin line per
  base and a thick mean line per method.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bapo_exp.analysis.claims import FINAL, LEVELS, MAIN, SCARCE, with_base, with_losses
from bapo_exp.analysis.plots import new_figure, save
from bapo_exp.analysis.study_report import setting_order

NAMES = {
    "knowledge": "knowledge (neutral wording)",
    "alignment": "alignment (HHH format)",
    "x": "generated personalisation (style share)",
    "pref_acc": "held-out pref_acc",
}
FRONTIER = ("DPO", "BAPO lambda=0.01", "BAPO lambda=0.1", "BAPO lambda=1")
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"), ("-", "v"), ("--", "P")]


def _mean_curve(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per step: the mean over bases (of the mean over seeds) of x and ``metric``, with the
    standard error over bases."""
    per_base = df.groupby(["step", "base"])[["x", metric]].mean().reset_index()
    g = per_base.groupby("step")
    out = g[["x", metric]].mean()
    out[["x_se", f"{metric}_se"]] = g[["x", metric]].std(ddof=1).to_numpy() / np.sqrt(
        g.size().to_numpy()[:, None]
    )
    out["n"] = g.size()
    return out.reset_index()


def frontier(cells: pd.DataFrame, out: Path) -> list[Path]:
    df = with_base(cells, MAIN)
    fig, axes = new_figure(2, width=5.2, height=4.0)
    for ax, metric in zip(axes, ("knowledge", "alignment"), strict=True):
        for i, method in enumerate(m for m in FRONTIER if m in set(df["method"])):
            curve = _mean_curve(df[df["method"] == method], metric)
            line, marker = STYLES[i % len(STYLES)]
            ax.errorbar(curve["x"], curve[metric], xerr=curve["x_se"], yerr=curve[f"{metric}_se"],
                        ls=line, marker=marker, capsize=2, ms=5,
                        label=f"{method} (n={int(curve['n'].max())} bases)")  # fmt: skip
        start = df[df["step"] == 0].groupby("base")[["x", metric]].mean().mean()
        ax.plot([start["x"]], [start[metric]], "k*", ms=12, label="untrained base")
        ax.set_xlabel(NAMES["x"])
        ax.set_ylabel(NAMES[metric])
        ax.set_title(f"{NAMES[metric].split(' (')[0].capitalize()} against personalisation")
    axes[0].legend(fontsize=7, loc="lower left")
    steps = ", ".join(str(int(t)) for t in sorted(df["step"].unique()))
    fig.suptitle(f"Steps {steps} ({MAIN['preferences']}, {MAIN['n_pairs']} pairs); "
                 "bars: s.e. over bases")  # fmt: skip
    return save(fig, out / "frontier")


SERIES = [(level, "matched x", f"at style share {level}", "o") for level in LEVELS] + [
    (FINAL, "fixed strength", f"after {FINAL} steps (unmatched)", "s")
]


def _forest(ax, rows: pd.DataFrame, labels: list[str]) -> None:
    """One row per setting: the difference at each matched level and after the full training."""
    for j, (at, compare, name, marker) in enumerate(SERIES):
        sub = rows[(rows["at"] == at) & (rows["compare"] == compare)]
        sub = sub.set_index("treatment").reindex(labels)
        sub = sub.mask(sub["verdict"] == "not reached")  # no dot where too few curves got there
        y = np.arange(len(labels)) + (j - 1.5) * 0.18
        err = np.vstack([sub["estimate"] - sub["lo"], sub["hi"] - sub["estimate"]])
        ax.errorbar(sub["estimate"], y, xerr=err, fmt=marker, ms=4, capsize=2, label=name,
                    color="0.45" if compare == "fixed strength" else None)  # fmt: skip
    ax.axvline(0.0, c="k", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), [lbl.removeprefix("BAPO ") for lbl in labels])


def _bases(verdicts: pd.DataFrame) -> str:
    """The number of bases behind the plotted intervals ("3-5" when it varies)."""
    n = verdicts.loc[verdicts["verdict"] != "not reached", "n_bases"]
    return "?" if n.empty else str(n.max()) if n.min() == n.max() else f"{n.min()}-{n.max()}"


def anchoring(verdicts: pd.DataFrame, out: Path) -> list[Path]:
    rows = verdicts[verdicts["claim"].str.startswith("A ")]
    labels = sorted(rows["treatment"].unique(), key=setting_order)
    fig, axes = new_figure(2, width=5.6, height=0.45 * len(labels) + 2.0)
    for ax, metric in zip(axes, ("knowledge", "alignment"), strict=True):
        _forest(ax, rows[rows["metric"] == metric], labels)
        ax.set_xlabel(f"BAPO minus DPO, {NAMES[metric]}")
        ax.set_title(metric.capitalize())
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=4, fontsize=8)
    fig.suptitle(f"BAPO minus DPO: mean over {_bases(rows)} bases with 95% intervals; no dot: "
                 "too few curves reached that style share")  # fmt: skip
    return save(fig, out / "anchoring")


def references(verdicts: pd.DataFrame, out: Path) -> list[Path]:
    rows = verdicts[verdicts["claim"].str.startswith("M ")].copy()
    rows["pairs"] = rows["group"].str.split("=").str[1].astype(float).astype(int)
    panels = [("pref_acc", "fixed strength"), ("x", "fixed strength"), ("knowledge", "matched x")]
    fig, axes = new_figure(3, width=4.2, height=3.6)
    for ax, (metric, compare) in zip(axes, panels, strict=True):
        sub = rows[(rows["metric"] == metric) & (rows["compare"] == compare)]
        if compare == "matched x":
            sub = sub[sub["at"] == 0.5]
        for i, ((t, c), g) in enumerate(sub.groupby(["treatment", "control"])):
            g = g.sort_values("pairs")
            xs = np.log2(g["pairs"]) + (i - 1.5) * 0.08
            ax.errorbar(xs, g["estimate"], yerr=[g["estimate"] - g["lo"], g["hi"] - g["estimate"]],
                        fmt=STYLES[i % 6][1] + STYLES[i % 6][0], capsize=2, ms=4,
                        label=f"{t} minus {c}")  # fmt: skip
        ax.axhline(0.0, c="k", lw=0.8)
        ax.set_xticks(np.log2(SCARCE), [str(n) for n in SCARCE])
        ax.set_xlabel("training pairs")
        where = f"after {FINAL} steps" if compare == "fixed strength" else "at style share 0.5"
        ax.set_title(f"{NAMES[metric]}, {where}", fontsize=9)
    axes[0].set_ylabel(f"difference (95% interval over {_bases(rows)} bases)")
    axes[-1].legend(fontsize=6)
    return save(fig, out / "references")


def heterogeneity(cells: pd.DataFrame, out: Path) -> list[Path]:
    df = with_losses(cells)
    df = df[
        (df["step"] == FINAL)
        & (df["preferences"] == MAIN["preferences"])
        & (df["n_pairs"] == MAIN["n_pairs"])
    ]
    methods = sorted(set(df.loc[df["exposure"] != MAIN["exposure"], "method"]))
    fig, axes = new_figure(2, width=5.0, height=3.8)
    for ax, metric in zip(axes, ("knowledge", "alignment"), strict=True):
        for i, method in enumerate(methods):
            sub = df[(df["method"] == method)].groupby(["base", "exposure"])[
                ["distance", f"{metric}_loss"]].mean().reset_index()  # fmt: skip
            color = f"C{i}"
            for _, b in sub.groupby("base"):
                if b["exposure"].nunique() > 1:
                    b = b.sort_values("distance")
                    ax.plot(b["distance"], b[f"{metric}_loss"], color=color, lw=0.6, alpha=0.5)
            varied = sub[sub["base"].isin(sub.loc[sub["exposure"] != MAIN["exposure"], "base"])]
            mean = varied.groupby("exposure")[["distance", f"{metric}_loss"]].mean().sort_values(
                "distance")  # fmt: skip
            ax.plot(mean["distance"], mean[f"{metric}_loss"], color=color, lw=2, marker="o",
                    label=f"{method} (mean of {varied['base'].nunique()} bases)")  # fmt: skip
        ax.axhline(0.0, c="k", lw=0.8)
        ax.set_xlabel("measured distance of the preferred style (nats per token)")
        ax.set_ylabel(f"{metric} loss after {FINAL} steps (base minus trained)")
        ax.set_title(f"{metric.capitalize()} loss against heterogeneity")
    axes[0].legend(fontsize=7)
    return save(fig, out / "heterogeneity")


def demo(cells: pd.DataFrame, out: Path) -> list[Path]:
    """The demo: per preference, knowledge and alignment against style share, one curve per
    method through its evaluated steps (one base, one data order: no error bars over bases;
    bars are standard errors over the test items)."""
    files: list[Path] = []
    base = cells[cells["method"] == "base"].iloc[0]
    steps = ", ".join(str(int(s)) for s in sorted(set(cells["step"])))  # the base's is 0
    for pref, df in cells[cells["method"] != "base"].groupby("preferences"):
        fig, axes = new_figure(2, width=5.0, height=3.8)
        for ax, metric in zip(axes, ("knowledge", "alignment"), strict=True):
            for i, (method, g) in enumerate(df.groupby("method")):
                g = pd.concat([base.to_frame().T, g]).sort_values("step")
                line, marker = STYLES[i % len(STYLES)]
                ax.errorbar(g["x"].astype(float), g[metric].astype(float),
                            yerr=g[f"{metric}_se"].astype(float), ls=line, marker=marker,
                            capsize=2, ms=5, label=method)  # fmt: skip
            ax.plot([base["x"]], [base[metric]], "k*", ms=12, label="untrained base")
            ax.set_xlabel(NAMES["x"])
            ax.set_ylabel(NAMES[metric])
            ax.set_title(f"{metric.capitalize()}: steps {steps}")
        axes[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"Demo, preference {pref}: one base, one data order (bars: s.e. over items)")
        files += save(fig, out / f"demo_{pref}")
    return files


def draw_all(cells: pd.DataFrame, verdicts: pd.DataFrame, out: Path) -> list[Path]:
    return [*frontier(cells, out), *anchoring(verdicts, out), *references(verdicts, out),
            *heterogeneity(cells, out)]  # fmt: skip
