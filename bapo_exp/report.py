"""The short result table a run ends with (and ``bapo-exp show <run>`` prints).

    suite                        acc     acc_norm  n    chance
    mmlu                         0.262   0.262     260  0.250  (at chance)
    hhh                          0.416   0.647     221  0.500
    pref_acc 0.94 +- 0.03 | style share 0.56 +- 0.09 (base 0.00) | generated personalised: yes

Read from the run directory's ``eval/summary.json`` (and ``train/summary.json``) only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bapo_exp.readback import DamagedFileError
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


def _suites(summary: dict) -> list[str]:
    """Top-level suite prefixes (``mmlu``, ``hhh`` ...) with an accuracy, in summary order."""
    return [k[: -len("/acc")] for k in summary if k.endswith("/acc") and k.count("/") == 1]


def _pm(summary: dict, key: str) -> str:
    value = summary.get(key)
    if not isinstance(value, int | float):
        return "-"
    se = summary.get(f"{key}_stderr")
    return f"{value:.3f}" + (f" +- {se:.3f}" if isinstance(se, float) and se == se else "")


def _suite_rows(summary: dict) -> list[str]:
    rows = [f"{'suite':<28} {'acc':>7} {'acc_norm':>9} {'n':>6} {'chance':>7}"]
    for suite in _suites(summary):
        acc, norm = summary.get(f"{suite}/acc"), summary.get(f"{suite}/acc_norm", float("nan"))
        flag = "  (at chance)" if summary.get(f"{suite}/at_chance") == 1.0 else ""
        rows.append(f"{suite:<28} {acc:>7.3f} {norm:>9.3f} {int(summary.get(f'{suite}/n', 0)):>6}"
                    f" {summary.get(f'{suite}/chance', float('nan')):>7.3f}{flag}")  # fmt: skip
    return rows if len(rows) > 1 else []


def _personal_line(summary: dict) -> str:
    parts = []
    if "personal/pref_acc" in summary:
        parts.append(f"held-out pref_acc {_pm(summary, 'personal/pref_acc')}")
    if "gen/style_share" in summary:
        parts.append(f"style share {_pm(summary, 'gen/style_share')} "
                     f"(base {summary.get('gen/base_style_share', float('nan')):.3f})")  # fmt: skip
    elif "gen/win_rate" in summary:
        judge = "judge ok" if summary.get("gen/judge_ok") else "judge FAILED its check"
        parts.append(f"win rate over y_b {_pm(summary, 'gen/win_rate')} ({judge})")
    verdict = summary.get("personal/generated_personalised")
    if "personal/generated_personalised" in summary:
        word = {True: "yes", False: "no", None: "no evidence"}[verdict]
        parts.append(f"generated personalised: {word}")
    if summary.get("personal/likelihood_only"):
        parts.append("LIKELIHOOD ONLY (generations did not move)")
    return " | ".join(parts)


def run_table(run: RunDir | str | Path) -> str:
    """The run's result table as text (empty lines where a stage did not run)."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    lines = []
    if "loss" in (t := run.summary("train") or {}):
        acc = t.get("rewards/accuracy", float("nan"))
        lines.append(f"train: {t.get('total_steps', '?')} steps, final loss {t['loss']:.4f}, "
                     f"reward accuracy {acc:.3f}")  # fmt: skip
    if summary := run.summary("eval"):
        lines += _suite_rows(summary)
        if personal := _personal_line(summary):
            lines.append(personal)
    return "\n".join(lines) or "(no train or eval summary)"


GRID_KEYS = ("gen/style_share", "gen/win_rate", "personal/pref_acc")


def _grid_row(root: Path) -> dict[str, str]:
    row = {"cell": root.name}
    try:
        summary = RunDir(root).summary("eval") or {}
    except DamagedFileError as err:  # the table of a grid goes on; the cell is named
        log.warning("%s", err)
        return {**row, "eval": "damaged summary"}
    for suite in _suites(summary):
        row[suite] = f"{summary[f'{suite}/acc']:.3f}"
    for key in GRID_KEYS:
        if isinstance(summary.get(key), int | float):
            row[key.split("/")[-1]] = f"{summary[key]:.3f}"
    return row


def grid_table(records: list[dict]) -> str:
    """One line per cell of a multirun: its status and headline numbers (eval/summary.json)."""
    rows = [{**_grid_row(Path(r["run_dir"])), "status": r["status"]} for r in records]
    if not rows:
        return "(no cells)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    width = {c: max(len(c), *(len(r.get(c, "-")) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(width[c]) for c in cols)]
    lines += ["  ".join(r.get(c, "-").ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)
