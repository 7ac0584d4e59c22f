"""The study's analysis is model-agnostic (issue 25, design item 8): a debug=tiny grid on DSP
data (tiny random models, the implicit judge's win rate as personalisation, HHH as alignment,
no knowledge suite) goes through the same collect -> verdicts -> report -> figures path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, SUBPROCESS_ENV, require_shared

pytestmark = pytest.mark.integration
SMALL = ["debug=tiny", "logger=none", "eval.suites=[hhh]", "eval.limit=4", "eval.gen_prompts=4",
         "eval.gen_max_new_tokens=8", "reference.max_new_tokens=8", "data.n_train=8",
         "data.n_heldout=4", "name=tinygrid", "hydra/launcher=local_joblib"]  # fmt: skip


def grid(runs: Path, cache: Path, *overrides: str) -> None:
    cmd = [sys.executable, "-m", "bapo_exp", "-m", *SMALL, f"paths.runs_dir={runs}",
           f"paths.cache_dir={cache}", *overrides]  # fmt: skip
    env = {**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]


def test_the_study_analysis_runs_on_a_tiny_grid(tmp_path: Path, tiny_cache: Path) -> None:
    from bapo_exp.analysis.load import read_cells
    from bapo_exp.analysis.study import main

    require_shared("dsp")
    runs = tmp_path / "runs"
    grid(runs, tiny_cache, "method=dpo,bapo", "model.tiny.seed=0,1", "train.steps=3",
         "eval.at_steps=[1,2]")  # fmt: skip
    grid(runs, tiny_cache, "method=none", "stages=[eval]", "model.tiny.seed=0,1")
    out = tmp_path / "results"
    (out / "calibration").mkdir(parents=True)
    choice = {"provisional": True, "anchor_weight": 1.0, "anchor_reason": "tiny grid",
              "logodds_range": None,
              "design": {"exposure": None, "n_pairs": 8, "preferences": "academy"}}  # fmt: skip
    (out / "calibration/choice.json").write_text(json.dumps(choice))
    assert main([str(runs / "tinygrid"), "--out", str(out), "--n-boot", "200"]) == 0

    cells = read_cells(out / "cells.csv")
    trained = cells[cells["method_name"] != "none"]
    assert trained.groupby("cell")["step"].apply(sorted).tolist() == [[1, 2, 3]] * 4
    bases = cells[cells["method_name"] == "none"]
    assert sorted(bases["base"]) == [0, 1] and set(bases["step"]) == {0}
    assert set(cells["role"]) == {"test"} and cells["alignment"].notna().all()
    assert set(trained["method"]) == {"DPO", "BAPO lambda=1"}
    v = pd.read_csv(out / "verdicts.csv").set_index("id")
    assert v.loc["P2", "n_units"] == 2 and v.loc["P2", "verdict"] == "insufficient"  # 2 bases
    assert v.loc["P3", "n_units"] == 0  # no MRPO in this grid: not run
    text = (out / "RESULTS.md").read_text()
    assert "**P2: insufficient.**" in text and "2 test bases (0, 1)" in text
    for name in ("frontier", "anchoring", "primaries", "references", "heterogeneity"):
        assert (out / f"{name}.png").stat().st_size > 0
