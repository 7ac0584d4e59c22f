"""Grids check every cell before any starts, and report every failed cell (issue 22).

A misspelt value in a grid fails in the launching process, in seconds, with one line naming the
value and the cells, before any cell runs (``hydra_plugins/bapo_exp_launcher/
checked_sweeper.py``). A cell that still fails before its run directory exists (checks off, or
an input that changed after the launch) is named in the multirun report, and the other cells
run. The Slurm versions are in ``tests/cluster/test_slurm.py``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV

pytestmark = pytest.mark.integration
TYPO = ["debug=tiny", "method=dpo,bapo", "data.preferences=[academy],[business],[astrology]"]
# a cell that runs in seconds: the reference stage only, on a few short pairs
QUICK_CELL = ["debug=tiny", "method=dpo", "stages=[reference]", "data.n_train=4",
              "data.n_heldout=2", "reference.max_new_tokens=4", "model.max_response_tokens=16",
              "model.max_prompt_tokens=16"]  # fmt: skip
FAILS_LATE = [
    *QUICK_CELL,
    "data.preferences=[academy],[astrology]",
    "hydra.sweeper.check_cells=false",
]


def grid(args: list[str], runs: Path, cache: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bapo_exp", "-m", *args, f"paths.runs_dir={runs}",
         f"paths.cache_dir={cache}"],
        cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    return out, time.monotonic() - start


def assert_refused_before_any_cell(out: subprocess.CompletedProcess, runs: Path) -> None:
    said = out.stdout + out.stderr
    assert out.returncode != 0 and "Traceback" not in said, said[-3000:]
    [line] = [x for x in said.splitlines() if "cells fail their checks" in x]
    assert line.startswith("bapo-exp: error: 2 of 6 cells fail their checks, nothing was launched")
    assert "unknown DSP domain ['astrology']" in line
    for method in ("dpo", "bapo"):
        assert f"data.preferences=[astrology],debug=tiny,method={method}" in line
    assert "academy]" not in line.split("(cells:")[1]  # only the failing cells are named
    assert not (runs / "adhoc").exists()  # no sweep folder, no cell folder, nothing ran


@pytest.mark.parametrize("launcher", ["basic", "local_joblib"])
def test_a_misspelt_value_fails_the_grid_before_any_cell(launcher, tmp_path, tiny_cache) -> None:
    out, seconds = grid([*TYPO, f"hydra/launcher={launcher}"], tmp_path, tiny_cache)
    assert_refused_before_any_cell(out, tmp_path)
    assert seconds < 30  # ~2 s of CPU; a cell alone takes longer (tight bounds are flaky here)


@pytest.mark.parametrize("launcher", ["basic", "local_joblib"])
def test_report_names_a_cell_that_failed_before_its_folder_existed(
    launcher, tmp_path, tiny_cache
) -> None:
    out, _ = grid([*FAILS_LATE, f"hydra/launcher={launcher}"], tmp_path, tiny_cache)
    assert_reported(out, tmp_path / "adhoc")


def assert_reported(out: subprocess.CompletedProcess, sweep: Path) -> None:
    """The astrology cell failed in its job (its run folder removed again), the academy cell
    completed, and the report says so; no traceback, no callback error."""
    said = out.stdout + out.stderr
    assert out.returncode == 1, said[-3000:]
    assert "Traceback" not in said and "Callback MultirunReport" not in said, said[-3000:]
    report = json.loads((sweep / "multirun_report.json").read_text())
    assert report["counts"] == {"completed": 1, "failed": 1}
    [failed] = report["problems"]
    assert "astrology" in failed["run_dir"] and "unknown DSP domain" in failed["error"]
    assert not Path(failed["run_dir"]).exists()  # failed before any work: no folder left
    [done] = [j for j in report["jobs"] if j["status"] == "completed"]
    assert (Path(done["run_dir"]) / "reference" / "DONE").exists()
    assert "1 of 2 cells failed or did not finish" in said
