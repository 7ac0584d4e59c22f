"""The study report's tables and lists (``study_report`` puts them together): verdict rows,
deviations from the protocol, the calibration and the bases. Fixed formats, sorted rows."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.claims import ACCURACY, retention
from bapo_exp.analysis.verdicts import select


def f(value, digits: int = 3, sign: bool = False) -> str:
    """A number in a fixed format; ``n/a`` for NaN/None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{float(value):+.{digits}f}" if sign else f"{float(value):.{digits}f}"


def _interval(r: pd.Series) -> str:
    return f"{f(r['estimate'], sign=True)} [{f(r['lo'], sign=True)}, {f(r['hi'], sign=True)}]"


def _verdict(r: pd.Series) -> str:
    if r["n_units"] == 0:
        return "not run"
    word = "REFUTED" if r["verdict"] == "refuted" else r["verdict"]
    return f"{word} ({r['note']})" if r["note"] else word


def row_table(v: pd.DataFrame, adjusted: bool) -> list[str]:
    """One line per contrast: the estimate with its interval, p, agreement, MDE, reach."""
    head = [
        "id",
        "contrast",
        "outcome",
        "estimate [interval]",
        "level",
        "p (Holm)" if adjusted else "p",
        "bases agree",
        "MDE",
        "reach T-C",
        "verdict",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for _, r in v.iterrows():
        if r["n_bases"] == 0:
            cells = ["", "", "", "", "", ""]
        else:
            p = r["p_holm"] if adjusted else r["p"]
            reach = "" if pd.isna(r["reach"]) else f(r["reach"], 2, sign=True)
            agree = f"{r['agree']}/{r['n_bases']} ({r['need']} needed)"
            cells = [
                _interval(r),
                f"{r['ci']:.1%}".replace(".0%", "%"),
                f(p),
                agree,
                f(r["mde"]),
                reach,
            ]
        contrast = r["treatment"] + (f" - {r['control']}" if r["control"] else "")
        lines.append(
            f"| {r['id']} | {contrast} | {r['metric']}, {r['outcome']} | "
            + " | ".join(cells)
            + f" | {_verdict(r)} |"
        )
    return lines


def _instrument(cells: pd.DataFrame) -> list[str]:
    planned = (
        ("x_n", 200, "style share on {n} prompts"),
        ("knowledge_n", 500, "knowledge on {n} items"),
        ("alignment_n", 200, "alignment on {n} items"),
    )
    out = []
    for col, need, text in planned:
        n = pd.to_numeric(cells[col], errors="coerce").median()
        if not math.isnan(n) and n < need:
            out.append(text.format(n=int(n)) + f" ({need} planned)")
    if cells["well_formed"].isna().all():
        out.append("no well-formedness rate")
    if cells["logodds"].isna().all():
        out.append("no logodds (the second x-axis)")
    return out


def _eval_points(test: pd.DataFrame) -> str | None:
    """Scheduled runs (128 pairs) with too few points; C2's scarce runs are read at the end."""
    trained = test[(test["method_name"] != "none") & (test["n_pairs"] == P.MAIN["n_pairs"])]
    points = trained[trained["step"] > 0].groupby("cell")["step"].nunique()
    few = points[points < P.MIN_EVAL_POINTS]
    if few.empty:
        return None
    return (
        f"{len(few)} of {len(points)} test runs evaluated at fewer than "
        f"{P.MIN_EVAL_POINTS} steps (median {int(points.median())})"
    )


def _regime(test: pd.DataFrame, choice: dict) -> str | None:
    if "lr" not in choice:
        return None
    trained = test[test["method_name"] != "none"].drop_duplicates("cell")
    off = trained[(trained["lr"] != choice["lr"]) | (trained["horizon"] != choice["horizon"])]
    if off.empty:
        return None
    seen = ", ".join(
        sorted(
            {
                f"lr {'not recorded' if pd.isna(r.lr) else format(r.lr, 'g')}, {r.horizon:g} steps"
                for r in off.itertuples()
            }
        )
    )
    return (
        f"{len(off)} of {len(trained)} test runs ran another regime than choice.json's "
        f"(lr {choice['lr']:g}, {choice['horizon']} steps): {seen}"
    )


def _betas(test: pd.DataFrame) -> str | None:
    """DPO's control frontier pools the protocol's betas: say which are missing."""
    have = set(test.loc[test["method_name"] == "dpo", "beta"].dropna())
    missing = [b for b in P.CONTROL_BETAS if b not in have]
    if not missing or not have:
        return None
    return (
        "DPO's control frontier lacks beta "
        + ", ".join(f"{b:g}" for b in missing)
        + " (it pools "
        + ", ".join(f"{b:g}" for b in sorted(have))
        + ")"
    )


def _recomputed(cells: pd.DataFrame, choice: dict) -> str | None:
    from bapo_exp.analysis.calibration import calibration_rows, choose

    if choice.get("provisional") or calibration_rows(cells).empty:
        return None
    try:
        again = choose(cells, choice.get("design"))[0]
    except ValueError as err:
        return f"the calibration recomputed from cells.csv fails: {err}"
    keys = ("lr", "horizon", "anchor_weight")
    if all(again[k] == choice.get(k) for k in keys):
        return None
    return (
        "the calibration recomputed from cells.csv ("
        + ", ".join(f"{k} {again[k]}" for k in keys)
        + ") differs from choice.json"
    )


def deviations(cells: pd.DataFrame, meta: dict, choice: dict, folder: Path) -> list[str]:
    """What the results do differently from the protocol: found in the data, and the lead's
    own list (``<folder>/deviations.md``, one ``- `` line each)."""
    test = P.on_test_bases(cells)
    n_cal, n_test = (trained_bases(cells, r) for r in ("calibration", "test"))
    sha = meta.get("protocol_sha")
    out = []
    if not sha:
        out.append("no protocol commit is recorded with these runs (collected before it)")
    elif meta.get("protocol_precedes_runs") is False:
        out.append(
            f"the protocol's commit {sha[:12]} does not precede the runs' code "
            f"({', '.join(s[:12] for s in meta.get('runs_git_sha', []))})"
        )
    if later := meta.get("protocol_amended_after_runs"):
        out.append(
            f"the protocol was amended after the runs' code (by {', '.join(s[:12] for s in later)}"
            f"; the runs follow {sha[:12]}): see its revisions"
        )
    if n_cal < P.PLANNED_CALIBRATION_BASES:
        out.append(f"{n_cal} calibration bases ({P.PLANNED_CALIBRATION_BASES} planned)")
    if n_test < P.PLANNED_TEST_BASES:
        out.append(f"{n_test} test bases ({P.PLANNED_TEST_BASES} planned)")
    if choice.get("provisional"):
        out.append(
            "the anchor weight and the regime were not chosen on calibration bases ("
            + choice.get("anchor_reason", "provisional")
            + ")"
        )
    if inst := _instrument(cells):
        out.append("instrument smaller than planned: " + ", ".join(inst))
    if retention(test) == ACCURACY:
        out.append("scored before the Brier score was recorded: P1, P2 and P5 read the "
                   "accuracies (protocol section 13, R1)")  # fmt: skip
    checks = (_eval_points(test), _regime(test, choice), _betas(test), _recomputed(cells, choice))
    out += [d for d in checks if d]
    listed = folder / "deviations.md"
    if listed.exists():
        out += [ln[2:].strip() for ln in listed.read_text().splitlines() if ln.startswith("- ")]
    return out


def trained_bases(cells: pd.DataFrame, role: str) -> int:
    """Bases of ``role`` with at least one trained run (an untrained base alone, e.g. a second
    reference, is not one)."""
    return cells.loc[(cells["role"] == role) & (cells["method_name"] != "none"), "base"].nunique()


def _table(df: pd.DataFrame, columns: dict[str, str]) -> list[str]:
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + " --- |" * len(columns)]
    for r in df.to_dict("records"):
        cells = [_cell(c, r[c]) for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _cell(column: str, value) -> str:
    """A table cell: a learning rate as ``1.5e-04`` (``f`` would print 0.000), other floats by
    ``f``."""
    if column == "lr" and isinstance(value, float):
        return f"{value:.1e}"
    return f(value) if isinstance(value, float) else str(value)


def calibration_lines(cells: pd.DataFrame, choice: dict) -> list[str]:
    """The calibration section: the choice with its reasons, and both tables recomputed from
    the calibration rows of ``cells`` (none in older studies)."""
    from bapo_exp.analysis.calibration import anchor_table, calibration_rows, regime_table

    cal = calibration_rows(cells)
    bases = ", ".join(map(str, sorted(cal["base"].unique()))) or "none in cells.csv"
    regime = (
        f"learning rate {choice['lr']:g}, {choice['horizon']} steps, evaluated at steps "
        f"{', '.join(map(str, choice['eval_steps']))} ({choice.get('regime_reason', '')})"
        if "lr" in choice
        else "not calibrated"
    )
    lines = [
        f"**Calibration** (bases {bases}; protocol sections 4-5"
        + (", PROVISIONAL: not chosen on calibration bases" if choice.get("provisional") else "")
        + f"). Regime: {regime}. Anchor weight: {choice['anchor_weight']:g} "
        f"({choice.get('anchor_reason', '')}). Logodds range: "
        f"{choice.get('logodds_range') or 'not measured'}; heterogeneity's range: "
        f"{choice.get('het_range', 'not calibrated')}.",
    ]
    if cal.empty:
        return lines
    regimes = regime_table(cal, choice.get("design"))
    lines += [
        "",
        *_table(
            regimes,
            {
                "lr": "lr",
                "horizon": "steps",
                "t50_frac": "t50 / steps",
                "points_before": "points before t50",
                "max_drop": "largest fall",
                "min_well_formed": "lowest well-formed",
                "final_x": "last style share",
                "passes": "passes",
            },
        ),
    ]
    if "lr" in choice:
        anchors = anchor_table(cal, choice["lr"], choice["horizon"], choice.get("design"))
        names = {
            "anchor_weight": "lambda",
            "runs": "runs",
            "coverage": "coverage",
            "covers_all": "covers all",
            "gap_knowledge": "knowledge gap",
            "gap_alignment": "alignment gap",
            "score": "score",
        }
        lines += ["", *_table(anchors, names)]
    return lines


def base_table(cells: pd.DataFrame, choice: dict) -> list[str]:
    """Per test base: the untrained model and DPO (beta 0.1) at its last step."""
    from bapo_exp.analysis.claims import DPO, where

    test = P.on_test_bases(cells)
    main = select(test, where(choice, "exposure"))
    base = main[main["method_name"] == "none"].drop_duplicates("base").set_index("base")
    dpo = select(main, DPO + where(choice, "n_pairs", "preferences"))
    last = dpo.loc[dpo.groupby("cell")["step"].idxmax()]
    last = last.groupby("base")[["x", "knowledge", "alignment"]].mean()
    head = [
        "base",
        "style share",
        "knowledge",
        "alignment",
        "DPO last step: style share",
        "knowledge",
        "alignment",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for b in sorted(set(base.index) & set(last.index)):
        lines.append(
            f"| {b} | {f(base.at[b, 'x'])} | {f(base.at[b, 'knowledge'])} | "
            f"{f(base.at[b, 'alignment'])} | {f(last.at[b, 'x'])} | "
            f"{f(last.at[b, 'knowledge'])} | {f(last.at[b, 'alignment'])} |"
        )
    return lines
