"""FSDP2 on CPU (2 gloo processes, ``accelerate launch --config_file conf/accelerate/fsdp.yaml``):
the sharded run follows one process, resumes bitwise after kill -9 from its sharded checkpoint,
gathers a final model the eval stage loads, and runs LoRA and online references.

accelerate 1.15 does not run FSDP on CPU (it falls back to DDP), so ``bapo_exp.training.sharded``
applies ``fully_shard`` itself behind the same switch; each test checks the run really was
sharded (its log line, one checkpoint shard per process). Tolerance as in ``test_ddp.py``: the
same maths in another float32 order (a reduce-scatter of two halves vs one mean; per-process
padding), 1e-4 on the loss.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bapo_exp.run.cluster.processes import free_port
from tests.conftest import REPO, SUBPROCESS_ENV, TIMING, metric_rows, require_shared, wait_for

pytestmark = pytest.mark.integration

ENV = {**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # bitwise resume
STEPS, TOL = 12, 1e-4
ARGS = ["debug=tiny", "method=bapo", "logger=none", "data.preferences=[academy]",
        f"train.steps={STEPS}", "train.lr=5e-4", "train.warmup_steps=0",
        "train.schedule=constant", "train.ckpt_every=3", "train.log_every=1",
        "train.keep_checkpoints=2", "model.max_response_tokens=32", "model.max_prompt_tokens=32",
        "stages=[reference,train]"]  # fmt: skip
FULL = ["model.finetune=full"]
EVAL = ["stages=[reference,train,eval]", "eval.suites=[hhh]", "eval.limit=2",
        "eval.gen_prompts=2", "eval.gen_max_new_tokens=8"]  # fmt: skip


def fsdp_cmd() -> list[str]:
    return [str(Path(sys.executable).parent / "accelerate"), "launch", "--config_file",
            str(REPO / "conf/accelerate/fsdp.yaml"), "--num_processes", "2", "--num_machines",
            "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
            str(free_port()), "-m", "bapo_exp"]  # fmt: skip


def start(prefix: list[str], run_dir: Path, cache: Path, *extra: str) -> subprocess.Popen:
    cmd = [*prefix, *ARGS, *extra, f"paths.cache_dir={cache}", f"hydra.run.dir={run_dir}"]
    out = (run_dir.parent / f"{run_dir.name}.out").open("a")
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen, run_dir: Path) -> None:
    rc = proc.wait(timeout=600)
    assert rc == 0, (run_dir.parent / f"{run_dir.name}.out").read_text()[-4000:]


def rows(run_dir: Path) -> list[dict]:
    return metric_rows(run_dir, TIMING)


def assert_sharded(run_dir: Path) -> None:
    assert "FSDP2 on CPU: 2 LlamaDecoderLayer units" in (run_dir / "main.log").read_text()
    ckpt = sorted((run_dir / "checkpoints").glob("step_*"))[-1]
    shards = sorted(p.name for p in (ckpt / "dcp").iterdir())
    assert shards == [".metadata", "__0_0.distcp", "__1_0.distcp"], shards  # one per process


def kill_tree(pid: int) -> None:
    """kill -9 accelerate launch and its training processes (torchrun puts each worker in a
    session of its own, so killing the launcher's process group would leave them running)."""
    import psutil

    children = psutil.Process(pid).children(recursive=True)
    assert len(children) >= 2, children  # the two training processes
    for p in (pid, *(c.pid for c in children)):
        os.kill(p, signal.SIGKILL)
    psutil.wait_procs(children, timeout=30)  # the launcher itself is reaped by Popen.wait


def warm(tmp: Path, cache: Path, *extra: str) -> None:
    """Fill the shared caches once (reference stage), so the compared runs only read them."""
    proc = start([sys.executable, "-m", "bapo_exp"], tmp / "warm", cache, *extra,
                 "stages=[reference]")  # fmt: skip
    finish(proc, tmp / "warm")


@pytest.fixture(scope="module")
def full_runs(tmp_path_factory, tiny_cache: Path) -> dict[str, Path]:
    """Full fine-tuning: FSDP2 uninterrupted (+ eval), 1 process, FSDP2 killed (-9) and
    re-launched, FSDP2 with an online reference; started together."""
    require_shared("dsp")
    tmp = tmp_path_factory.mktemp("fsdp")
    warm(tmp, tiny_cache, *FULL)
    d = {k: tmp / k for k in ("fsdp", "one", "killed", "online")}
    procs = {
        "fsdp": start(fsdp_cmd(), d["fsdp"], tiny_cache, *FULL, "train.batch_size=2", *EVAL),
        "one": start(
            [sys.executable, "-m", "bapo_exp"], d["one"], tiny_cache, *FULL, "train.batch_size=4"
        ),  # fmt: skip
        "killed": start(fsdp_cmd(), d["killed"], tiny_cache, *FULL, "train.batch_size=2"),
        "online": start(
            fsdp_cmd(),
            d["online"],
            tiny_cache,
            *FULL,
            "train.batch_size=2",
            "reference.precompute=false",
        ),  # fmt: skip
    }
    wait_for_checkpoint(procs["killed"], d["killed"])
    kill_tree(procs["killed"].pid)
    assert procs["killed"].wait(timeout=60) == -signal.SIGKILL
    assert not (d["killed"] / "train/DONE").exists()
    for name in ("fsdp", "one", "online"):
        finish(procs[name], d[name])
    relaunch = start(fsdp_cmd(), d["killed"], tiny_cache, *FULL, "train.batch_size=2")
    finish(relaunch, d["killed"])
    return d


def assert_follows(a: list[dict], b: list[dict]) -> None:
    """Run ``a`` (FSDP2) logged every step and follows ``b`` (one process) within tolerance."""
    assert [r["step"] for r in a] == list(range(1, STEPS + 1))  # written once, by rank 0
    for ra, rb in zip(a, b, strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=TOL), ra["step"]
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-3), ra["step"]


