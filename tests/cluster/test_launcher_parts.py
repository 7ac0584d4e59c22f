"""The Slurm launcher's parts without a cluster: squeue states, the records of cells that are
skipped or end without a result, the multi-process command, and the loop's hand-over of
submitit's requeue signal."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobStatus
from omegaconf import OmegaConf
from submitit.core.utils import UncompletedJobError

from bapo_exp.run.cluster import cells
from bapo_exp.run.cluster.job_states import SqueueInfoWatcher
from bapo_exp.run.cluster.processes import (
    CellProcesses,
    accelerate_command,
    resolve_accelerate_config,
)
from bapo_exp.run.identity import quoted
from bapo_exp.run.multirun import build_report, read_records, record_file
from bapo_exp.training.loop import Preempted, requeue_signals, stop_requests
from tests.conftest import CONF


def test_squeue_watcher_reads_sacct_columns_and_marks_forgotten_jobs() -> None:
    w = SqueueInfoWatcher(delay_s=1)
    for job in ("12_0", "12_1", "12_2", "12_3", "13"):
        w.register_job(job)
    assert w._make_command() == ["squeue", "--states=all", "--noheader", "-o", "%i|%T|%N",
                                 "-j", "12,13"]  # fmt: skip
    info = w.read_info("12_0|RUNNING|vm\n12_[2-3%4]|PENDING|\n13|CANCELLED|vm\n")
    states = {k: v["State"] for k, v in info.items()}
    assert states == {
        "12_0": "RUNNING",
        "12_2": "PENDING",
        "12_3": "PENDING",
        "13": "CANCELLED",
        "12_1": "COMPLETED",
    }  # fmt: skip  (12_1: purged)


def sweep_cfg(tmp_path: Path, force: bool = False):
    return OmegaConf.create({
        "stages": ["reference", "train"], "force": force, "objective": "train/loss",
        "hydra": {"sweep": {"dir": str(tmp_path), "subdir": "method=dpo"}},
    })  # fmt: skip


def test_finished_cell_is_skipped_with_a_record_and_its_objective(tmp_path: Path) -> None:
    run_dir = tmp_path / "method=dpo"
    rec = cells.cell_record(sweep_cfg(tmp_path), 3, ["method=dpo"])
    assert rec["run_dir"] == str(run_dir) and not cells.is_done(rec)
    for stage in ("reference", "train"):
        (run_dir / stage).mkdir(parents=True)
        (run_dir / stage / "DONE").write_text("")
    (run_dir / "train/summary.json").write_text(json.dumps({"loss": 0.25}))
    rec = cells.cell_record(sweep_cfg(tmp_path), 3, ["method=dpo"])
    assert cells.is_done(rec)
    assert not cells.is_done(cells.cell_record(sweep_cfg(tmp_path, force=True), 3, []))
    ret = cells.skip(rec, tmp_path, "train/loss")
    assert ret.status == JobStatus.COMPLETED and ret.return_value == 0.25
    written = json.loads(record_file(tmp_path, 3).read_text())
    assert written["status"] == "skipped" and written["submitted"] is False


def test_cell_in_use_is_not_submitted_and_is_reported(tmp_path: Path) -> None:
    """A grid re-launched while a job of its first launch still runs a cell."""
    from bapo_exp.run.lock import holder, run_lock

    rec = cells.cell_record(sweep_cfg(tmp_path), 2, ["method=dpo"])
    Path(rec["run_dir"]).mkdir(parents=True)
    with run_lock(Path(rec["run_dir"])):  # stands for the running job
        held = holder(Path(rec["run_dir"]))
        ret = cells.in_use(rec, tmp_path, held)
    assert ret.status == JobStatus.COMPLETED and ret.return_value is None  # the sweeper goes on
    [bad] = build_report(read_records(tmp_path))["problems"]
    assert bad["status"] == "unfinished" and bad["submitted"] is False
    assert bad["error"] == f"not submitted: {rec['run_dir']} is in use by {held}"
    assert f"pid {os.getpid()}" in held


class FakeJob:
    """A submitit job that ended without a result file (as after ``scancel``)."""

    job_id = "12_0"

    class watcher:  # noqa: N801 (submitit's attribute name)
        @staticmethod
        def get_state(job_id: str, mode: str) -> str:
            return "CANCELLED"

    def results(self):
        raise UncompletedJobError("Job 12_0 has not produced any output (state: CANCELLED)")


def test_job_without_result_is_unfinished_and_reported(tmp_path: Path) -> None:
    rec = cells.cell_record(sweep_cfg(tmp_path), 0, ["method=dpo"])
    on_node = {**rec, "status": "running", "job_id": "12_0"}  # on_job_start on the node
    record_file(tmp_path, 0).parent.mkdir(parents=True)
    record_file(tmp_path, 0).write_text(json.dumps(on_node))
    ret = cells.collect(FakeJob(), rec, tmp_path)
    assert ret.status == JobStatus.COMPLETED and ret.return_value is None  # the sweeper goes on
    report = build_report(read_records(tmp_path))
    [bad] = report["problems"]
    assert bad["status"] == "unfinished" and bad["slurm_state"] == "CANCELLED"
    assert bad["error"].startswith("Slurm job 12_0 ended CANCELLED without a result")
    assert bad["run_dir"] == rec["run_dir"] and bad["job_id"] == "12_0"


def test_multi_process_command_and_quoted_run_dir(tmp_path: Path) -> None:
    plain = accelerate_command(2, None)
    assert plain[plain.index("--num_processes") + 1] == "2" and "--multi_gpu" in plain
    fsdp = resolve_accelerate_config("fsdp")
    assert fsdp == str(CONF / "accelerate" / "fsdp.yaml")
    assert accelerate_command(8, fsdp)[-2:] == ["--config_file", fsdp]
    with pytest.raises(FileNotFoundError, match="hydra.launcher.accelerate_config='nope'"):
        resolve_accelerate_config("nope")
    run_dir = tmp_path / "grid" / "method=dpo,seed=0"
    cmd = CellProcesses(2, None).command(["method=dpo", "seed=0"], run_dir)
    assert cmd[-4:-2] == ["method=dpo", "seed=0"] and cmd[-1] == "hydra.output_subdir=null"
    [parsed] = OverridesParser.create().parse_overrides([cmd[-2]])
    assert parsed.key_or_group == "hydra.run.dir" and parsed.value() == str(run_dir)
    assert OverridesParser.create().parse_overrides([f"x={quoted(str(run_dir))}"])


def test_loop_checkpoints_then_hands_submitit_signal_to_submitit() -> None:
    """Inside a submitit job USR2 is caught like SIGTERM; once the loop raises ``Preempted``
    (after its checkpoint), submitit's handler runs (it requeues the job and exits)."""
    assert signal.SIGUSR2 not in requeue_signals()  # no Python handler: not a submitit job
    calls: list[int] = []

    def submitit_handler(signum: int, frame: object) -> None:
        calls.append(signum)
        raise SystemExit(-1)  # submitit: scontrol requeue, then sys.exit(-1)

    old = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        with pytest.raises(SystemExit) as exc, stop_requests() as flag:
            os.kill(os.getpid(), signal.SIGUSR2)
            end = time.monotonic() + 5
            while flag["signal"] is None and time.monotonic() < end:
                time.sleep(0.001)
            assert flag["signal"] == signal.SIGUSR2 and calls == []  # the step finishes first
            raise Preempted(128 + signal.SIGUSR2)
        assert exc.value.code == -1 and calls == [signal.SIGUSR2]
        assert signal.getsignal(signal.SIGUSR2) is submitit_handler  # restored
    finally:
        signal.signal(signal.SIGUSR2, old)


def test_slurm_launcher_config_is_ours_with_its_options() -> None:
    from hydra import compose, initialize_config_dir

    from bapo_exp.run.register import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["method=dpo", "hydra/launcher=slurm"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("bapo_exp_launcher.slurm_launcher.BapoSlurmLauncher")
    assert launcher.processes_per_cell == 1 and launcher.skip_done_cells is True
    assert launcher.max_num_timeout == 3 and launcher.signal_delay_s == 120
