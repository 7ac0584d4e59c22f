"""The multirun callback (failures deferred and reported) and the cell directory names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from bapo_exp.run.identity import readable_name
from bapo_exp.run.multirun import REPORT, MultirunReport


def test_readable_cell_names_are_one_folder() -> None:
    assert readable_name(["seed=0", "method=bapo"]) == "method=bapo,seed=0"  # sorted, as typed
    assert readable_name(["model.pretrained=org/name", "stages=[eval]"]) == (
        "model.pretrained=org%2Fname"  # one path component; run-independent keys left out
    )
    assert readable_name([]) == readable_name(["eval.limit=3"]) == "cell"
    assert len(readable_name(["b=" + "z" * 400])) <= 160


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