def resumed_once(run_dir: Path) -> str:
    """The run's log, after checking it resumed once, from a checkpoint (not from step 0)."""
    log = (run_dir / "main.log").read_text()
    resumed = [int(x.split()[0]) for x in log.split("resumed from checkpoint at step ")[1:]]
    assert len(resumed) == 1 and 3 <= resumed[0] < STEPS, resumed
    return log


def test_fsdp2_full_finetuning_matches_one_process(full_runs: dict[str, Path]) -> None:
    import safetensors.torch

    fsdp, one = full_runs["fsdp"], full_runs["one"]
    assert_sharded(fsdp)
    plan = json.loads((fsdp / "train/plan.json").read_text())
    assert plan["processes"] == 2 and plan["global_batch"] == 4
    a, b = rows(fsdp), rows(one)
    assert_follows(a, b)
    assert b[0]["loss"] - b[-1]["loss"] > 100 * TOL  # the compared trajectory really moves
    # The gathered final model equals the single process's, and the eval stage loaded it.
    wa = safetensors.torch.load_file(fsdp / "checkpoints/final/model.safetensors")
    wb = safetensors.torch.load_file(one / "checkpoints/final/model.safetensors")
    assert set(wb) <= set(wa)  # FSDP's full state dict also lists the tied lm_head
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wb) < 1e-4
    assert (fsdp / "eval/DONE").exists()
    assert "hhh/harmless/acc" in json.loads((fsdp / "eval/summary.json").read_text())


def test_fsdp2_kill9_then_relaunch_equals_uninterrupted(full_runs: dict[str, Path]) -> None:
    killed = full_runs["killed"]
    assert_sharded(killed)
    log = resumed_once(killed)
    assert log.count("stage reference: start") == 1  # the finished stage did not run again
    assert rows(killed) == rows(full_runs["fsdp"])  # every metric of every step, bitwise


def test_fsdp2_online_reference_equals_precomputed(full_runs: dict[str, Path]) -> None:
    """Full fine-tuning keeps a frozen, unsharded copy of the initial model as reference 0."""
    online = full_runs["online"]
    assert_sharded(online)
    assert (
        "the frozen initial model is a full copy on every process"
        in (online / "main.log").read_text()
    )
    for ra, rb in zip(rows(online), rows(full_runs["fsdp"]), strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=TOL), ra["step"]


def wait_for_checkpoint(proc: subprocess.Popen, run_dir: Path) -> None:
    wait_for(proc, run_dir / "checkpoints" / "step_*", log=run_dir.parent / f"{run_dir.name}.out")


def test_fsdp2_lora_online_sigterm_resume_matches_one_process(
    tmp_path: Path, tiny_cache: Path
) -> None:
    """LoRA under FSDP2 (frozen base and adapters in one unit) with reference 0 computed online
    (the policy with its adapter disabled), stopped by SIGTERM and re-launched: it follows one
    process; its sharded checkpoints hold only the adapter (and its AdamW states)."""
    import torch.distributed.checkpoint as dcp

    require_shared("dsp")
    warm(tmp_path, tiny_cache)
    fsdp, one = tmp_path / "lora_fsdp", tmp_path / "lora_one"
    lora_fsdp = [fsdp_cmd(), fsdp, tiny_cache, "train.batch_size=2", "reference.precompute=false"]
    single = [[sys.executable, "-m", "bapo_exp"], one, tiny_cache, "train.batch_size=4"]
    procs = [start(*lora_fsdp), start(*single)]
    wait_for_checkpoint(procs[0], fsdp)
    procs[0].send_signal(signal.SIGTERM)  # torchrun forwards it to both training processes
    assert procs[0].wait(timeout=120) != 0
    assert "SIGTERM: stopped after step" in (fsdp / "main.log").read_text()
    assert not (fsdp / "train/DONE").exists()
    finish(procs[1], one)
    finish(start(*lora_fsdp), fsdp)
    assert_sharded(fsdp)
    resumed_once(fsdp)
    a, b = rows(fsdp), rows(one)
    assert_follows(a, b)
    assert b[0]["loss"] - b[-1]["loss"] > 10 * TOL  # an adapter lost on resume would show
    ckpt = sorted((fsdp / "checkpoints").glob("step_*"))[-1] / "dcp"
    keys = [k for k in dcp.FileSystemReader(str(ckpt)).read_metadata().state_dict_metadata
            if k.startswith("model.")]  # fmt: skip
    assert keys and all("lora_" in k for k in keys), keys[:4]
    assert (fsdp / "checkpoints/final/adapter_model.safetensors").exists()
