"""The study's results as markdown: the README's results section is this text, generated.

    verdicts, text = analyse(cells, meta, choice, folder)   # python -m bapo_exp.analysis.study

It opens with the protocol's commit and the deviations, then a plain-language summary per claim
(what was found, how sure, the smallest effect it could have seen, what it cannot say), then
the tables: primary (Holm-adjusted), reach, secondary (exploratory), calibration, the bases.
Deterministic for given files (fixed formats, sorted rows, seeded intervals), so a test can
compare the README with it (``tests/test_readme.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.claims import CLAIMS, DPO, DPO_POOLED, bapo_where, verdict_table, where
from bapo_exp.analysis.frontier import reached
from bapo_exp.analysis.study_tables import (
    base_table,
    calibration_lines,
    deviations,
    f,
    row_table,
)
from bapo_exp.analysis.verdicts import NOT_MATCHED

SCOPE = "one synthetic world and 0.56M-parameter micro models"


def analyse(
    cells: pd.DataFrame, meta: dict, choice: dict, folder: Path, n_boot: int = P.N_BOOT
) -> tuple[pd.DataFrame, str]:
    """The verdict table and the markdown of the study in ``folder`` (``results/study``)."""
    verdicts = verdict_table(cells, choice, n_boot=n_boot)
    return verdicts, markdown(
        cells, verdicts, meta, choice, deviations(cells, meta, choice, folder)
    )


def _found(r: pd.Series) -> str:
    if r["outcome"].startswith("slope"):
        return f"{r['treatment']}'s {r['metric']} loss, {r['outcome']}"
    return f"{r['treatment']} minus {r['control']}, {r['metric']} ({r['outcome']})"


def plain(r: pd.Series) -> str:
    """One primary contrast in plain words: found, how sure, smallest detectable, cannot say."""
    word = "not run" if r["n_units"] == 0 else r["verdict"]
    head = f"**{r['id']}: {word}.** {r['statement']}?"
    if r["n_units"] == 0:
        return f"{head} Not run: cells.csv has no test-base runs of this contrast."
    if r["verdict"] in ("insufficient", "not reached", P_CEILING) and r["n_bases"] < P.MIN_BASES:
        return f"{head} Not decided: {r['note']}."
    level = f"{r['ci']:.1%}".replace(".0%", "%")
    found = (
        f" Found: {_found(r)} = {f(r['estimate'], sign=True)} (Holm-adjusted {level} "
        f"interval {f(r['lo'], sign=True)} to {f(r['hi'], sign=True)}; {r['agree']} of "
        f"{r['n_bases']} test bases on the claimed side, {r['need']} needed)."
    )
    sure = {
        "supported": " How sure: supported at a familywise error of 5% over the primary family.",
        "refuted": " How sure: REFUTED: credibly in the other direction, familywise 5%.",
        "inconclusive": " How sure: not shown"
        + (f" ({r['note']})." if r["note"] else ": the adjusted interval includes 0."),
        "not reached": f" How sure: not decided: {r['note']}.",
        P_CEILING: f" How sure: no information: {r['note']}.",
        NOT_MATCHED: f" How sure: not judged: {r['note']}.",
    }.get(r["verdict"], "")
    reach = ""
    if pd.notna(r["reach"]):
        reach = (
            f" Reach (share of the x-range the treatment covers minus the control's): "
            f"{f(r['reach'], sign=True)} [{f(r['reach_lo'], sign=True)}, "
            f"{f(r['reach_hi'], sign=True)}]."
        )
    cannot = (
        f" Smallest effect it could have seen (80% power at the first Holm level): "
        f"{f(r['mde'])}; it cannot rule out smaller effects, nor speak beyond {SCOPE}."
    )
    return head + found + sure + reach + cannot


P_CEILING = "no information (ceiling)"


def axes_text(v: pd.DataFrame) -> str:
    """Whether P1-P2 keep their verdict on the logodds axis (S2) and with the envelope (S1)."""
    parts = []
    for pid, sid, name in (
        ("P1", "S2a", "logodds"),
        ("P2", "S2b", "logodds"),
        ("P1", "S1a", "envelope"),
        ("P2", "S1b", "envelope"),
    ):
        p, s = v[v["id"] == pid], v[v["id"] == sid]
        if p.empty:
            continue
        if s.empty:
            parts.append(f"{pid} on the {name}: not measured")
            continue
        pv, sv = p["verdict"].iloc[0], s["verdict"].iloc[0]
        same = "the same" if pv == sv else f"FLIPS to {sv}"
        parts.append(f"{pid} with the {name}: {same} ({f(s['estimate'].iloc[0], sign=True)})")
    return "; ".join(parts)


def frontier_mean_table(cells: pd.DataFrame, choice: dict) -> list[str]:
    """Per method of C1, the mean over test units of the highest style share reached."""
    from bapo_exp.analysis.verdicts import runs

    test = P.on_test_bases(cells)
    head = [
        "runs",
        "units",
        "mean highest style share",
        *(f"reach {lv:g}" for lv in P.REACH_LEVELS),
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    weight = float(choice["anchor_weight"])
    main = where(choice)
    groups = (
        (f"BAPO lambda={weight:g}", bapo_where(weight) + main),
        ("DPO beta 0.1", DPO + main),
        ("DPO pooled over beta", DPO_POOLED + main),
    )
    for name, by in groups:
        pts = runs(test, by)
        if pts.empty:
            lines.append(f"| {name} | not run |" + " |" * (1 + len(P.REACH_LEVELS)))
            continue
        top = pts.groupby(["base", "seed"])["x"].max()
        shares = [sum(bool(reached(t, [lv])[0]) for t in top) for lv in P.REACH_LEVELS]
        lines.append(
            f"| {name} | {len(top)} | {f(top.mean())} | "
            + " | ".join(f"{k}/{len(top)}" for k in shares)
            + " |"
        )
    return lines


def opening(v: pd.DataFrame, meta: dict, devs: list[str]) -> list[str]:
    """The protocol's commit, the deviations and the plain summary per claim."""
    unfinished, sha = meta.get("unfinished_cells", 0), meta.get("protocol_sha")
    prim = v[v["family"] == "primary"]
    partial = [f"**Partial:** {unfinished} cell(s) failed or did not finish and are left out "
               "(analysed with `--partial`).", ""]  # fmt: skip
    lines = [
        *(partial if unfinished else []),
        f"**Protocol:** `docs/STUDY_PROTOCOL.md` at commit `{sha[:12] if sha else 'none'}`"
        + ("" if sha else " (these runs predate the protocol)")
        + ". **Deviations:** "
        + ("none." if not devs else f"{len(devs)}:"),
        *[f"- {d}" for d in devs],
        "",
        "**What was found, claim by claim** (primary contrasts, Holm over "
        f"{len(prim)}; each needs {P.MIN_BASES}+ test bases and two thirds of them agreeing):",
        "",
    ]
    for cid, text in CLAIMS.items():
        rows = prim[prim["claim"] == cid]
        lines.append(f"- **{cid}. {text}.** " + " ".join(plain(r) for _, r in rows.iterrows()))
    return lines


