"""The study's results as markdown: the README's results section is this text, generated.

    text = markdown(cells, verdicts, meta)    # python -m bapo_exp.analysis.study ... --markdown

Deterministic for a given ``cells.csv`` (fixed formats, sorted rows, seeded intervals), so a
test can compare the README with it (``tests/test_readme.py``).
"""

from __future__ import annotations

import math

import pandas as pd

from bapo_exp.analysis.claims import (
    FINAL,
    HET_LEVEL,
    LEVELS,
    MAIN,
    SCARCE,
    matched_losses,
    with_base,
)
from bapo_exp.analysis.verdicts import select

MARK = {"supported": "supported", "refuted": "REFUTED", "inconclusive": "inconclusive",
        "not reached": "not reached", "insufficient": "insufficient"}  # fmt: skip


def _f(value: float, digits: int = 3, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def cell_text(row: pd.Series | None) -> str:
    """``+0.012 [-0.020, +0.041] inconclusive 3/5`` (or ``not reached 0/5``)."""
    if row is None:
        return ""
    if row["verdict"] in ("not reached", "insufficient"):
        nr = int(row["n_not_reached_treatment"] + row["n_not_reached_control"])
        return f"{MARK[row['verdict']]} ({nr} curves)"
    interval = f"[{_f(row['lo'], sign=True)}, {_f(row['hi'], sign=True)}]"
    verdict = f"{MARK[row['verdict']]} {row['bases_expected']}"
    return f"{_f(row['estimate'], sign=True)} {interval} {verdict}"


def _row(table: pd.DataFrame, **match) -> pd.Series | None:
    sel = select(table, list(match.items()))
    return sel.iloc[0] if len(sel) else None


def anchoring_table(v: pd.DataFrame) -> list[str]:
    rows = v[v["claim"].str.startswith("A ")]
    head = ["BAPO setting", "metric", *(f"x = {lv}" for lv in LEVELS), f"after {FINAL} steps"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for setting in sorted(rows["treatment"].unique(), key=setting_order):
        for metric in ("knowledge", "alignment"):
            sub = rows[(rows["treatment"] == setting) & (rows["metric"] == metric)]
            cells = [cell_text(_row(sub, compare="matched x", at=lv)) for lv in LEVELS]
            cells.append(cell_text(_row(sub, compare="fixed strength", at=float(FINAL))))
            lines.append(f"| {setting.removeprefix('BAPO ')} | {metric} | " + " | ".join(cells)
                         + " |")  # fmt: skip
    return lines


def anchoring_summary(cells: pd.DataFrame, v: pd.DataFrame) -> str:
    """The anchoring claim in three computed sentences: how far each setting moves generations,
    which settings (if any) beat DPO at every level, and the largest matched difference."""
    main = with_base(cells, MAIN)
    trained = main[main["method"].str.startswith("BAPO") & (main["step"] > 0)]
    reach = trained.groupby("method")["x"].agg(["max", "size"])
    low = [f"{m.removeprefix('BAPO ')} (highest {r['max']:.3f} over {int(r['size'])} evaluations)"
           for m, r in reach.iterrows() if r["max"] < LEVELS[0]]  # fmt: skip
    start = main.loc[main["step"] == 0, "x"].mean()
    rows = v[v["claim"].str.startswith("A ") & (v["compare"] == "matched x")]
    wins = rows.assign(win=rows["verdict"] == "supported").groupby("treatment")["win"].all()
    best = rows.dropna(subset=["estimate"]).sort_values("estimate").groupby("metric").tail(1)
    parts = [
        f"Settings whose generations never reach style share {LEVELS[0]} (the untrained bases "
        f"start at {start:.3f}): {', '.join(low) if low else 'none'}.",
        "Settings ahead of DPO (supported) at every level for both metrics: "
        f"{', '.join(t.removeprefix('BAPO ') for t in wins[wins].index) or 'none'}.",
        "Largest matched difference: " + "; ".join(
            f"{r['metric']} {cell_text(r)} ({r['treatment'].removeprefix('BAPO ')} at x = "
            f"{r['at']})" for _, r in best.sort_values("metric", ascending=False).iterrows()
        ) + ".",
    ]  # fmt: skip
    return " ".join(parts)


def setting_order(label: str) -> tuple:
    """BAPO settings in the tables' and figures' order: plain ones first, by anchor weight."""
    parts = label.split()
    weight = float(parts[1].split("=")[1]) if len(parts) > 1 and "=" in parts[1] else 0.0
    return (len(parts) > 2, weight, label)


def references_table(v: pd.DataFrame) -> list[str]:
    rows = v[v["claim"].str.startswith("M ")]
    head = ["pairs", "comparison", f"pref_acc after {FINAL}", f"style share after {FINAL}",
            "knowledge at x = 0.5", "alignment at x = 0.5"]  # fmt: skip
    body = []
    for (group, t, c), sub in rows.groupby(["group", "treatment", "control"], sort=True):
        cells = [
            cell_text(_row(sub, metric=m, compare="fixed strength")) for m in ("pref_acc", "x")
        ]
        cells += [cell_text(_row(sub, metric=m, at=0.5)) for m in ("knowledge", "alignment")]
        pairs = int(float(group.split("=")[1]))
        body.append(((pairs, t, c), f"| {pairs} | {t} - {c} | " + " | ".join(cells) + " |"))
    head_lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    return head_lines + [line for _, line in sorted(body)]


def trend_table(v: pd.DataFrame) -> list[str]:
    rows = v[v["claim"].str.startswith("H ")]
    head = ["axis", "method", "metric", "where", "slope per base", "verdict", "bases"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows.sort_values(["claim", "at"], ascending=[True, False]).to_dict("records"):
        axis = "distance (exposure)" if " exposure " in r["claim"] else "mixed preferences"
        method = r["claim"].split(" ", 2)[2].rsplit(" ", 1)[0]
        where = f"after {FINAL} steps" if r["at"] == FINAL else f"at x = {r['at']}"
        lines.append(f"| {axis} | {method} | {r['metric']} | {where} | "
                     f"{_f(r['estimate'], sign=True)} "
                     f"[{_f(r['lo'], sign=True)}, {_f(r['hi'], sign=True)}] | "
                     f"{MARK[r['verdict']]} | {r['bases_expected']} |")  # fmt: skip
    return lines


def reached_text(cells: pd.DataFrame) -> str:
    """Per heterogeneity method and design point: curves that reach ``HET_LEVEL`` / all."""
    reached = matched_losses(cells, HET_LEVEL)
    final = cells[(cells["step"] == FINAL) & (cells["n_pairs"] == MAIN["n_pairs"])]
    keys = ["method", "exposure", "k_prefs"]
    total = final[final["method"].isin(set(reached["method"]))].groupby(keys).size()
    got = reached.groupby(keys).size().reindex(total.index, fill_value=0)
    methods = set(cells.loc[cells["exposure"] != MAIN["exposure"], "method"]) - {"base"}
    parts = []
    for method in sorted(methods):
        points = [f"{_point(e, k)} {got[key]}/{total[key]}"
                  for key in sorted(total.index, key=lambda t: (t[2], t[1])) if key[0] == method
                  for e, k in [key[1:]]]  # fmt: skip
        parts.append(f"{method}: {', '.join(points)}")
    return "; ".join(parts)


def _point(exposure: float, k_prefs: int) -> str:
    return f"exposure {exposure:g}" if k_prefs == 1 else f"{k_prefs} preferences"


def base_table(cells: pd.DataFrame) -> list[str]:
    """Per base: the untrained model and DPO after the full training (the spread of bases)."""
    main = select(cells, [("exposure", MAIN["exposure"]), ("preferences", MAIN["preferences"])])
    base = main[main["method"] == "base"].set_index("base")
    dpo = select(main, [("method", "DPO"), ("step", FINAL), ("n_pairs", MAIN["n_pairs"])])
    dpo = dpo.groupby("base")[["x", "knowledge", "alignment"]].mean()
    head = ["base", "knowledge", "alignment", f"DPO {FINAL} steps: style share",
            "knowledge", "alignment"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for b in sorted(set(base.index) & set(dpo.index)):
        lines.append(f"| {b} | {_f(base.at[b, 'knowledge'])} | {_f(base.at[b, 'alignment'])} | "
                     f"{_f(dpo.at[b, 'x'])} | {_f(dpo.at[b, 'knowledge'])} | "
                     f"{_f(dpo.at[b, 'alignment'])} |")  # fmt: skip
    return lines


def verdict_counts(v: pd.DataFrame, prefix: str, compare: str | None = None) -> str:
    rows = v[v["claim"].str.startswith(prefix)]
    if compare is not None:
        rows = rows[rows["compare"] == compare]
    counts = rows["verdict"].value_counts()
    return ", ".join(f"{MARK[k]} {counts[k]}" for k in sorted(counts.index))


def ceiling_text(cells: pd.DataFrame) -> str:
    """How many of the references claim's runs end at held-out pref_acc 1 (no room to differ)."""
    final = cells[(cells["step"] == FINAL) & (cells["method"] != "base")]
    runs = final[final["n_pairs"].isin(SCARCE) & (final["exposure"] == MAIN["exposure"])]
    runs = runs[runs["preferences"] == MAIN["preferences"]]
    return f"{int((runs['pref_acc'] >= 1.0).sum())} of {len(runs)}"


def clip_text(cells: pd.DataFrame) -> str:
    """How often CTRO's band clipped the second reference, per MRPO setting (mean over runs)."""
    mrpo = cells[cells["method"].str.startswith("MRPO")].drop_duplicates("cell")
    share = mrpo.groupby("method")["clip_frac"].agg(["mean", "min", "max"])
    parts = [f"{m}: {r['mean']:.2f} (runs {r['min']:.2f}-{r['max']:.2f})"
             for m, r in share.iterrows()]  # fmt: skip
    return "; ".join(parts) if parts else "no MRPO runs"


def markdown(cells: pd.DataFrame, verdicts: pd.DataFrame, meta: dict) -> str:
    """The results section (see the module docstring)."""
    bases = sorted(cells.loc[cells["method"] != "base", "base"].unique())
    n_bases = len(bases)
    unfinished = meta.get("unfinished_cells", 0)
    warning = [f"**Partial:** {unfinished} cell(s) failed or did not finish and are left out "
               "(analysed with `--partial`).", ""] if unfinished else []  # fmt: skip
    lines = [
        *warning,
        f"`make study` ran {meta['n_cells']} cells on {n_bases} micro base models (the random "
        f"factor: pretraining seeds {', '.join(map(str, bases))}) in "
        f"{meta['wall']} on 2 CPU cores; every number below is computed from "
        "`results/study/cells.csv` by `python -m bapo_exp.analysis.study results/study "
        "--markdown`. Each cell: `estimate [95% interval] verdict k/n`, the mean over bases of "
        "the paired difference (treatment minus control, within a base and data seed), the "
        "wider of a hierarchical bootstrap (bases, then seeds) and a t-interval over base "
        "means, the verdict (supported: the interval excludes 0 on the claimed side; REFUTED: "
        "on the other side; inconclusive: it includes 0), and how many bases' own estimates "
        "have the claimed sign. x is the generated personalisation (style share).",
        "",
        f"**Anchoring** (BAPO minus DPO). After {FINAL} steps: "
        f"{verdict_counts(verdicts, 'A ', 'fixed strength')}; at matched personalisation: "
        f"{verdict_counts(verdicts, 'A ', 'matched x')} (settings by metric by level). "
        f"{anchoring_summary(cells, verdicts)}",
        "",
        *anchoring_table(verdicts),
        "",
        f"**Several references** (MRPO minus a control). After {FINAL} steps: "
        f"{verdict_counts(verdicts, 'M ', 'fixed strength')}; at matched personalisation: "
        f"{verdict_counts(verdicts, 'M ', 'matched x')}. Share of tokens where CTRO's band "
        f"clipped the second reference's ratio (`mrpo/clip_frac_1`, mean over training): "
        f"{clip_text(cells)}. Runs of this comparison that end at held-out pref_acc 1.000 (its "
        f"ceiling): {ceiling_text(cells)}:",
        "",
        *references_table(verdicts),
        "",
        f"**Heterogeneity** (slope of the loss after {FINAL} steps, and where each curve first "
        f"reaches style share {HET_LEVEL}; verdicts: {verdict_counts(verdicts, 'H ')}). Curves "
        f"that reach x = {HET_LEVEL}, of all: {reached_text(cells)}:",
        "",
        *trend_table(verdicts),
        "",
        "**The bases** (untrained, and DPO after the full training, mean over data seeds):",
        "",
        *base_table(cells),
    ]
    return "\n".join(lines) + "\n"
