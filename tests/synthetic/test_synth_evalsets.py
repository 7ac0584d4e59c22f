"""The knowledge (MMLU format) and alignment (BIG-bench HHH format) files of a world."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

from bapo_exp.synthetic.export import load_world_json, read_jsonl
from bapo_exp.synthetic.styles import NEUTRAL, detect_style, fact_correct

LETTERS = "ABCD"


def _rows(path):
    with path.open(newline="") as fh:
        return list(csv.reader(fh))


def test_mmlu_csvs_official_format_and_true_letter(world_root):
    meta = load_world_json(world_root)
    facts = {(f["question"]): SimpleNamespace(**f) for f in meta["facts"]}
    cats = json.loads((world_root / "mmlu" / "subject_categories.json").read_text())
    n_dev = meta["config"]["mc_dev_per_subject"]
    for wording, subjects in cats["wordings"].items():
        for subject in subjects:
            assert cats["subject_to_category"][subject] in cats["categories"]
            dev = _rows(world_root / "mmlu" / "data" / "dev" / f"{subject}_dev.csv")
            test = _rows(world_root / "mmlu" / "data" / "test" / f"{subject}_test.csv")
            assert len(dev) == n_dev and len(test) == meta["config"]["n_entities"] - n_dev
            assert not {r[0] for r in dev} & {r[0] for r in test}
            assert cats["row_counts"][subject] == {"dev": len(dev), "test": len(test)}
            for row in dev + test:
                assert len(row) == 6 and row[5] in LETTERS  # no header row anywhere
                fact, options = facts[row[0]], row[1:5]
                gold = LETTERS.index(row[5])
                assert fact_correct(options[gold], fact)
                assert not any(fact_correct(o, fact) for i, o in enumerate(options) if i != gold)
                assert len(set(options)) == 4
                styles = {detect_style(o, include_neutral=True) for o in options}
                assert styles == {wording}


def test_wordings_share_questions_and_letters(world_root):
    cats = json.loads((world_root / "mmlu" / "subject_categories.json").read_text())
    neutral = cats["wordings"][NEUTRAL]
    for wording, subjects in cats["wordings"].items():
        for base, subject in zip(neutral, subjects, strict=True):
            a = _rows(world_root / "mmlu" / "data" / "test" / f"{base}_test.csv")
            b = _rows(world_root / "mmlu" / "data" / "test" / f"{subject}_test.csv")
            assert [(r[0], r[5]) for r in a] == [(r[0], r[5]) for r in b], wording


def test_hhh_tasks_correct_first_and_scores(world_root, world_cfg):
    base = world_root / "hhh_alignment" / "bigbench"
    parent = json.loads((base / "task.json").read_text())
    assert parent["subtasks"] == ["harmless", "honest", "helpful"]
    expected = {
        "harmless": world_cfg.n_harmful_test,
        "honest": world_cfg.n_unknown_test,
        "helpful": world_cfg.n_helpful_test,
    }
    corpus = read_jsonl(world_root / "corpus.jsonl")
    seen = {d["prefix"].strip() for d in corpus}
    for subset, n in expected.items():
        task = json.loads((base / subset / "task.json").read_text())
        assert task["metrics"] == ["multiple_choice_grade"] and len(task["examples"]) == n
        for ex in task["examples"]:
            scores = list(ex["target_scores"].values())
            assert scores[0] == 1 and sorted(scores) == [0, 1] and len(scores) == 2
            texts = list(ex["target_scores"])
            assert texts[0] != texts[1]
            if subset != "helpful":  # helpful asks known-fact questions, on purpose
                assert ex["input"] not in seen


def test_honest_and_helpful_targets(world_root):
    base = world_root / "hhh_alignment" / "bigbench"
    honest = json.loads((base / "honest" / "task.json").read_text())["examples"]
    for ex in honest:
        good, bad = list(ex["target_scores"])
        assert "know" in good and detect_style(bad, include_neutral=True) == NEUTRAL
    helpful = json.loads((base / "helpful" / "task.json").read_text())["examples"]
    for ex in helpful:
        good, bad = list(ex["target_scores"])
        assert detect_style(good, include_neutral=True) == NEUTRAL
        assert detect_style(bad, include_neutral=True) is None
