"""Which cells of a grid the Slurm launcher submits, and what it reports for each.

- A cell whose every stage is done (``<run dir>/<stage>/DONE``, and ``force`` is false) is not
  submitted again (design): on a cluster a no-op job still waits in the queue for a GPU. Its
  record says ``skipped`` with ``submitted: false``; ``main.py`` would have logged "nothing to do".
- A cell whose run directory is in use (its ``.lock`` is held: a job of an earlier launch of the
  grid still runs it) is not submitted either; its record says ``unfinished``, naming the holder.
- A job that ends without a result (``scancel``, a node failure, a time limit past
  ``max_num_timeout``) would make submitit raise inside Hydra's launcher and stop it before the
  other cells are collected and before the multirun report is written. Here its record becomes
  ``unfinished`` with the Slurm job id and state, the other cells are still collected, and the
  report (``bapo_exp.run.multirun``) names it and makes the launcher exit non-zero.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import DictConfig
from submitit.core.utils import UncompletedJobError

from bapo_exp.atomic import write_json_atomic
from bapo_exp.run import multirun
from bapo_exp.run.multirun import read_record, record_file
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


def cell_run_dir(sweep_cfg: DictConfig) -> Path:
    """The cell's run directory, as Hydra's ``run_job`` will resolve it (sweep dir / subdir)."""
    hydra = sweep_cfg.hydra
    return (Path(str(hydra.sweep.dir)) / str(hydra.sweep.subdir)).absolute()


def cell_record(sweep_cfg: DictConfig, num: int, overrides: list[str]) -> dict[str, Any]:
    """The record ``MultirunReport.on_job_start`` would write for this cell, before it runs."""
    return multirun.cell_record(cell_run_dir(sweep_cfg), sweep_cfg, num, overrides, "pending")


is_done = multirun.nothing_to_do  # the launcher's name for it


def job_return(overrides: list[str], value: Any = None) -> JobReturn:
    ret = JobReturn(overrides=list(overrides), status=JobStatus.COMPLETED)
    ret.return_value = value
    return ret


def skip(record: dict[str, Any], sweep_dir: Path, objective: str | None) -> JobReturn:
    """Record a finished cell as skipped without submitting it; return its objective."""
    write_json_atomic(record_file(sweep_dir, record["num"]),
                      {**record, "status": "skipped", "submitted": False})  # fmt: skip
    log.info("cell done, not submitted: %s", record["run_dir"])
    return job_return(record["overrides"], RunDir(Path(record["run_dir"])).objective(objective))


def in_use(record: dict[str, Any], sweep_dir: Path, holder: str) -> JobReturn:
    """Record a cell whose run directory another launch is still running (a grid re-launched
    before its jobs ended) as ``unfinished``, not submitted: a second job would be refused."""
    error = f"not submitted: {record['run_dir']} is in use by {holder}"
    outcome = {"status": "unfinished", "submitted": False, "error": error}
    write_json_atomic(record_file(sweep_dir, record["num"]), {**record, **outcome})
    log.error("cell %s", error)
    return job_return(record["overrides"])


def collect(job: Any, record: dict[str, Any], sweep_dir: Path) -> JobReturn:
    """The job's ``JobReturn``; a job without a result is recorded ``unfinished`` instead.

    Args:
        job: a submitit job (``results()`` waits for it).
        record: the cell's record before it ran (``cell_record``); the job's own record, written
            on the node by ``MultirunReport.on_job_start``, is kept and completed if it exists.
    """
    try:
        return job.results()[0]
    except Exception as err:  # UncompletedJobError, or FailedJobError: raised outside run_job
        status = "unfinished" if isinstance(err, UncompletedJobError) else "failed"
        state = job.watcher.get_state(job.job_id, mode="cache")
        path = record_file(sweep_dir, record["num"])
        on_node = read_record(path) or {}
        message = f"Slurm job {job.job_id} ended {state} without a result"
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        outcome = {"status": status, "slurm_job_id": job.job_id, "slurm_state": state}
        write_json_atomic(
            path, {**record, **on_node, **outcome, "error": f"{message}: {first_line}"}
        )
        log.error("%s: %s", message, record["run_dir"])
        return job_return(record["overrides"])
