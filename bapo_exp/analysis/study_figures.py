"""The study's figures (``results/study/*.png|pdf``), drawn from ``cells.csv``, the verdicts and
the calibration's choice. Every interval drawn is a 95% interval over bases unless the figure
says it is the Holm-adjusted one; n is printed with what it counts.

- ``frontier``: knowledge and alignment (the primary outcome, 1 - Brier score, where the table
  has it; else the accuracies) against style share (and against logodds, when
  measured): per method, the mean over test bases of the per-unit isotonic frontiers with a
  pointwise 95% band; the mean evaluated points labelled by step; the x-range shaded, the reach
  levels marked; a last panel with the share of units that reach each level.
- ``anchoring``, ``references``, ``heterogeneity``: ``study_forest``.
- ``calibration``: DPO's median style-share curve per candidate regime, and the anchor weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.claims import DPO_POOLED, POOLED, bapo_where, retention, where
from bapo_exp.analysis.frontier import fit, grid, reached
from bapo_exp.analysis.plots import COLORS, ci95, new_figure, save
from bapo_exp.analysis.verdicts import runs

NAMES = {
    "knowledge": "knowledge (neutral wording)",
    "alignment": "alignment (HHH format)",
    "knowledge_skill": "knowledge, 1 - Brier (neutral wording)",
    "alignment_skill": "alignment, 1 - Brier (HHH format)",
    "x": "style share of generations",
    "logodds": "log-odds preferred vs neutral",
}


def groups(choice: dict) -> list[tuple[str, tuple]]:
    """C1's method groups: BAPO at the primary weight, DPO pooled over beta."""
    w = float(choice["anchor_weight"])
    return [
        (f"BAPO lambda={w:g}", bapo_where(w) + where(choice)),
        (POOLED, DPO_POOLED + where(choice)),
    ]


def label(name: str, pts: pd.DataFrame) -> str:
    """A pooled control's label with the betas it really has."""
    if "pooled" not in name:
        return name
    betas = ", ".join(f"{b:g}" for b in sorted(pts["beta"].dropna().unique()))
    return f"DPO (beta {betas} pooled)"


def per_base(pts: pd.DataFrame, x: str, metric: str, g: np.ndarray) -> np.ndarray:
    """(bases, grid): each base's mean over its units of the unit's isotonic frontier."""
    rows = []
    for _, b in pts.groupby("base", sort=True):
        units = np.vstack([fit(u[x], u[metric]).at(g) for _, u in b.groupby("seed")])
        rows.append(ci95(units)[0])
    return np.vstack(rows) if rows else np.empty((0, g.size))


def _frontier_panel(ax, test: pd.DataFrame, choice: dict, x: str, metric: str, rng_x) -> None:
    g = grid(min(0.0, rng_x[0]), max(1.0, rng_x[1]), 0.01) if x == "x" else grid(*rng_x)
    for i, (name, by) in enumerate(groups(choice)):
        pts = runs(test, by)
        if pts.empty:
            continue
        mean, half, n = ci95(per_base(pts, x, metric, g))
        color, total = COLORS[i], pts["base"].nunique()
        name = label(name, pts)
        full = np.where(n == total, mean, np.nan)
        ax.plot(g, full, color=color, lw=2, label=f"{name}: mean frontier (n={total} bases)")
        ax.plot(
            g,
            np.where(n >= 2, mean, np.nan),
            color=color,
            lw=0.8,
            ls="--",
            label="dashed: where only some bases reach",
        )
        ax.fill_between(g, mean - half, mean + half, color=color, alpha=0.2, lw=0)
        one = pts if "pooled" not in name else pts[pts["beta"] == P.DEFAULT_BETA]
        steps = one.groupby(["step", "base"])[[x, metric]].mean().groupby("step").mean()
        ax.plot(
            steps[x],
            steps[metric],
            "o",
            color=color,
            ms=3.5,
            label=f"{name.split(' (')[0]}{' beta 0.1' if 'pooled' in name else ''}: "
            "mean point per step",
        )
        for step, r in steps.iterrows():
            ax.annotate(
                str(int(step)),
                (r[x], r[metric]),
                fontsize=6,
                color=color,
                xytext=(2, 3),
                textcoords="offset points",
            )
    ax.axvspan(*rng_x, color="0.9", zorder=0, label="preregistered x-range")
    if x == "x":
        for level in P.REACH_LEVELS:
            ax.axvline(level, color="0.6", lw=0.6, ls=":")
    ax.set_xlabel(NAMES[x])
    ax.set_ylabel(NAMES[metric])


def _reach_panel(ax, test: pd.DataFrame, choice: dict) -> None:
    for i, (name, by) in enumerate(groups(choice)):
        pts = runs(test, by)
        if pts.empty:
            continue
        top = pts.groupby(["base", "seed"])["x"].max()
        hit = np.vstack([reached(t, P.REACH_LEVELS) for t in top]).astype(float)
        by_base = pd.DataFrame(hit, index=top.index.get_level_values(0)).groupby(level=0).mean()
        mean, half, n = ci95(by_base.to_numpy())
        ax.errorbar(
            np.array(P.REACH_LEVELS) + (i - 0.5) * 0.01,
            mean,
            yerr=half,
            capsize=2,
            marker="os"[i % 2],
            color=COLORS[i],
            ls="-",
            label=f"{label(name, pts)}: share reaching (n={len(by_base)} bases)",
        )
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel(NAMES["x"] + " level")
    ax.set_ylabel("share of units that reach the level")


