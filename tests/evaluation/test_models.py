"""Real models through ``evaluate``: a tiny random Llama with LoRA (fast) and SmolLM2-135M."""

from __future__ import annotations

import pytest

from bapo_exp.evaluation import evaluate, flatten
from bapo_exp.evaluation.harness import make_lm
from tests.conftest import SHARED_DATA, require_shared

SUITE_KEYS = {
    "mmlu": ["mmlu", "mmlu/humanities", "mmlu/social_sciences", "mmlu/stem", "mmlu/other"],
    "scienceqa": ["scienceqa"],
    "hhh": ["hhh", "hhh/harmless", "hhh/helpful", "hhh/honest", "hhh/other"],
}


def assert_summary(flat: dict[str, float], suites: list[str]) -> None:
    for suite in suites:
        for prefix in SUITE_KEYS[suite]:
            for metric in ("acc", "acc_norm", "chance"):
                assert 0.0 <= flat[f"{prefix}/{metric}"] <= 1.0, prefix
            for key in ("acc_stderr", "acc_norm_stderr", "n"):
                assert flat[f"{prefix}/{key}"] >= 0.0
            assert flat[f"{prefix}/at_chance"] in (0.0, 1.0)


@pytest.fixture
def lora_model(tiny_dir):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # a non-zero adapter, so that it changes the scores
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    return peft_model, AutoTokenizer.from_pretrained(tiny_dir)


def test_peft_model_in_memory(lora_model, tmp_path) -> None:
    require_shared("hhh_alignment", "bigbench")
    model, tokenizer = lora_model
    model.train()
    raw = evaluate(
        model,
        tokenizer,
        suites=["hhh"],
        data_root=SHARED_DATA,
        limit=4,
        batch_size=4,
        out_dir=tmp_path,
    )
    assert model.training  # restored after evaluation
    flat = flatten(raw)
    assert_summary(flat, ["hhh"])
    assert flat["hhh/n"] == 16 and (tmp_path / "hhh.json").exists()


def test_hflm_scores_with_the_adapter(lora_model) -> None:
    """The HFLM wrapper runs the adapter: disabling it changes the log-likelihood."""
    from lm_eval.api.instance import Instance

    model, tokenizer = lora_model
    lm = make_lm(model, tokenizer, batch_size=1)
    request = Instance("loglikelihood", {}, ("Human: hello\nAssistant:", " fine"), 0)
    ((with_adapter, _),) = lm.loglikelihood([request])
    with model.disable_adapter():
        ((without, _),) = lm.loglikelihood([request])
    assert with_adapter != pytest.approx(without, abs=1e-4)


@pytest.mark.integration
def test_smollm2_all_suites(smollm2_dir) -> None:
    """20 items per suite: MMLU 5 from each of 4 subjects (one per group), ScienceQA 20, HHH 5
    per subset. On 2 CPU cores about 55 s of compute plus the GGUF conversion: HHH items are
    long (up to 1,345 tokens) and MMLU costs ~1 s per item, so larger limits exceed 3 minutes.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for part in ("mmlu", "scienceqa", "hhh_alignment"):
        require_shared(part)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir)
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    subjects = ["philosophy", "marketing", "high_school_geography", "astronomy"]  # one per group
    common = {"data_root": SHARED_DATA, "batch_size": 8}
    raw = evaluate(model, tokenizer, suites=["mmlu"], limit=5, mmlu_subjects=subjects, **common)
    raw |= evaluate(model, tokenizer, suites=["scienceqa"], limit=20, **common)
    raw |= evaluate(model, tokenizer, suites=["hhh"], limit=5, **common)
    flat = flatten(raw)
    assert_summary(flat, list(SUITE_KEYS))
    assert flat["mmlu/n"] == flat["scienceqa/n"] == flat["hhh/n"] == 20
