"""The Slurm launcher (``hydra/launcher=slurm``) on a real one-node Slurm 22.05
(``scripts/local_slurm.sh``): a grid with a cancelled cell, a cell preempted and then timed out,
and a cell that runs two processes.

Cells are ``debug=tiny`` runs with resources overridden to fit this machine (no GPU, one CPU,
2 GB). The local cluster has no accounting: the launcher reads job states from squeue, and no
``sacct`` error may appear. One intra-op thread everywhere: bitwise resume (test_preemption).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from bapo_exp.run.identity import saved_identity
from bapo_exp.run.lock import run_lock
from tests.conftest import REPO, SUBPROCESS_ENV, TIMING, metric_rows, require_shared

pytestmark = [pytest.mark.integration, pytest.mark.slurm, pytest.mark.xdist_group("slurm")]

ENV = {**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
CELL = ["debug=tiny", "logger=none", "data.preferences=[academy]", "data.n_train=8",
        "data.n_heldout=4", "model.max_response_tokens=32", "model.max_prompt_tokens=32",
        "reference.max_new_tokens=8", "eval.suites=[hhh]", "eval.limit=2",
        "eval.gen_prompts=2", "eval.gen_max_new_tokens=8", "train.ckpt_every=5"]  # fmt: skip


def launcher(partition: str, *extra: str, cpus: int = 1) -> list[str]:
    return ["hydra/launcher=slurm", f"hydra.launcher.partition={partition}",
            "hydra.launcher.gpus_per_node=0", f"hydra.launcher.cpus_per_task={cpus}",
            "hydra.launcher.mem_gb=2", *extra]  # fmt: skip


def multirun(args: list[str], runs: Path, cache: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "bapo_exp", "-m", *args, f"paths.runs_dir={runs}",
           f"paths.cache_dir={cache}"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=log.open("a"), stderr=subprocess.STDOUT)


def wait_until(what: str, check, proc: subprocess.Popen | None, timeout: float = 300) -> Any:
    """Poll ``check()`` every 20 ms until it returns something truthy; ``proc`` must run."""
    end = time.monotonic() + timeout
    while not (found := check()):
        if proc is not None:
            assert proc.poll() is None, f"process ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < end, f"no {what} in {timeout} s"
        time.sleep(0.02)
    return found


def record(sweep: Path, num: int) -> dict | None:
    path = sweep / ".multirun" / f"{num:06d}.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def checkpointed(sweep: Path, num: int) -> dict | None:
    """Cell ``num``'s record once its first training checkpoint exists (training is under way)."""
    rec = record(sweep, num)
    if rec and rec.get("job_id") and list(Path(rec["run_dir"], "checkpoints").glob("step_*")):
        return rec
    return None


def rows(run_dir: Path) -> list[dict]:
    return metric_rows(run_dir, TIMING)


def report(sweep: Path) -> dict:
    return json.loads((sweep / "multirun_report.json").read_text())


def job_field(job_id: str, field: str) -> str:
    """A field of ``scontrol show job`` (finished jobs stay known: MinJobAge is a day)."""
    out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    return re.search(rf"\b{field}=(\S*)", out).group(1)


def submitit_log(sweep: Path, job_id: str) -> str:
    return "".join(p.read_text() for p in (sweep / ".submitit" / job_id).glob("*_log.*"))


def assert_cell_complete(job: dict, steps: int) -> None:
    """A finished cell's run directory: config, logs, every stage, metrics, final adapter."""
    run_dir = Path(job["run_dir"])
    index = run_dir.parent / ".cells" / saved_identity(run_dir)  # the cell is found by identity
    assert index.read_text().strip() == run_dir.name
    cfg = OmegaConf.load(run_dir / ".hydra/config.yaml")
    for override in job["overrides"]:
        key, value = override.split("=", 1)
        if key.startswith("method") and "," not in value:  # the grid's axes
            assert str(OmegaConf.select(cfg, key if "." in key else f"{key}.name")) == value
    for stage in ("reference", "train", "eval"):
        assert (run_dir / stage / "DONE").exists(), (run_dir, stage)
    assert [r["step"] for r in rows(run_dir)] == list(range(1, steps + 1))
    assert (run_dir / "checkpoints/final/adapter_model.safetensors").exists()
    assert "hhh/harmless/acc" in json.loads((run_dir / "eval/summary.json").read_text())
    assert json.loads((run_dir / "env.json").read_text())["git_sha"]


