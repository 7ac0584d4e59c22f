"""The short result table a run ends with (and ``bapo-exp show <run>`` prints).

    train: 80 steps of 4 pairs; last 10 logged steps (40 pairs): mean loss 0.5120, reward
      accuracy 0.800 (training batches)
    suite                        acc     acc_norm  n    chance
    mmlu                         0.262   0.262     260  0.250  (at chance)
    hhh                          0.416   0.647     221  0.500
    pref_acc 0.94 +- 0.03 | style share 0.56 +- 0.09 (base 0.00) | generated personalised: yes

Read from the run directory's ``eval/summary.json`` (and ``train/summary.json``) only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from bapo_exp.readback import DamagedFileError
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)

TRAIN_WINDOW = 10  # logged steps the end-of-run training line averages


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


def _logged_rows(run: RunDir) -> list[dict]:
    path = run.path("train", "metrics.jsonl")
    lines = path.read_text().splitlines() if path.exists() else []
    return [row for x in lines if x.strip() and "loss" in (row := json.loads(x))]


def train_line(run: RunDir) -> str | None:
    """Training loss and reward accuracy as the mean over the last ``TRAIN_WINDOW`` logged
    steps (each a training batch of ``global_batch`` pairs), not the last batch alone."""
    window = _logged_rows(run)[-TRAIN_WINDOW:]
    if not window:
        return None
    summary = run.summary("train") or {}
    batch = summary.get("global_batch")
    pairs = f"{len(window) * batch} pairs" if batch else "their pairs"
    loss = sum(r["loss"] for r in window) / len(window)
    acc = [r["rewards/accuracy"] for r in window if "rewards/accuracy" in r]
    acc_text = f"{sum(acc) / len(acc):.3f}" if acc else "n/a"
    return (f"train: {summary.get('total_steps', '?')} steps of {batch or '?'} pairs; last "
            f"{len(window)} logged steps ({pairs}): mean loss {loss:.4f}, reward accuracy "
            f"{acc_text} (training batches)")  # fmt: skip


def run_table(run: RunDir | str | Path) -> str:
    """The run's result table as text (empty lines where a stage did not run)."""
    run = run if isinstance(run, RunDir) else RunDir(Path(run))
    lines = [line] if (line := train_line(run)) else []
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
