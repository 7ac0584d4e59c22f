"""A Hydra callback that lets every cell of a grid run and reports the failed ones at the end.

python -m bapo_exp -m experiment=fig5_drift      # conf/hydra/default.yaml installs it

Hydra 1.3 already runs the remaining jobs of a batch when one raises, but then re-raises only the
first failure, and ``on_multirun_end`` is never called (``BasicSweeper.sweep`` reads every
``JobReturn.return_value``; the joblib and submitit launchers behave the same). This callback:

- ``on_job_start`` (in the job's process, also on a Slurm node): writes the cell's record
  ``<sweep dir>/.multirun/<job num>.json`` with status ``running`` and which stages were already
  done (a cell whose stages were all done is ``skipped``: main.py logs "nothing to do");
- ``on_job_end``: the record's final status ``completed`` / ``skipped`` / ``failed`` with the
  error; with ``defer_failures`` a failed job is handed back to the sweeper as completed, so later
  batches still run (design: the failure lives in the record, main.log and the final report);
- ``on_multirun_end``: writes ``<sweep dir>/multirun_report.json`` and logs one line per failed
  or unfinished cell, then exits non-zero if any cell failed. A record left ``running`` is a job
  that was killed (OOM, a Slurm timeout past ``max_num_timeout``): its cell is ``unfinished``.

Two multiruns sharing one sweep directory at the same time would mix their records.
"""

from __future__ import annotations

import json
import logging
import shutil
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bapo_exp.atomic import write_json_atomic
from bapo_exp.readback import read_json_file

log = logging.getLogger(__name__)
RECORDS = ".multirun"
REPORT = "multirun_report.json"


def _records_dir(config: DictConfig) -> Path:
    return Path(str(config.hydra.sweep.dir)) / RECORDS


def record_file(sweep_dir: Path, num: int) -> Path:
    """The record of job ``num`` of the multirun in ``sweep_dir`` (also written by launchers)."""
    return Path(sweep_dir) / RECORDS / f"{int(num):06d}.json"


def _is_multirun(config: DictConfig) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def read_records(sweep_dir: Path) -> list[dict[str, Any]]:
    """The per-job records of the last multirun in ``sweep_dir``, by job number."""
    folder = Path(sweep_dir) / RECORDS
    records = [read_record(p) for p in folder.glob("*.json")] if folder.is_dir() else []
    return sorted((r for r in records if r is not None), key=lambda r: r["num"])


def read_record(path: Path) -> dict[str, Any] | None:
    """A job's record (None: not written). A damaged one (a node lost mid-write) is replaced by
    what its name says, with a warning: the report lists that job as unfinished."""
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
        if isinstance(record, dict) and isinstance(record.get("num"), int):
            return record
    except (OSError, ValueError):
        pass
    log.warning("%s: damaged job record; the job is reported unfinished", path)
    return {"num": int(path.stem), "status": "unfinished", "error": f"{path}: damaged record"}


def cell_record(
    run_dir: Path, config: DictConfig, num: int, overrides: list[str], status: str
) -> dict[str, Any]:
    """A cell's record before it runs: which of its stages were already done (the launcher
    writes it ``pending`` before submitting, ``on_job_start`` ``running`` in the job)."""
    stages = list(OmegaConf.select(config, "stages", default=[]) or [])
    done = [s for s in stages if (Path(run_dir) / s / "DONE").exists()]
    return {
        "num": int(num),
        "run_dir": str(run_dir),
        "overrides": list(overrides),
        "stages": stages,
        "done_before": done,
        "all_done_before": bool(stages) and len(done) == len(stages),
        "force": bool(OmegaConf.select(config, "force", default=False)),
        "status": status,
    }


def nothing_to_do(record: dict[str, Any]) -> bool:
    """Every stage done and no ``force``: the rule ``main.py`` applies ("nothing to do")."""
    return bool(record.get("all_done_before")) and not record.get("force")


def report_problems(path: Path) -> list[dict[str, Any]]:
    """The failed or unfinished cells a written report names (none if it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    fix = "re-run the grid's command to write it again (finished cells are skipped)"
    return read_json_file(path, what="multirun report", fix=fix).get("problems", [])


def build_report(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per status and the cells that need attention (failed or unfinished)."""
    counts: dict[str, int] = {}
    for rec in records:
        status = "unfinished" if rec["status"] == "running" else rec["status"]
        rec["status"] = status
        counts[status] = counts.get(status, 0) + 1
    bad = [r for r in records if r["status"] in ("failed", "unfinished")]
    return {"n_jobs": len(records), "counts": counts, "problems": bad, "jobs": records}


class MultirunReport(Callback):
    """Record each job's outcome; report failed cells once every cell has had its turn.

    Args:
        defer_failures: hand a failed job back to the sweeper as completed (its failure is in
            the report), so that batched sweeps go on and every failure is listed, not the first.
        exit_on_failure: exit with status 1 at the end of a multirun in which a cell failed.
    """

    def __init__(self, defer_failures: bool = True, exit_on_failure: bool = True) -> None:
        self.defer_failures = defer_failures
        self.exit_on_failure = exit_on_failure

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        shutil.rmtree(_records_dir(config), ignore_errors=True)  # records of an earlier launch

    def _record_path(self, config: DictConfig) -> Path:
        return record_file(Path(str(config.hydra.sweep.dir)), config.hydra.job.num)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        out = Path(str(config.hydra.runtime.output_dir))
        record = cell_record(out, config, config.hydra.job.num, config.hydra.overrides.task,
                             "running")  # fmt: skip
        record["job_id"] = OmegaConf.select(config, "hydra.job.id", default=None)  # Slurm: 12_3
        write_json_atomic(self._record_path(config), record)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not _is_multirun(config):
            return
        path = self._record_path(config)
        record = read_record(path) or {"num": config.hydra.job.num}
        if job_return.status == JobStatus.FAILED:
            exc = job_return._return_value
            record["status"] = "failed"
            record["error"] = _error_text(exc)
            record["traceback"] = "".join(traceback.format_exception(exc))[-4000:]
            if self.defer_failures:  # first: nothing below may keep the failure from the report
                job_return.status = JobStatus.COMPLETED
                job_return.return_value = None
            write_json_atomic(path, record)
            log.error("cell failed: %s -> %s", record.get("run_dir"), record["error"])
            return
        record["status"] = "skipped" if nothing_to_do(record) else "completed"
        write_json_atomic(path, record)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        report = build_report(read_records(sweep_dir))
        write_json_atomic(sweep_dir / REPORT, report)
        log.info(
            "multirun: %d jobs %s -> %s", report["n_jobs"], report["counts"], sweep_dir / REPORT
        )
        from bapo_exp.run.report import grid_table

        log.info("grid results (python -m bapo_exp.analysis %s for the aggregated table):\n%s",
                 sweep_dir, grid_table(report["jobs"]))  # fmt: skip
        for rec in report["problems"]:
            log.error("%s cell: %s  %s", rec["status"], rec["run_dir"], rec.get("error", ""))
        if self.exit_on_failure and report["problems"]:
            # SystemExit passes through Hydra's callback wrapper (it only catches Exception).
            raise SystemExit(
                f"{len(report['problems'])} of {report['n_jobs']} cells failed or "
                f"did not finish; see {sweep_dir / REPORT}"
            )
