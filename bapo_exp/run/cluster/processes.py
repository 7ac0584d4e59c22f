"""A cell that runs several processes: ``accelerate launch`` inside the cell's one Slurm job.

``hydra.launcher.processes_per_cell=8`` (with ``gpus_per_node=8``) makes each cell one Slurm
job with one task, as always, whose process starts ``accelerate launch --num_processes 8 -m
bapo_exp <the cell's overrides> hydra.run.dir=<the cell's run dir>`` and waits for it: the way
one 8-GPU DDP or FSDP run is started by hand (README "Multi-process and FSDP"). The job's own
process keeps what Hydra gave it (``.hydra/``, the multirun record); the launched processes
write the rest (rank 0 only) with ``hydra.output_subdir=null``, so nothing is written twice.

Stopping: Slurm signals every process of the job. On SIGTERM (preemption, ``scontrol
requeue``, ``scancel``) the training processes checkpoint and exit and this process exits with
128+15 without a result, so a requeued job resumes. The launched processes ignore submitit's
time-limit signal (USR2): this process handles it as usual (checkpoint the submission, requeue
the job, exit), and the requeue's SIGTERM stops training at a step boundary.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import CONF_DIR
from bapo_exp.run.identity import quoted
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


def resolve_accelerate_config(value: str | None) -> str | None:
    """A name under ``conf/accelerate`` (``ddp``, ``fsdp``) or a path, as an absolute path."""
    if not value:
        return None
    named = CONF_DIR / "accelerate" / f"{value}.yaml"
    path = named if named.exists() else Path(value).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(
            f"hydra.launcher.accelerate_config={value!r}: neither {named} nor {path} exists"
        )
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate_command(processes: int, config: str | None) -> list[str]:
    exe = Path(sys.executable).with_name("accelerate")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "accelerate.commands.launch"]
    if exe.exists():
        cmd.append("launch")
    cmd += ["--num_processes", str(processes), "--num_machines", "1",
            "--main_process_port", str(free_port())]  # fmt: skip
    if config:
        return [*cmd, "--config_file", config]
    # --multi_gpu selects the torchrun launcher; without CUDA the processes join a gloo group
    # (accelerate's --cpu path would start one process without mpirun, README).
    return [*cmd, "--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]


def requeue_signal() -> int:
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


@contextmanager
def stop_signals() -> Iterator[dict[str, int | None]]:
    """Note SIGTERM/SIGINT while waiting (every process of the job gets them from Slurm)."""
    flag: dict[str, int | None] = {"signal": None}
    previous = {}

    def handler(signum: int, frame: object) -> None:
        flag["signal"] = signum
        before = previous.get(signum)
        if callable(before) and before is not signal.default_int_handler:
            before(signum, frame)  # submitit's "Bypassing signal SIGTERM" log line

    for s in (signal.SIGTERM, signal.SIGINT):
        previous[s] = signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class CellProcesses:
    """The task function of a multi-process cell (picklable: it travels with the job)."""

    def __init__(self, processes: int, accelerate_config: str | None) -> None:
        self.processes = processes
        self.accelerate_config = accelerate_config

    def command(self, overrides: list[str], run_dir: Path) -> list[str]:
        return [*accelerate_command(self.processes, self.accelerate_config), "-m", "bapo_exp",
                *overrides, f"hydra.run.dir={quoted(str(run_dir))}",
                "hydra.output_subdir=null"]  # fmt: skip

    def __call__(self, cfg: DictConfig) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        run_dir = Path(hc.runtime.output_dir)
        cmd = self.command(list(hc.overrides.task), run_dir)
        log.info("cell runs %d processes: %s", self.processes, shlex.join(cmd))
        usr = requeue_signal()
        with stop_signals() as stopped:
            proc = subprocess.Popen(cmd, preexec_fn=lambda: signal.signal(usr, signal.SIG_IGN))
            rc = proc.wait()
        if stopped["signal"] or rc < 0 or rc >= 128:
            sig = stopped["signal"] or (-rc if rc < 0 else rc - 128)
            log.warning("cell processes stopped by signal %d; the job ends without a result", sig)
            raise SystemExit(128 + sig)
        if rc != 0:
            raise RuntimeError(f"accelerate launch exited with code {rc}: see {run_dir}/main.log")
        return RunDir(run_dir).objective(OmegaConf.select(cfg, "objective"))