def frontier(cells: pd.DataFrame, choice: dict, out: Path) -> list[Path]:
    test = P.on_test_bases(cells)
    axes_x = [("x", P.X_RANGE)]
    if choice.get("logodds_range") and test["logodds"].notna().any():
        axes_x.append(("logodds", tuple(choice["logodds_range"])))
    metrics = retention(test)
    fig, axes = new_figure(3, width=4.4, height=3.6, rows=len(axes_x))
    for r, (x, rng_x) in enumerate(axes_x):
        row = axes[3 * r : 3 * r + 3]
        for ax, metric in zip(row[:2], metrics, strict=True):
            _frontier_panel(ax, test, choice, x, metric, rng_x)
        row[1].sharey(row[0])
        if r == 0:
            _reach_panel(row[2], test, choice)
        else:
            row[2].set_visible(False)
    handles = {
        lbl: h for ax in axes for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True)
    }
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=3, fontsize=7)
    fig.suptitle(
        "Retention against personalisation on the test bases (bands, bars: 95% "
        "intervals over bases; numbers: training steps; dotted: reach levels)",
        fontsize=9,
    )
    return save(fig, out / "frontier")


def calibration(
    cal: pd.DataFrame, choice: dict, regimes: pd.DataFrame, anchors: pd.DataFrame, out: Path
) -> list[Path]:
    """DPO's median style share per candidate regime against the fraction of its horizon, and
    the anchor weights' score and coverage."""
    from bapo_exp.analysis.calibration import median_curve

    fig, (ax, bx) = new_figure(2, width=4.8, height=3.6)
    lrs = sorted(regimes["lr"].unique()) if len(regimes) else []
    for r in regimes.itertuples():
        curve = median_curve(cal, r.lr, r.horizon, choice.get("design"))
        chosen = r.lr == choice.get("lr") and r.horizon == choice.get("horizon")
        ax.plot(
            curve["step"] / r.horizon,
            curve["x"],
            color=COLORS[lrs.index(r.lr) % 6],
            ls="-" if r.horizon == regimes["horizon"].min() else "--",
            marker=".",
            lw=3 if chosen else 1.2,
            label=f"lr {r.lr:g}, {r.horizon} steps"
            f"{' (chosen)' if chosen else ''}{'' if r.passes else ' (fails)'}",
        )
    ax.axvspan(*P.CROSS_WINDOW, color="0.9", zorder=0, label="t50 window")
    ax.axhline(P.CROSS, color="k", lw=0.7, ls=":")
    ax.set_xlabel("step / horizon")
    ax.set_ylabel("DPO's median style share (calibration runs)")
    if len(anchors):
        ok = anchors["covers_all"].to_numpy(bool)
        bx.semilogx(anchors["anchor_weight"], anchors["score"], "k-", lw=0.8)
        bx.plot(
            anchors["anchor_weight"][ok],
            anchors["score"][ok],
            "o",
            color="C2",
            label="every run covers the x-range",
        )
        bx.plot(
            anchors["anchor_weight"][~ok],
            anchors["score"][~ok],
            "x",
            color="C3",
            label="some run does not",
        )
        bx.axvline(choice["anchor_weight"], color="C0", ls="--", label="chosen")
        bx.axhline(0, color="k", lw=0.7)
    bx.set_xlabel("anchor weight lambda")
    bx.set_ylabel("score: mean frontier gap vs DPO pooled")
    fig.legend(loc="outside lower center", ncol=4, fontsize=7)
    bases = ", ".join(map(str, sorted(cal["base"].unique())))
    fig.suptitle(f"Calibration on bases {bases} only", fontsize=9)
    return save(fig, out / "calibration")


def demo(cells: pd.DataFrame, out: Path) -> list[Path]:
    """The demo: per preference, knowledge and alignment against style share, one curve per
    method through its evaluated steps (one base, one data order: bars are standard errors over
    the test items)."""
    files: list[Path] = []
    base = cells[cells["method"] == "base"].iloc[0]
    steps = ", ".join(str(int(s)) for s in sorted(set(cells["step"])))
    for pref, df in cells[cells["method"] != "base"].groupby("preferences"):
        fig, axes = new_figure(2, width=5.0, height=3.8)
        for ax, metric in zip(axes, ("knowledge", "alignment"), strict=True):
            for i, (method, g) in enumerate(df.groupby("method")):
                g = pd.concat([base.to_frame().T, g]).sort_values("step")
                ax.errorbar(
                    g["x"].astype(float),
                    g[metric].astype(float),
                    yerr=g[f"{metric}_se"].astype(float),
                    ls="-",
                    marker="os^D"[i % 4],
                    capsize=2,
                    ms=5,
                    label=method,
                )
            ax.plot([base["x"]], [base[metric]], "k*", ms=12, label="untrained base")
            ax.set_xlabel(NAMES["x"])
            ax.set_ylabel(NAMES[metric])
            ax.set_title(f"{metric.capitalize()}: steps {steps}")
        axes[0].legend(fontsize=7, loc="lower left")
        fig.suptitle(f"Demo, preference {pref}: one base, one data order (bars: s.e. over items)")
        files += save(fig, out / f"demo_{pref}")
    return files


def draw_all(cells: pd.DataFrame, verdicts: pd.DataFrame, choice: dict, out: Path) -> list[Path]:
    from bapo_exp.analysis.study_forest import anchoring, heterogeneity, primaries, references

    files = [
        *frontier(cells, choice, out),
        *anchoring(verdicts, out),
        *primaries(verdicts, out),
        *references(cells, choice, out),
        *heterogeneity(cells, choice, out),
    ]
    cal = cells[cells["role"] == "calibration"]
    if not cal.empty and "lr" in choice:
        from bapo_exp.analysis.calibration import anchor_table, regime_table

        design = choice.get("design")
        anchors = anchor_table(cal, choice["lr"], choice["horizon"], design)
        regimes = regime_table(cal, design)
        files += calibration(cal, choice, regimes, anchors, out / "calibration")
    return files
