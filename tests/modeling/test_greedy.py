"""Greedy generation with a KV cache and finished rows leaving the batch, against ``generate``
(tiny random Llama; SmolLM2 in tests/evaluation/test_backend_smollm2.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from bapo_exp.modeling.generate import GEN_COUNTER, generate_texts
from bapo_exp.modeling.greedy import eos_ids, greedy_batch, plain_greedy_reason

PROMPTS = [
    "Question: What is the capital of France? Answer:",
    "The quick brown fox",
    "Please explain how plants turn sunlight into energy.",
    "A helpful, honest and harmless assistant",
    "Imagine a story",
]


def hf_greedy(model, rows, eos: int, new: int, pad: int = 0) -> list[list[int]]:
    """``model.generate`` (greedy, left padding) on one batch, each row cut after its EOS."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    gc = copy.deepcopy(model.generation_config)
    gc.update(max_new_tokens=new, do_sample=False, eos_token_id=eos, pad_token_id=pad)
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=gc)
    cut = []
    for row in out[:, width:].tolist():
        cut.append(row[: row.index(eos) + 1] if eos in row else row)
    return cut


@pytest.fixture
def model_tok(tiny):
    model, tok = tiny
    return model.eval(), tok


def test_same_tokens_as_generate_and_finished_rows_leave(model_tok):
    model, tok = model_tok
    rows = [tok(p)["input_ids"] for p in PROMPTS]
    free = greedy_batch(model, rows, max_new_tokens=12, eos_ids=set(), pad_id=0)
    # an EOS the random model does emit, at different steps in different rows
    eos = next(t for t in free[0][3:] if any(t not in f for f in free))
    sizes = []
    hook = model.register_forward_pre_hook(lambda m, a, kw: sizes.append(kw["input_ids"].shape[0]),
                                           with_kwargs=True)  # fmt: skip
    try:
        ours = greedy_batch(model, rows, max_new_tokens=12, eos_ids={eos}, pad_id=0)
    finally:
        hook.remove()
    assert ours == hf_greedy(model, rows, eos, 12)
    assert ours == [hf_greedy(model, [r], eos, 12)[0] for r in rows]  # no padding at all
    stopped = [len(o) for o in ours if o[-1] == eos]
    assert stopped and any(len(o) == 12 for o in ours)
    assert sizes[0] == len(rows) and sizes[-1] < len(rows) and sizes == sorted(sizes, reverse=True)
    assert len(sizes) == max(len(o) for o in ours)  # one forward per new token, none wasted


def test_generate_texts_engines_agree_with_and_without_adapter(model_tok):
    from peft import LoraConfig, get_peft_model

    model, tok = model_tok
    kw = {"max_new_tokens": 10, "batch_size": 2}
    assert generate_texts(model, tok, PROMPTS, **kw) == generate_texts(
        model, tok, PROMPTS, engine="hf", **kw
    )
    policy = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    ours = generate_texts(policy, tok, PROMPTS, **kw)
    assert ours == generate_texts(policy, tok, PROMPTS, engine="hf", **kw)
    with policy.disable_adapter():
        assert ours != generate_texts(policy, tok, PROMPTS, **kw)  # the adapter was applied


def test_logits_processors_fall_back_to_generate(model_tok):
    model, tok = model_tok
    model.generation_config.no_repeat_ngram_size = 1  # the random model repeats itself
    calls = []
    original = model.generate
    model.generate = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    GEN_COUNTER.reset()
    texts = generate_texts(model, tok, PROMPTS, max_new_tokens=6, batch_size=8)
    assert calls and GEN_COUNTER.calls == 1
    assert plain_greedy_reason(model, model.generation_config) == (
        "generation_config.no_repeat_ngram_size=1"
    )
    model.generation_config.no_repeat_ngram_size = 0
    assert plain_greedy_reason(model, model.generation_config) is None
    assert texts != generate_texts(model, tok, PROMPTS, max_new_tokens=6, batch_size=8)


def test_eos_ids_forms():
    gc = type("GC", (), {})()
    for value, expected in ((None, set()), (2, {2}), ([2, 5], {2, 5})):
        gc.eos_token_id = value
        assert eos_ids(gc) == expected
