"""The synthetic suites through the project's lm-eval tasks (option scoring, HHH format)."""

from __future__ import annotations

import csv
import json

import pytest

from bapo_exp.evaluation.harness import evaluate, mc_format_of
from bapo_exp.evaluation.summary import flatten
from tests.evaluation.stubs import StubLM


def _gold_options(root) -> dict[tuple[str, str], bool]:
    """(question + newline, option) -> is gold, read straight from the world's CSVs."""
    gold = {}
    for path in (root / "mmlu" / "data" / "test").glob("*_test.csv"):
        with path.open(newline="") as fh:
            for q, *opts, letter in csv.reader(fh):
                for k, opt in enumerate(opts):
                    gold[(q + "\n", opt)] = "ABCD"[k] == letter
    return gold


def test_knowledge_options_format_prompt_and_gold(world_root):
    gold = _gold_options(world_root)
    seen = []

    def score(req):
        ctx, cont = req.args
        seen.append((ctx, cont))
        return 0.0 if gold[(ctx, cont)] else -1.0  # KeyError = wrong prompt or delimiter

    out = flatten(evaluate(StubLM(score), suites=["synthetic_knowledge"], data_root=world_root,
                           limit=None, batch_size=4))  # fmt: skip
    wordings = json.loads((world_root / "mmlu" / "subject_categories.json").read_text())["wordings"]
    assert out["synthetic_knowledge/acc"] == 1.0 and out["synthetic_knowledge/chance"] == 0.25
    for wording in wordings:
        assert out[f"synthetic_knowledge/{wording}/acc"] == 1.0
    assert len(seen) == 4 * int(out["synthetic_knowledge/n"])


def test_knowledge_letter_format_switch(world_root):
    def score(req):
        ctx, cont = req.args
        assert ctx.endswith("\nAnswer:") and cont in (" A", " B", " C", " D")
        return 0.0 if cont == " A" else -1.0  # always answers A: accuracy = share of gold A

    out = flatten(evaluate(StubLM(score), suites=["synthetic_knowledge"], data_root=world_root,
                           limit=None, batch_size=4, mc_format="letter"))  # fmt: skip
    rows = [r for p in (world_root / "mmlu/data/test").glob("*.csv") for r in csv.reader(p.open())]
    assert out["synthetic_knowledge/acc"] == pytest.approx(
        sum(r[5] == "A" for r in rows) / len(rows)
    )


def test_alignment_scores_aligned_response_without_delimiter(world_root):
    tasks = sorted((world_root / "hhh_alignment" / "bigbench").glob("*/task.json"))
    aligned = {}
    for path in tasks:
        for ex in json.loads(path.read_text())["examples"]:
            for text, s in ex["target_scores"].items():
                aligned[(ex["input"] + "\n", text)] = s == 1

    def score(req):
        return 0.0 if aligned[tuple(req.args)] else -1.0

    out = flatten(evaluate(StubLM(score), suites=["synthetic_alignment"], data_root=world_root,
                           limit=None, batch_size=4))  # fmt: skip
    assert out["synthetic_alignment/acc"] == 1.0
    assert {"harmless", "honest", "helpful"} <= {k.split("/")[1] for k in out if k.count("/") == 2}


def test_mc_format_defaults_and_errors(tmp_path):
    assert mc_format_of("mmlu", "auto") == "letter"
    assert mc_format_of("synthetic_knowledge", "auto") == "options"
    assert mc_format_of("mmlu", "options") == "options"
    with pytest.raises(ValueError, match="mc_format"):
        mc_format_of("mmlu", "cloze")
    with pytest.raises(FileNotFoundError, match="data=synthetic"):
        evaluate(StubLM(lambda r: 0.0), suites=["synthetic_alignment"], data_root=tmp_path,
                 limit=1, batch_size=1)  # fmt: skip


@pytest.mark.slow
def test_micro_base_far_above_chance_through_lm_eval(tmp_path):
    """The default micro base (pretrained ~1 min) through the lm-eval synthetic suites."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.synthetic import (
        MicroTrainConfig,
        WorldConfig,
        ensure_micro_base,
        ensure_world,
        micro_model_config,
    )

    root = ensure_world(WorldConfig(), tmp_path)
    path = ensure_micro_base(WorldConfig(), micro_model_config(), MicroTrainConfig(), tmp_path)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    out = flatten(evaluate(model, tok, suites=["synthetic_knowledge", "synthetic_alignment"],
                           data_root=root, limit=None, batch_size=32))  # fmt: skip
    assert out["synthetic_knowledge/neutral/acc"] >= 0.8  # chance 0.25
    assert out["synthetic_knowledge/at_chance"] == 0.0
    assert out["synthetic_alignment/acc"] >= 0.8  # chance 0.5
    letter = flatten(evaluate(model, tok, suites=["synthetic_knowledge"], data_root=root,
                              limit=None, batch_size=32, mc_format="letter"))  # fmt: skip
    assert letter["synthetic_knowledge/acc"] < out["synthetic_knowledge/acc"]
