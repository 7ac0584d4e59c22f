"""The multirun callback (failures deferred and reported) and the cell directory names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from bapo_exp.multirun import REPORT, MultirunReport, cell_dirname


def test_cell_dirname_is_one_folder_and_injective() -> None:
    names = [
        "a=x/y,b=1",
        "a=x%2Fy,b=1",
        "a=x_y,b=1",
        "a=x y,b=1",
        "",
        "b=" + "z" * 400,
        "b=" + "z" * 399 + "q",
    ]
    dirs = [cell_dirname(n) for n in names]
    assert len(set(dirs)) == len(dirs)
    assert all("/" not in d and 0 < len(d) <= 160 for d in dirs)
    assert cell_dirname("method=bapo,seed=0") == "method=bapo,seed=0"  # readable as typed


def job_config(sweep: Path, num: int, run: Path):
    return OmegaConf.create(
        {
            "stages": ["train"],
            "force": False,
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "sweep": {"dir": str(sweep)},
                "job": {"num": num},
                "runtime": {"output_dir": str(run)},
                "overrides": {"task": [f"seed={num}"]},
            },
        }
    )


def test_failed_cell_is_deferred_recorded_and_reported(tmp_path: Path) -> None:
    cb = MultirunReport()
    top = job_config(tmp_path, 0, tmp_path)
    cb.on_multirun_start(top)
    (tmp_path / "done" / "train").mkdir(parents=True)
    (tmp_path / "done" / "train" / "DONE").write_text("")
    outcomes = {0: ("done", None), 1: ("new", None), 2: ("bad", RuntimeError("boom"))}
    for num, (rel, exc) in outcomes.items():
        c = job_config(tmp_path, num, tmp_path / rel)
        cb.on_job_start(c)
        ret = JobReturn()
        ret.status, ret.return_value = (JobStatus.FAILED, exc) if exc else (JobStatus.COMPLETED, 1)
        cb.on_job_end(c, ret)
        assert ret.status == JobStatus.COMPLETED  # the sweeper goes on to the next batch
    with pytest.raises(SystemExit, match="1 of 3 cells"):
        cb.on_multirun_end(top)
    report = json.loads((tmp_path / REPORT).read_text())
    assert report["counts"] == {"skipped": 1, "completed": 1, "failed": 1}
    assert report["problems"][0]["error"] == "RuntimeError: boom"
    assert report["problems"][0]["run_dir"] == str(tmp_path / "bad")


def test_killed_job_is_unfinished(tmp_path: Path) -> None:
    cb = MultirunReport(exit_on_failure=False)
    c = job_config(tmp_path, 0, tmp_path / "r")
    cb.on_multirun_start(c)
    cb.on_job_start(c)  # no on_job_end: the process died
    cb.on_multirun_end(c)
    assert json.loads((tmp_path / REPORT).read_text())["counts"] == {"unfinished": 1}
