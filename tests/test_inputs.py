"""Bad input fails before any training, naming the file, the record and the field (issue 15).

Each test copies a small slice of the real data (../shared/data) into a temporary data root,
breaks one thing, and checks the run's checks (``bapo_exp.run.validate``) refuse it: before a model
is loaded, and, for an existing run, with its files byte-identical afterwards.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bapo_exp.data.validation import DataError
from bapo_exp.run.validate import ConfigError, check_settings, validate
from tests.conftest import compose_cfg, require_shared

SUBJECTS = ["abstract_algebra", "anatomy"]


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """dsp, two MMLU subjects, the ScienceQA subset and HHH, copied from ../shared/data."""
    shared = require_shared()
    root = tmp_path / "data"
    shutil.copytree(shared / "dsp", root / "dsp")
    for split in ("test", "dev"):
        (root / "mmlu/data" / split).mkdir(parents=True)
        for s in SUBJECTS:
            shutil.copy(shared / f"mmlu/data/{split}/{s}_{split}.csv", root / f"mmlu/data/{split}")
    shutil.copytree(shared / "scienceqa", root / "scienceqa")
    shutil.copytree(shared / "hhh_alignment", root / "hhh_alignment")
    return root


def config(root: Path, *overrides: str):
    dcfg = compose_cfg(["debug=tiny", "method=dpo", f"paths.data_root={root}",
                        f"eval.mmlu_subjects=[{','.join(SUBJECTS)}]", *overrides])  # fmt: skip
    return OmegaConf.to_object(dcfg)


def test_the_copied_data_passes(data_root: Path) -> None:
    validate(config(data_root))


def edit_row(path: Path, i: int, change) -> None:
    """Rewrite row ``i`` of a CSV file as ``change(row)``."""
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows[i] = change(rows[i])
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_mmlu_bad_answer_letter_names_file_line_and_column(data_root: Path) -> None:
    path = data_root / "mmlu/data/test/anatomy_test.csv"
    edit_row(path, 6, lambda r: [*r[:5], "E"])
    with pytest.raises(DataError, match=rf"{path}: line 7, column 'answer': 'E' is not one of"):
        validate(config(data_root))


def test_mmlu_missing_column_names_the_line(data_root: Path) -> None:
    path = data_root / "mmlu/data/dev/abstract_algebra_dev.csv"
    edit_row(path, 2, lambda r: r[:5])
    with pytest.raises(DataError, match=rf"{path}: line 3: 5 columns, want 6"):
        validate(config(data_root))


def test_scienceqa_answer_out_of_range_names_pid_and_field(data_root: Path) -> None:
    path = data_root / "scienceqa/problems.test_textonly.pid_le_1773.json"
    problems = json.loads(path.read_text())
    pid = sorted(problems)[3]
    problems[pid]["answer"] = len(problems[pid]["choices"])
    path.write_text(json.dumps(problems))
    with pytest.raises(DataError, match=rf"problem '{pid}', field 'answer': .* not an index"):
        validate(config(data_root))


def test_hhh_item_without_a_correct_answer_is_rejected(data_root: Path) -> None:
    path = data_root / "hhh_alignment/bigbench/honest/task.json"
    task = json.loads(path.read_text())
    task["examples"][5]["target_scores"] = {k: 0 for k in task["examples"][5]["target_scores"]}
    path.write_text(json.dumps(task))
    with pytest.raises(DataError, match=rf"{path}: record 5, field 'target_scores': needs exactly"):
        validate(config(data_root))


def test_missing_data_file_names_the_key_to_change(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"file not found; set paths.data_root"):
        validate(config(tmp_path / "nowhere"))


def test_misspelt_preference_gets_the_closest_name(data_root: Path) -> None:
    with pytest.raises(
        DataError, match=r"unknown DSP domain \['acadmy'\] \(did you mean 'academy'"
    ):
        validate(config(data_root, "data.preferences=[acadmy]"))


@pytest.mark.parametrize(
    "overrides",
    [["method=ipo", "reference.reduce=mean"], ["method=bapo", "reference.reduce=mean",
                                                "method.anchor.reduce=mean"]],
)  # fmt: skip
def test_length_normalisation_twice_is_refused(overrides: list[str]) -> None:
    with pytest.raises(ConfigError, match="divides by length again"):
        check_settings(OmegaConf.to_object(compose_cfg(["debug=tiny", *overrides])))
    ok = [o for o in overrides if o != "reference.reduce=mean"]
    check_settings(OmegaConf.to_object(compose_cfg(["debug=tiny", *ok])))  # once is fine


def test_anchor_prompt_file_is_read_before_work(tmp_path: Path, data_root: Path) -> None:
    bad = tmp_path / "anchors.json"
    bad.write_text('["fine", {"prompt": 3}]')
    cfg = config(data_root, "method=bapo", "method.anchor.prompts=file",
                 f"method.anchor.prompt_file={bad}")  # fmt: skip
    with pytest.raises(DataError, match=rf"{bad}: record 1, field 'prompt'"):
        validate(cfg)
    with pytest.raises(ConfigError, match="needs method.anchor.prompt_file"):
        check_settings(config(data_root, "method=bapo", "method.anchor.prompts=file"))
