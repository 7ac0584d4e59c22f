"""The study's verdict figures: ``anchoring`` (a forest of C1's contrasts), ``references`` (C2
against the training-set size and the clip fraction), ``heterogeneity`` (C3's losses on both
axes). Primary rows show their Holm-adjusted interval, secondary ones the unadjusted 95% one
(said in each label); grey dots: the per-base estimates; ticks at +-MDE; a row without an
interval says why in words ("not run", "not reached", "insufficient")."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.claims import (
    ACCURACY,
    DPO,
    MRPO,
    RESCALED,
    _exposure,
    _mixing,
    bapo_where,
    retention,
    where,
)
from bapo_exp.analysis.plots import COLORS, ci95, new_figure, save
from bapo_exp.analysis.verdicts import last_points, run_losses

SHORT = (
    ("BAPO lambda=", "BAPO λ="),
    (" (beta 0.05, 0.1, 0.2 pooled)", " pooled"),
    ("DPO rescaled", "resc. DPO"),
)


def _short(text: str) -> str:
    for long, short in SHORT:
        text = text.replace(long, short)
    return text


def _label(r: pd.Series) -> str:
    level = f"Holm {r['ci']:.1%}" if r["family"] == "primary" else "expl. 95%"
    versus = f" - {r['control']}" if r["control"] else ""
    return _short(f"{r['id']} ({level}) {r['treatment']}{versus}")


def _forest(ax, rows: pd.DataFrame) -> None:
    """One line per contrast: estimate and interval, per-base dots, +-MDE ticks, verdict."""
    y = np.arange(len(rows))[::-1]
    for yi, (_, r) in zip(y, rows.iterrows(), strict=True):
        if r["n_bases"] == 0:
            why = "not run" if r["n_units"] == 0 else r["verdict"]
            ax.annotate(
                why,
                (0.5, yi),
                xycoords=("axes fraction", "data"),
                ha="center",
                va="center",
                fontsize=7,
                color="0.4",
            )
            continue
        primary = r["family"] == "primary"
        dots = np.array(list(r["per_base"].values()), dtype=float)
        ax.plot(dots, np.full(dots.size, yi), "o", color="0.7", ms=2.5)
        err = [[r["estimate"] - r["lo"]], [r["hi"] - r["estimate"]]]
        ax.errorbar(
            [r["estimate"]],
            [yi],
            xerr=err,
            fmt="D" if primary else "o",
            ms=4,
            color="k" if primary else "C0",
            capsize=3,
        )
        if np.isfinite(r["mde"]):
            ax.plot([-r["mde"], r["mde"]], [yi, yi], "|", color="C3", ms=7)
        ax.annotate(
            r["verdict"],
            (1.0, yi),
            xycoords=("axes fraction", "data"),
            fontsize=6,
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
        )
    ax.set_yticks(y, [_label(r) for _, r in rows.iterrows()], fontsize=6)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.axvline(0, color="k", lw=0.8)


NOTE = (
    "grey dots: per-base estimates; red ticks: +-MDE (80% power); primaries: Holm-adjusted "
    "interval, exploratory: 95%"
)


def anchoring(verdicts: pd.DataFrame, out: Path) -> list[Path]:
    """C1's contrasts, knowledge and alignment side by side on one x scale (rows not run at
    all, e.g. S6 without a well-formedness rate, are named in the title)."""
    family = verdicts["metric"].str.split("_").str[0]  # knowledge_skill and knowledge together
    c1 = verdicts["claim"] == "C1"
    rows, none = verdicts[c1 & family.isin(ACCURACY)], verdicts[c1 & ~family.isin(ACCURACY)]
    n = max(int((family[rows.index] == m).sum()) for m in ACCURACY)
    fig, axes = new_figure(2, width=5.6, height=0.3 * n + 1.4, sharex=True)
    for ax, metric in zip(axes, ACCURACY, strict=True):
        _forest(ax, rows[family[rows.index] == metric])
        ax.set_xlabel(f"treatment minus control: {metric} (1 - Brier; S7: accuracy)")
    ran = none[none["n_units"] > 0]
    rest = "; " + ", ".join(f"{r.id} ({r.metric}) {r.verdict}" for r in ran.itertuples())
    fig.suptitle(f"C1 anchoring on the test bases. {NOTE}" + (rest if len(ran) else ""), fontsize=7)
    return save(fig, out / "anchoring")


def primaries(verdicts: pd.DataFrame, out: Path) -> list[Path]:
    """Every primary contrast in its own panel (their units differ), Holm-adjusted."""
    rows = verdicts[verdicts["family"] == "primary"]
    fig, axes = new_figure(len(rows), width=3.0, height=1.9)
    for ax, (_, r) in zip(axes, rows.iterrows(), strict=True):
        _forest(ax, r.to_frame().T)
        ax.set_yticks([0], [r["id"]], fontsize=8)
        ax.set_title(
            _short(f"{r['treatment']}" + (f" - {r['control']}" if r["control"] else "")), fontsize=7
        )
        ax.set_xlabel(f"{r['metric']}: {r['outcome']}", fontsize=6)
    fig.suptitle(f"Primary contrasts (C1-C3) on the test bases. {NOTE}", fontsize=7)
    return save(fig, out / "primaries")


def _per_n(cells: pd.DataFrame, where_t, where_c, metric: str) -> pd.DataFrame:
    """Per training-set size: treatment minus control at the last step, 95% over bases."""
    keys = ["base", "seed", "n_pairs"]
    t = last_points(cells, where_t).groupby(keys)[metric].mean()
    c = last_points(cells, where_c).groupby(keys)[metric].mean()
    d = (t - c).dropna().groupby(["n_pairs", "base"]).mean().unstack("n_pairs")
    mean, half, n = ci95(d.to_numpy())
    return pd.DataFrame({"n_pairs": d.columns, "mean": mean, "half": half, "n": n})


def _empty(ax, what: str) -> None:
    ax.annotate(
        f"not measured in these cells ({what})",
        (0.5, 0.5),
        xycoords="axes fraction",
        ha="center",
        fontsize=7,
        color="0.4",
    )


def _by_size(ax, test: pd.DataFrame, metrics, controls, refs: tuple) -> None:
    """Per training-set size (log axis, labelled in pairs): MRPO minus each control."""
    drawn = 0
    for j, metric in enumerate(metrics):
        for i, (name, by) in enumerate(controls):
            d = _per_n(test, MRPO + refs, by + refs, metric)
            if d.empty:
                continue
            drawn += 1
            ax.errorbar(
                d["n_pairs"].astype(float) * (1 + 0.04 * (i + j)),
                d["mean"],
                yerr=d["half"],
                capsize=2,
                marker="os^D"[i + j],
                color=COLORS[i + j],
                label=f"MRPO - {name}: {metric} (n={int(d['n'].max())} bases)",
            )
            ax.set_xscale("log")
            ax.set_xticks(d["n_pairs"].astype(float), [str(int(n)) for n in d["n_pairs"]])
            ax.minorticks_off()
    if not drawn:
        _empty(ax, ", ".join(metrics))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xlabel("training pairs")
    ax.set_ylabel("MRPO minus control, last step")


def references(cells: pd.DataFrame, choice: dict, out: Path) -> list[Path]:
    """C2: MRPO minus its controls against the training-set size (held-out hard margin;
    knowledge and alignment), and the eps sweep: hard margin against MRPO's clip fraction.
    Exploratory per size and per eps (the pooled primaries are P3, P4)."""
    test, refs = P.on_test_bases(cells), where(choice, "exposure", "preferences")
    fig, axes = new_figure(3, width=4.3, height=3.4)
    controls = (("DPO", DPO), ("rescaled DPO", RESCALED))
    _by_size(axes[0], test, ("hard_margin",), controls, refs)
    axes[0].set_title("held-out hard margin", fontsize=8)
    _by_size(axes[2], test, retention(test), controls[:1], refs)
    axes[2].set_title("knowledge and alignment", fontsize=8)
    sweep = last_points(
        test, (("method_name", ("mrpo", "dpo_rescaled")), ("n_pairs", P.EPS_SWEEP_PAIRS)) + refs
    )
    clip = sweep[sweep["method_name"] == "mrpo"].groupby("ctro_eps")["clip_frac"].mean()
    for i, (method, g) in enumerate(sweep.groupby("method_name")):
        per = (
            g.groupby(["ctro_eps", "base"])["hard_margin"].mean().unstack("base").dropna(how="all")
        )
        if per.empty:
            continue
        mean, half, n = ci95(per.to_numpy().T)
        axes[1].errorbar(
            clip.reindex(per.index),
            mean,
            yerr=half,
            marker="os"[i],
            capsize=2,
            ls="",
            color=COLORS[i],
            label=f"{method} at {P.EPS_SWEEP_PAIRS} pairs (n={int(n.max())} bases)",
        )
    if not axes[1].has_data():
        _empty(axes[1], f"hard margin at {P.EPS_SWEEP_PAIRS} pairs")
    axes[1].set_title("eps sweep", fontsize=8)
    axes[1].set_xlabel("MRPO's clip fraction at that eps")
    axes[1].set_ylabel("held-out hard margin, last step")
    if any(ax.get_legend_handles_labels()[0] for ax in axes):
        fig.legend(loc="outside lower center", ncol=3, fontsize=7)
    fig.suptitle(
        "C2 several references on the test bases (bars: 95% intervals over bases; "
        "exploratory per size and per eps)",
        fontsize=9,
    )
    return save(fig, out / "references")


def _losses(
    cells: pd.DataFrame, choice: dict, axis: str, method: str, metric: str, outcome: str
) -> pd.DataFrame:
    """Per run of the axis's contrast (``claims``): its loss and the measured distance or the
    number of preferences."""
    by = DPO if method == "DPO" else bapo_where(float(choice["anchor_weight"]))
    build = _exposure if axis == "exposure" else _mixing
    losses = run_losses(build(choice, method, by, metric, "fig", outcome), cells)
    if axis == "exposure":
        dist = cells.dropna(subset=["distance"]).groupby("cell")["distance"].first()
        losses["against"] = losses["cell"].map(dist)
    return losses


WHEN = {"matched": "at matched frontier", "final": "after the full horizon"}


def heterogeneity(cells: pd.DataFrame, choice: dict, out: Path) -> list[Path]:
    """Losses (base minus trained) at matched frontier and after the full horizon, against the
    measured distance (log axis) and the number of mixed preferences; 95% intervals over
    bases; n: bases with a value at that point (not reached: fewer)."""
    test = P.on_test_bases(cells)
    fig, axes = new_figure(2, width=4.8, height=3.4, rows=2)
    lam = f"BAPO lambda={float(choice['anchor_weight']):g}"
    for r, axis in enumerate(("exposure", "mixing")):
        for c, metric in enumerate(retention(test)):
            ax = axes[2 * r + c]
            for i, (method, outcome) in enumerate(
                (m, o) for m in ("DPO", lam) for o in ("matched", "final")
            ):
                loss = _losses(test, choice, axis, method.split()[0], metric, outcome)
                per = loss.groupby(["design", "base"])[["against", "loss"]].mean()
                if per.empty:
                    continue
                loss_b = per["loss"].unstack("base")
                mean, half, n = ci95(loss_b.to_numpy().T)
                xs = per["against"].groupby("design").mean().reindex(loss_b.index)
                ax.errorbar(
                    xs * (1 + 0.03 * i) if axis == "exposure" else xs + 0.06 * i,
                    mean,
                    yerr=half,
                    capsize=2,
                    marker="os^D"[i],
                    color=COLORS[i],
                    ls="-" if outcome == "matched" else "--",
                    label=f"{method}, {WHEN[outcome]}",
                )
                for xv, yv, k in zip(xs, mean, n, strict=True):
                    ax.annotate(
                        f"n={k}",
                        (xv, yv),
                        fontsize=5,
                        color=COLORS[i],
                        xytext=(2, -7),
                        textcoords="offset points",
                    )
            ax.axhline(0, color="k", lw=0.8)
            if axis == "exposure":
                ax.set_xscale("log")
                ax.set_xlabel("measured distance of the preferred style (nats/token, log)")
            else:
                ax.set_xticks(P.K_PREFS)
                ax.set_xlabel("number of mixed preferences")
            ax.set_ylabel(f"{metric} loss (base minus trained)")
    handles = {
        lbl: h for ax in axes for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True)
    }
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncol=2, fontsize=7)
    fig.suptitle(
        "C3 heterogeneity on the test bases (bars: 95% intervals over bases; n: bases "
        "with a value; no point: not reached)",
        fontsize=9,
    )
    return save(fig, out / "heterogeneity")