def test_grid_with_a_cancelled_cell_reports_it_and_relaunch_runs_only_it(
    slurm: str, tmp_path: Path, tiny_cache: Path
) -> None:
    require_shared("dsp")
    runs, sweep, steps = tmp_path / "runs", tmp_path / "runs" / "grid", 60
    args = [*CELL, "method=dpo,bapo", "method.beta=0.1,0.5", f"train.steps={steps}",
            "name=grid", *launcher(slurm)]  # fmt: skip
    first = multirun(args, runs, tiny_cache, tmp_path / "first.out")
    cancelled = wait_until("checkpoint of cell 0", lambda: checkpointed(sweep, 0), first)
    subprocess.run(["scancel", cancelled["job_id"]], check=True)
    assert first.wait(timeout=600) != 0
    out = (tmp_path / "first.out").read_text()
    assert "1 of 4 cells failed or did not finish" in out
    rep = report(sweep)
    assert rep["counts"] == {"completed": 3, "unfinished": 1}, rep["counts"]
    [bad] = rep["problems"]
    assert bad["run_dir"] == cancelled["run_dir"] and bad["slurm_state"] == "CANCELLED"
    assert f"Slurm job {cancelled['job_id']} ended CANCELLED" in bad["error"]
    for job in rep["jobs"][1:]:
        assert_cell_complete(job, steps)
    assert not Path(cancelled["run_dir"], "train/DONE").exists()

    arrays = {p.name for p in (sweep / ".submitit").iterdir()}
    with run_lock(Path(cancelled["run_dir"])):  # as if its job still ran: not submitted twice
        busy = multirun(args, runs, tiny_cache, tmp_path / "busy.out")
        assert busy.wait(timeout=600) != 0
    assert {p.name for p in (sweep / ".submitit").iterdir()} == arrays  # nothing submitted
    rep = report(sweep)
    assert rep["counts"] == {"skipped": 3, "unfinished": 1}, rep["counts"]
    [bad] = rep["problems"]
    assert bad["run_dir"] == cancelled["run_dir"] and not bad["submitted"]
    assert f"is in use by pid {os.getpid()} on " in bad["error"]

    again = multirun(args, runs, tiny_cache, tmp_path / "again.out")
    assert again.wait(timeout=600) == 0, (tmp_path / "again.out").read_text()[-3000:]
    new_tasks = {p.name for p in (sweep / ".submitit").iterdir()} - arrays
    assert len([t for t in new_tasks if "_" in t]) == 1, new_tasks  # one job: the cancelled cell
    rep = report(sweep)
    assert rep["counts"] == {"skipped": 3, "completed": 1}, rep["counts"]
    assert all(not j["submitted"] for j in rep["jobs"] if j["status"] == "skipped")
    assert len({j["run_dir"] for j in rep["jobs"]}) == 4
    for job in rep["jobs"]:
        assert_cell_complete(job, steps)
    log = Path(cancelled["run_dir"], "main.log").read_text()
    assert "SIGTERM: stopped after step" in log and "resumed from checkpoint at step" in log
    assert log.count("stage reference: start") == 1
    for name in ("first.out", "again.out"):  # without accounting: squeue, never sacct
        text = (tmp_path / name).read_text()
        assert "sacct" not in text and text.count("Slurm accounting is off") == 1


