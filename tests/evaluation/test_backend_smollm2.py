"""SmolLM2-135M-Instruct (fp32): eval.backend=bapo against HFLM, greedy generation against
``generate``. Skipped with the reason when the GGUF package or the shared data is absent.

CI (integration) runs subsets, about a minute on 2 cores: HHH 3 items per subset, MMLU 4
subjects x 2 questions 0- and 5-shot, ScienceQA 10. The full sets (all 221 HHH comparisons,
MMLU 4 x 10 at 0 and 5 shots, all 194 ScienceQA problems; ~10 min) are marked ``slow``:
``pytest -m slow tests/evaluation/test_backend_smollm2.py``.
"""

from __future__ import annotations

import json

import pytest

from bapo_exp.evaluation.backend import make_backend
from tests.conftest import SHARED_DATA, require_shared
from tests.evaluation.lm_requests import MMLU_SUBJECTS, build_requests, compare, item_metrics

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]
SUBSETS = {  # id: (suite, limit per task, shots, subjects)
    "hhh": ("hhh", 3, 0, None),
    "mmlu-0shot": ("mmlu", 2, 0, MMLU_SUBJECTS),
    "mmlu-5shot": ("mmlu", 2, 5, MMLU_SUBJECTS),
    "scienceqa": ("scienceqa", 10, 0, None),
}
FULL = {
    "hhh-all": ("hhh", None, 0, None),
    "mmlu-0shot-40": ("mmlu", 10, 0, MMLU_SUBJECTS),
    "mmlu-5shot-40": ("mmlu", 10, 5, MMLU_SUBJECTS),
    "scienceqa-all": ("scienceqa", None, 0, None),
}


@pytest.fixture(scope="module")
def smol(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_dir)


def check_case(case: tuple, smol) -> dict:
    suite, limit, shots, subjects = case
    require_shared(suite if suite != "hhh" else "hhh_alignment")
    model, tok = smol
    instances, tasks = build_requests(SHARED_DATA, suite, limit=limit, num_fewshot=shots,
                                      subjects=subjects)  # fmt: skip
    ref = make_backend("hf", model, tok, batch_size=8).loglikelihood(instances, disable_tqdm=True)
    ours = make_backend("bapo", model, tok).loglikelihood(instances, disable_tqdm=True)
    cmp = compare(ours, ref)
    assert not cmp["outside"] and cmp["max_abs_diff"] <= 1e-4, cmp["max_abs_diff"]
    assert not cmp["greedy_mismatch"]
    assert item_metrics(tasks, instances, ours) == item_metrics(tasks, instances, ref)
    return cmp


@pytest.mark.parametrize("case", list(SUBSETS))
def test_smollm2_requests_and_items_match_hflm(case, smol):
    cmp = check_case(SUBSETS[case], smol)
    if case.startswith("mmlu"):
        assert cmp["n_greedy"] > 0  # a real model picks letters greedily: is_greedy is tested


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FULL))
def test_smollm2_full_sets_match_hflm(case, smol):
    check_case(FULL[case], smol)


def test_smollm2_greedy_generation_matches_generate(smol, tmp_path):
    """The same texts as ``model.generate`` (engine="hf") on DSP queries, rows stopping at EOS
    at different steps; a cache written by one engine is read by the other (same keys)."""
    from bapo_exp.modeling.generate import GEN_COUNTER, generate_texts
    from bapo_exp.modeling.template import render_prompt

    dsp = require_shared("dsp", "domain_specific_preference.test.json")
    model, tok = smol
    queries = [row["query"] for row in json.loads(dsp.read_text())[:8]]
    queries[1] = "Answer with one word: what colour is the sky?"  # stops early
    prompts = [
        render_prompt(tok, q, use_chat_template=True, prompt_template="{prompt}\n") for q in queries
    ]
    kw = {"max_new_tokens": 24, "batch_size": 8}
    hf = generate_texts(model, tok, prompts, engine="hf", **kw)
    cache = tmp_path / "gen.jsonl"
    ours = generate_texts(model, tok, prompts, cache_path=cache, **kw)
    GEN_COUNTER.reset()
    again = generate_texts(model, tok, prompts, cache_path=cache, engine="hf", **kw)
    assert ours == hf == again and GEN_COUNTER.calls == 0
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in ours]
    assert min(lengths) < 12 and max(lengths) >= 23  # some rows stopped early, some ran out
