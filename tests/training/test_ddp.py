"""Two CPU processes (DDP over gloo, through ``accelerate launch``) follow one process's loss
trajectory at the same global batch, and only the main process writes the run directory.

``accelerate launch --cpu --num_processes 2`` starts ONE process unless mpirun is installed
(accelerate 1.15's CPU path is mpirun); ``--multi_gpu`` selects the torchrun launcher, and on a
machine without CUDA our ``Accelerator(cpu=True)`` then joins a gloo process group.

Tolerance: the two runs compute the same maths in a different float32 order. DDP averages two
per-process gradient means (all-reduce) where one process takes one mean over all four pairs,
and each process pads its micro-batch to its own longest sequence, which changes matmul shapes
and hence summation order. Those are rounding differences of ~1e-7 per step, which training
can grow; ``TOL`` allows 1e-4 on the loss, far below how far the loss moves (asserted).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV, require_shared

pytestmark = pytest.mark.integration

ENV = SUBPROCESS_ENV
STEPS, TOL = 8, 1e-4
# LoRA dropout off: each process would draw its own dropout masks (a different random stream).
ARGS = ["debug=tiny", "method=bapo", "logger=none",
        "data.preferences=[academy]", f"train.steps={STEPS}", "train.lr=2e-3",
        "train.warmup_steps=0", "train.schedule=constant", "train.ckpt_every=4",
        "model.lora.dropout=0.0", "model.max_response_tokens=32",
        "model.max_prompt_tokens=32"]  # fmt: skip
LAUNCH = [str(Path(sys.executable).parent / "accelerate"), "launch", "--multi_gpu",
          "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
          "--dynamo_backend", "no", "-m", "bapo_exp"]  # fmt: skip


def start(prefix: list[str], run_dir: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [
        *prefix,
        *ARGS,
        "stages=[reference,train]",
        *extra,
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
    ]
    out = (run_dir.parent / f"{run_dir.name}.out").open("w")
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)


def rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "train/metrics.jsonl").read_text().splitlines()
    return [json.loads(x) for x in lines]


def test_two_gloo_processes_match_one_process(tmp_path: Path, tiny_cache: Path) -> None:
    require_shared("dsp")
    warm = subprocess.run(  # fill the shared caches once, so both runs only read them
        [sys.executable, "-m", "bapo_exp", *ARGS, "stages=[reference]",
         f"paths.cache_dir={tiny_cache}", f"hydra.run.dir={tmp_path / 'warm'}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert warm.returncode == 0, warm.stderr[-3000:]
    two, one = tmp_path / "two", tmp_path / "one"
    procs = [
        start(LAUNCH, two, tiny_cache, "train.batch_size=2"),  # 2 processes x 2 pairs
        start([sys.executable, "-m", "bapo_exp"], one, tiny_cache, "train.batch_size=4"),
    ]
    for proc, d in zip(procs, (two, one), strict=True):
        assert proc.wait(timeout=600) == 0, (tmp_path / f"{d.name}.out").read_text()[-4000:]

    plan = json.loads((two / "train/plan.json").read_text())
    assert plan["processes"] == 2 and plan["global_batch"] == 4
    a, b = rows(two), rows(one)
    assert [r["step"] for r in a] == list(range(1, STEPS + 1))  # written once, by rank 0
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=TOL), ra["step"]
        assert ra["reward_margin"] == pytest.approx(rb["reward_margin"], abs=10 * TOL)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-3)
    assert b[0]["loss"] - b[-1]["loss"] > 100 * TOL  # the compared trajectory really moves

    log = (two / "main.log").read_text()  # rank 1 is detached from main.log ...
    assert log.count("stage train: start") == 1 and log.count("stage reference: start") == 1
    summary = json.loads((two / "train/summary.json").read_text())  # ... and writes no summary
    assert summary["processes"] == 2 and (two / summary["ckpt_path"]).is_dir()