def resumed_steps(run_dir: Path) -> list[int]:
    log = run_dir / "main.log"
    text = log.read_text() if log.exists() else ""
    return [int(s) for s in re.findall(r"resumed from checkpoint at step (\d+)", text)]


def newest_checkpoint(run_dir: Path) -> int:
    steps = [int(p.name.split("_")[1]) for p in (run_dir / "checkpoints").glob("step_*")]
    return max(steps, default=0)


def test_preempted_then_timed_out_cell_resumes_bitwise(
    slurm: str, tmp_path: Path, tiny_cache: Path
) -> None:
    """``scontrol requeue`` mid-training (SIGTERM: checkpoint, exit, requeue), then, once the
    requeued job has trained past its resume point, the time limit's signal: USR2, sent to the
    job's steps with ``scancel --signal`` exactly as Slurm sends it ``signal_delay_s`` before the
    limit (the job script asks for that, ``--signal=USR2@5``: checked). The loop checkpoints;
    submitit calls it a time-out (with a limit of at most 10 min its guaranteed walltime is 0,
    so every USR2 is one) and requeues. Driven by training steps rather than by the clock
    (waiting for a real 1-minute limit needed 10000 steps to outlast Slurm's 30 s check, and
    under load the first checkpoint could come after the limit): no race with the limit."""
    require_shared("dsp")
    steps = 600  # both signals land by step ~150 (at checkpoints, every 50): far from the end
    cell = [*CELL, "method=bapo", f"train.steps={steps}", "train.ckpt_every=50",
            "train.log_every=25", "stages=[reference,train,eval]"]  # fmt: skip
    ref_dir, runs = tmp_path / "uninterrupted", tmp_path / "runs"
    ref = subprocess.Popen([sys.executable, "-m", "bapo_exp", *cell,
                            f"paths.cache_dir={tiny_cache}", f"hydra.run.dir={ref_dir}"],
                           cwd=REPO, env=ENV, stdout=(tmp_path / "ref.out").open("w"),
                           stderr=subprocess.STDOUT)  # fmt: skip
    wait_until("warm caches", lambda: (ref_dir / "reference/DONE").exists(), ref)
    limits = ["hydra.launcher.timeout_min=10", "hydra.launcher.signal_delay_s=5",
              "hydra.launcher.max_num_timeout=10"]  # fmt: skip
    args = [*cell, "name=requeue", *launcher(slurm, *limits)]
    grid = multirun(args, runs, tiny_cache, tmp_path / "grid.out")
    sweep = runs / "requeue"
    rec = wait_until("first checkpoint", lambda: checkpointed(sweep, 0), grid)
    run_dir = Path(rec["run_dir"])
    subprocess.run(["scontrol", "requeue", rec["job_id"]], check=True)
    [back] = wait_until("the resume", lambda: resumed_steps(run_dir), grid)
    wait_until("a checkpoint after the resume", lambda: newest_checkpoint(run_dir) > back, grid)
    subprocess.run(["scancel", "--signal=USR2", rec["job_id"]], check=True)
    assert grid.wait(timeout=900) == 0, (tmp_path / "grid.out").read_text()[-3000:]
    assert ref.wait(timeout=900) == 0, (tmp_path / "ref.out").read_text()[-3000:]

    assert report(sweep)["counts"] == {"completed": 1}
    script = (sweep / ".submitit" / rec["job_id"].split("_")[0]).glob("*_submission.sh")
    assert "#SBATCH --signal=USR2@5\n" in next(script).read_text()  # what the limit sends
    log = (run_dir / "main.log").read_text()
    stops = re.findall(r"(SIG\w+): stopped after step (\d+) with a checkpoint", log)
    resumed = [int(s) for s in re.findall(r"resumed from checkpoint at step (\d+)", log)]
    assert [s for s, _ in stops] == ["SIGTERM", "SIGUSR2"], stops
    assert resumed == [int(n) for _, n in stops], (stops, resumed)  # each from its own stop
    assert 0 < resumed[0] < resumed[-1] < steps
    jobs_log = submitit_log(sweep, rec["job_id"])
    assert "this job is timed-out" in jobs_log and "Requeued job" in jobs_log
    restarts = int(job_field(rec["job_id"], "Restarts"))
    assert restarts == len(stops)
    assert log.count("stage reference: start") == 1  # finished stages never ran twice
    assert log.count("skip stage reference") == restarts
    assert log.count("stage train: start") == len(stops) + 1
    assert (run_dir / "eval/DONE").exists()
    wait_until(
        "the job's end", lambda: job_field(rec["job_id"], "JobState") == "COMPLETED", None, 60
    )
    assert [r["step"] for r in rows(run_dir)] == list(range(25, steps + 1, 25))
    assert rows(run_dir) == rows(ref_dir)  # every metric of every logged step, bitwise
    assert "sacct" not in (tmp_path / "grid.out").read_text()


