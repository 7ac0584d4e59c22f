"""A cell is the resolved config that changes results (issue 15.2): extending a grid by a seed
runs only the new cells, and the analysis refuses two runs of one config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bapo_exp.run.identity import run_identity
from tests.conftest import REPO, SUBPROCESS_ENV, compose_cfg

FAST = ["debug=tiny", "stages=[reference,train]", "train.steps=2", "eval=none", "name=grid"]


def test_identity_ignores_defaults_and_run_independent_keys() -> None:
    base = run_identity(compose_cfg(["method=dpo"]))
    same = ["seed=0", "train.steps=200", "eval.limit=3", "stages=[eval]", "logger=none",
            "paths.cache_dir=/elsewhere", "reference.cache_dir=/x", "name=other"]  # fmt: skip
    assert run_identity(compose_cfg(["method=dpo", *same])) == base
    for other in (["seed=1"], ["train.lr=1e-4"], ["method.beta=0.2"], ["model=tiny"]):
        assert run_identity(compose_cfg(["method=dpo", *other])) != base, other


def test_cell_folders_name_reference_lists_by_their_models() -> None:
    """MRPO cells were named by the whole reference dicts, cut at 160 characters (issue 22)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from bapo_exp.run.identity import readable_name

    preset = OmegaConf.load(REPO / "conf/experiment/mrpo_references.yaml")
    sweep = f"method.references={preset.hydra.sweeper.params['method.references']}"
    [override] = OverridesParser.create().parse_overrides([sweep])
    values = [f"method.references={v}" for v in override.sweep_string_iterator()]
    cells = [readable_name(["method=mrpo", v, "data.preferences=[academy]"]) for v in values]
    assert cells == [
        "data.preferences=[academy],method=mrpo,refs=mistral_7b_instruct",
        "data.preferences=[academy],method=mrpo,refs=mistral_7b_instruct+qwen2_5_7b",
    ]
    substituted = readable_name(["debug=tiny", values[0]], substitute="tiny")
    assert substituted == "debug=tiny,refs=mistral_7b_instruct@tiny"  # debug=tiny's tiny models


@pytest.mark.integration
def test_extending_a_grid_by_a_seed_runs_only_the_new_cells(tmp_path: Path, tiny_cache) -> None:
    from bapo_exp.analysis import load_runs
    from bapo_exp.analysis.load import DuplicateRunsError

    def grid(*args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "bapo_exp", "-m", *FAST, *args,
             f"paths.runs_dir={tmp_path}", f"paths.cache_dir={tiny_cache}"],
            cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads((tmp_path / "grid" / "multirun_report.json").read_text())

    first = grid("method=dpo,bapo")
    assert first["counts"] == {"completed": 2}
    second = grid("method=dpo,bapo", "seed=0,1")
    assert second["counts"] == {"completed": 2, "skipped": 2}  # seed=0 is the first grid
    skipped = {r["run_dir"] for r in second["jobs"] if r["status"] == "skipped"}
    assert skipped == {r["run_dir"] for r in first["jobs"]}
    runs = load_runs(tmp_path / "grid")
    assert len(runs) == 4 and runs["run_id"].nunique() == 4
    assert sorted(runs["seed"].tolist()) == [0, 0, 1, 1]

    cell = Path(sorted(skipped)[0])
    shutil.copytree(cell, tmp_path / "grid" / "copy_of_a_cell")  # a hand-made duplicate
    with pytest.raises(DuplicateRunsError, match="copy_of_a_cell"):
        load_runs(tmp_path / "grid")
    kept = load_runs(tmp_path / "grid", duplicates="first")  # one of the two, with a warning
    assert len(kept) == 4 and kept["run_id"].nunique() == 4
