"""A data root other than the shared folder: subjects, categories and subsets are discovered."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bapo_exp.evaluation import build_tasks, evaluate, flatten
from bapo_exp.evaluation.tasks.utils import category_slug, mmlu_categories, read_hhh
from tests.evaluation.stubs import StubLM

SUBJECTS = {"alpha_facts": "Style A (formal)", "beta_facts": "Style A (formal)", "gamma": None}


def write_world(root: Path) -> Path:
    """A synthetic-world-like root: 3 MMLU-format subjects (one uncategorised), 1 HHH subset."""
    for split, rows in (("test", 3), ("dev", 5)):
        folder = root / "mmlu" / "data" / split
        folder.mkdir(parents=True)
        for subject in SUBJECTS:
            with open(folder / f"{subject}_{split}.csv", "w", newline="") as fh:
                writer = csv.writer(fh)
                for i in range(rows):
                    gold = "A" if subject == "gamma" else "ABCD"[i % 4]
                    writer.writerow([f'{subject} q{i}, "quoted"?', "w", "x", "y", "z", gold])
    mapping = {s: c for s, c in SUBJECTS.items() if c}
    (root / "mmlu" / "subject_categories.json").write_text(
        json.dumps({"subject_to_category": mapping})
    )
    hhh = root / "hhh_alignment" / "bigbench" / "custom"
    hhh.mkdir(parents=True)
    examples = [
        {"input": f"q{i}", "target_scores": {"good answer": 1, "bad": 0, "worse one": 0}}
        for i in range(4)
    ]
    (hhh / "task.json").write_text(json.dumps({"examples": examples}))
    return root


def test_discovery_and_flat_keys(tmp_path) -> None:
    root = write_world(tmp_path)
    flat = flatten(
        evaluate(
            StubLM(lambda r: -len(r.args[1])),
            suites=["mmlu", "hhh"],
            data_root=root,
            limit=None,
            batch_size=1,
            mmlu_categories="hendrycks",  # the data root's own subject_categories.json
        )
    )
    assert flat["mmlu/n"] == 9 and flat["mmlu/style_a/n"] == 6 and flat["mmlu/uncategorized/n"] == 3
    assert flat["mmlu/subject/gamma/n"] == 3
    weighted = (6 * flat["mmlu/style_a/acc"] + 3 * flat["mmlu/uncategorized/acc"]) / 9
    assert flat["mmlu/acc"] == pytest.approx(weighted)  # groups weight items, not subjects
    assert flat["mmlu/style_a/acc"] == pytest.approx(1 / 3)  # ties -> "A"; gold A, B, C
    assert flat["mmlu/uncategorized/acc"] == 1.0  # gamma's gold is always "A"
    assert flat["hhh/custom/n"] == 4 and flat["hhh/n"] == 4 and flat["hhh/subset_mean/n"] == 4
    assert flat["hhh/chance"] == pytest.approx(1 / 3)
    assert flat["hhh/acc"] == 0.0  # shortest response "bad" is never the gold one
    assert flat["hhh/acc_norm"] == 1.0  # ll/len favours the longest: "good answer"
    assert all(0.0 <= flat[k] <= 1.0 for k in flat if k.endswith(("/acc", "/acc_norm")))


def test_hhh_gold_follows_target_scores_under_permutation(tmp_path) -> None:
    docs = read_hhh(write_world(tmp_path) / "hhh_alignment/bigbench/custom/task.json")
    assert all(d["choices"][d["label"]] == "good answer" for d in docs)
    assert all(d["prompt"] == f"Human: q{i}\nAssistant:" for i, d in enumerate(docs))
    assert len({tuple(d["choices"]) for d in docs}) > 1  # the order is not the file's everywhere


def test_category_mapping_formats(tmp_path) -> None:
    assert category_slug("other (business, health, misc.)") == "other"
    assert category_slug("social sciences") == "social_sciences"
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu" / "subject_categories.json").write_text(
        json.dumps({"subcategories": {"a": ["math"]}, "categories": {"STEM": ["math"]}})
    )
    assert mmlu_categories(tmp_path, ["a", "b"]) == {"a": "stem", "b": "uncategorized"}


def test_errors_name_the_valid_choices(tmp_path) -> None:
    root = write_world(tmp_path / "w")
    valid = "unknown eval suite 'bbq'.*available: \\['hhh', 'mmlu', 'scienceqa', 'synthetic_"
    with pytest.raises(KeyError, match=valid):
        build_tasks(root, ["mmlu", "bbq"], tmp_path / "t")
    with pytest.raises(ValueError, match="alpha_facts"):
        build_tasks(root, ["mmlu"], tmp_path / "t", mmlu_subjects=["nope"])
    with pytest.raises(FileNotFoundError, match="ScienceQA"):
        build_tasks(root, ["scienceqa"], tmp_path / "t")