def test_cell_with_two_processes_runs_accelerate_inside_its_job(
    slurm: str, tmp_path: Path, tiny_cache: Path
) -> None:
    """``processes_per_cell=2`` with the FSDP accelerate config: the cell's one Slurm job runs
    ``accelerate launch`` (2 gloo processes, FSDP2); its run directory is written once."""
    require_shared("dsp")
    steps = 8
    extra = ["hydra.launcher.processes_per_cell=2", "hydra.launcher.accelerate_config=fsdp"]
    args = [*CELL, "method=bapo", "model.finetune=full", f"train.steps={steps}",
            "train.batch_size=2", "name=mp", *launcher(slurm, *extra, cpus=2)]  # fmt: skip
    grid = multirun(args, tmp_path / "runs", tiny_cache, tmp_path / "mp.out")
    assert grid.wait(timeout=600) == 0, (tmp_path / "mp.out").read_text()[-3000:]
    rep = report(tmp_path / "runs" / "mp")
    assert rep["counts"] == {"completed": 1}
    run_dir = Path(rep["jobs"][0]["run_dir"])
    plan = json.loads((run_dir / "train/plan.json").read_text())
    assert plan["processes"] == 2 and plan["global_batch"] == 4
    log = (run_dir / "main.log").read_text()
    assert log.count("cell runs 2 processes") == 1
    assert "FSDP2 on CPU: 2 LlamaDecoderLayer units" in log
    for stage in ("reference", "train", "eval"):  # once each, by rank 0
        assert log.count(f"stage {stage}: start") == 1 and (run_dir / stage / "DONE").exists()
    assert [r["step"] for r in rows(run_dir)] == list(range(1, steps + 1))
    hydra = OmegaConf.load(run_dir / ".hydra/hydra.yaml").hydra  # the job's, not rewritten
    assert hydra.mode == "MULTIRUN" and hydra.job.num == 0
    assert (run_dir / "checkpoints/final/model.safetensors").exists()


def test_a_misspelt_value_submits_nothing(slurm: str, tmp_path: Path, tiny_cache) -> None:
    """The grid's cells are checked in the launching process before submission (issue 22)."""
    from tests.test_grid_checks import TYPO, assert_refused_before_any_cell, grid

    jobs = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    out, _ = grid([*TYPO, *launcher(slurm)], tmp_path, tiny_cache)
    assert_refused_before_any_cell(out, tmp_path)  # no sweep folder: no .submitit/ either
    after = subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True).stdout
    assert after == jobs, "a job was submitted"


def test_report_names_a_slurm_cell_that_failed_before_its_folder_existed(
    slurm: str, tmp_path: Path, tiny_cache
) -> None:
    from tests.test_grid_checks import FAILS_LATE, assert_reported, grid

    out, _ = grid([*FAILS_LATE, *launcher(slurm)], tmp_path, tiny_cache)
    assert_reported(out, tmp_path / "adhoc")
    assert all(j.get("job_id") for j in report(tmp_path / "adhoc")["jobs"])  # both ran on Slurm
