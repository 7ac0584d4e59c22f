"""The end-of-run table (``bapo_exp.run.report``), read from a run directory's files only."""

from __future__ import annotations

import json
from pathlib import Path

from bapo_exp.run.report import TRAIN_WINDOW, run_table
from bapo_exp.tracking.run_dir import RunDir


def test_training_line_is_the_mean_over_the_last_logged_steps(tmp_path: Path) -> None:
    """Not the last batch of 2 pairs (issue 22): loss and reward accuracy are averaged over the
    last ``TRAIN_WINDOW`` logged steps, and the line says how many pairs that is."""
    run = RunDir(tmp_path)
    n = TRAIN_WINDOW + 5
    rows = [{"step": s, "loss": 0.1 * s, "rewards/accuracy": float(s % 2)} for s in range(1, n + 1)]
    run.write_json("train/summary.json", {**rows[-1], "global_batch": 2, "total_steps": n})
    (tmp_path / "train/metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    last = rows[-TRAIN_WINDOW:]
    loss = sum(r["loss"] for r in last) / TRAIN_WINDOW
    acc = sum(r["rewards/accuracy"] for r in last) / TRAIN_WINDOW
    line = run_table(run).splitlines()[0]
    assert line == (
        f"train: {n} steps of 2 pairs; last {TRAIN_WINDOW} logged steps ({2 * TRAIN_WINDOW} "
        f"pairs): mean loss {loss:.4f}, reward accuracy {acc:.3f} (training batches)"
    )
    assert f"{rows[-1]['loss']:.4f}" not in line  # the last batch alone is not reported