def markdown(
    cells: pd.DataFrame, v: pd.DataFrame, meta: dict, choice: dict, devs: list[str]
) -> str:
    """The results section (see the module docstring)."""
    trained = cells[cells["method_name"] != "none"]
    test = sorted(trained.loc[trained["role"] == "test", "base"].unique())
    cal = sorted(trained.loc[trained["role"] == "calibration", "base"].unique())
    lines = [
        *opening(v, meta, devs),
        "",
        f"`make study` ran {meta['n_cells']} cells on {len(test)} test bases "
        f"({', '.join(map(str, test))}) and {len(cal)} calibration bases"
        f"{' (' + ', '.join(map(str, cal)) + ')' if cal else ''} in {meta['wall']} on 2 CPU "
        "cores; every number here is computed from `results/study/cells.csv` by `python -m "
        "bapo_exp.analysis.study results/study --markdown`. Intervals: the wider of a "
        "hierarchical bootstrap (bases, then seeds) and a t-interval over base means; primaries "
        "at their Holm level, secondaries at 95% unadjusted. MDE: the minimum detectable effect "
        "(80% power). Verdict axes: " + (axes_text(v) or "none") + ".",
        "",
        "**Primary contrasts** (Holm-adjusted):",
        "",
        *row_table(v[v["family"] == "primary"], adjusted=True),
        "",
        "**Reach** (test units at the main design; the primary gap is averaged over the part of "
        f"style share {P.X_RANGE[0]:g}-{P.X_RANGE[1]:g} both runs reach, a unit sharing less "
        f"than {P.MIN_COVERAGE:.0%} of it is not reached):",
        "",
        *frontier_mean_table(cells, choice),
        "",
        "**Secondary analyses (exploratory**, unadjusted 95% intervals; `not run`: no runs in "
        "cells.csv; `not reached`: runs that did not reach the x-range):",
        "",
        *row_table(v[v["family"] == "secondary"], adjusted=False),
        "",
        *calibration_lines(cells, choice),
        "",
        "**The bases** (test bases, untrained, and DPO at its last step, mean over data seeds):",
        "",
        *base_table(cells, choice),
    ]
    return "\n".join(lines) + "\n"


def _pm(value: float, se: float) -> str:
    if pd.isna(value):
        return "n/a"
    return f"{value:.3f}" if pd.isna(se) or se == 0 else f"{value:.3f} +- {se:.3f}"


def demo_markdown(cells: pd.DataFrame, meta: dict) -> str:
    """The demo's table: one base, one data seed; every rate with its standard error over items."""
    base = cells[cells["method"] == "base"].iloc[0]
    rows = cells[cells["method"] != "base"].sort_values(["preferences", "method", "step"])
    n = tuple(
        int(base[c]) if not math.isnan(base[c]) else 0
        for c in ("x_n", "knowledge_n", "alignment_n")
    )
    lines = [
        f"`make demo` ({meta['n_cells']} runs, {meta['wall']} on 2 CPU cores when last run) on "
        f"one micro base (fingerprint `{str(base['base_fingerprint'])[7:19]}`) and one data "
        f"order; standard errors are over the items of each test: style share over {n[0]} "
        f"held-out prompts, knowledge over {n[1]} questions (neutral wording), alignment over "
        f"{n[2]} pairs. One base is an anecdote: the conclusions come from `make study` (below).",
        "",
        "| method | preference | steps | style share | knowledge (neutral) | knowledge (all "
        "wordings) | alignment |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| base model | | 0 | {_pm(base['x'], base['x_se'])} | "
        f"{_pm(base['knowledge'], base['knowledge_se'])} | {base['knowledge_all']:.3f} | "
        f"{_pm(base['alignment'], base['alignment_se'])} |",
    ]
    for r in rows.to_dict("records"):
        lines.append(
            f"| {r['method']} | {r['preferences']} | {r['step']} | {_pm(r['x'], r['x_se'])} | "
            f"{_pm(r['knowledge'], r['knowledge_se'])} | {r['knowledge_all']:.3f} | "
            f"{_pm(r['alignment'], r['alignment_se'])} |"
        )
    return "\n".join(lines) + "\n"
