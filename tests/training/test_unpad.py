"""Padding-free forward (``attn_implementation="sdpa_unpadded"``): same values and gradients
as the padded path, on real tokens only, and a clear error where it cannot apply."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.modeling.tokenize import TokenizedSeq, collate
from bapo_exp.modeling.unpad import UNPADDED, is_unpadded, register, unpadded_inputs
from bapo_exp.training.forward import policy_logps
from tests.training.test_forward_logps import (  # noqa: F401 (llama is a fixture)
    PAIRS,
    float64_reference,
    llama,
    make_batch,
)

register()


@pytest.fixture(scope="module")
def padded(llama):  # noqa: F811 (pytest passes the imported fixture)
    """``test_forward_logps``'s small Llama (grouped-query attention, a non-trivial
    distribution), on transformers' sdpa: the padded path."""
    return llama


def unpadded_copy(model):
    out = copy.deepcopy(model)
    out.set_attn_implementation(UNPADDED)
    assert is_unpadded(out) and not is_unpadded(model)
    return out


def test_flat_row_holds_each_prompt_once_for_either_padding_side():
    # Rows 0 and 2 share the prompt [5, 6] (a chosen and a rejected response); row 1 does not.
    seqs = [TokenizedSeq(ids=[5, 6, 7], n_prompt=2), TokenizedSeq(ids=[8, 9], n_prompt=1),
            TokenizedSeq(ids=[5, 6, 3, 4], n_prompt=2)]  # fmt: skip
    for side in ("right", "left"):
        flat = unpadded_inputs(collate(seqs, pad_id=0, side=side))
        assert flat.inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9, 3, 4]]
        assert flat.inputs["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3]]
        assert flat.inputs["unpad_shape"] == (3, 4)
        # Right-padded (3, 4) slots read flat rows; row 2 reads row 0's prompt (flat 0, 1);
        # padding slots read row 0 (never attended).
        assert flat.inputs["unpad_gather"].tolist() == [0, 1, 2, 0, 3, 4, 0, 0, 0, 1, 5, 6]
        assert flat.inputs["unpad_rows"].tolist() == [0, 1, 2, 4, 5, 10, 11]
        # Kept positions (those predicting response tokens), row by row: the shared prompt's
        # last token (flat 1) is kept once for each sequence that continues it.
        assert flat.keep.tolist() == [1, 3, 1, 5]
        assert flat.shared == 2
        alone = unpadded_inputs(collate(seqs, pad_id=0, side=side), share_prompts=False)
        assert alone.inputs["input_ids"].tolist() == [[5, 6, 7, 8, 9, 5, 6, 3, 4]]
        assert alone.shared == 0


def pair_batch(side: str) -> dict[str, torch.Tensor]:
    """Chosen, rejected and base responses to each prompt, as ``policy_batch`` lays them out."""
    chosen = [TokenizedSeq(ids=p + r, n_prompt=len(p)) for p, r in PAIRS]
    rejected = [TokenizedSeq(ids=p + r[::-1][1:] + [2], n_prompt=len(p)) for p, r in PAIRS]
    base = [TokenizedSeq(ids=p + [17, 2], n_prompt=len(p)) for p, _ in PAIRS]
    return collate(chosen + rejected + base, pad_id=0, side=side)


@pytest.mark.parametrize("side", ["right", "left"])
def test_shared_prompts_give_the_padded_values_and_a_float64_reference(padded, side):
    batch = pair_batch(side)
    assert unpadded_inputs(batch).shared == 2 * sum(len(p) for p, _ in PAIRS)
    with torch.no_grad():
        flat, n_flat = policy_logps(unpadded_copy(padded), batch, "sum")
        pad, n_pad = policy_logps(padded, batch, "sum")
    expected = float64_reference(padded, batch)
    assert_close(flat.double(), expected, atol=2e-5, rtol=1e-6)
    assert_close(flat, pad, atol=1e-5, rtol=1e-6)
    assert n_flat.tolist() == n_pad.tolist()


@pytest.mark.parametrize("side", ["right", "left"])
def test_values_match_the_padded_path_and_a_float64_reference(padded, side):
    batch = make_batch(side)
    fast = unpadded_copy(padded)
    with torch.no_grad():
        flat, n_flat = policy_logps(fast, batch, "sum")
        pad, n_pad = policy_logps(padded, batch, "sum")
    expected = float64_reference(padded, batch)
    assert expected.abs().min() > 1.0
    assert_close(flat.double(), expected, atol=2e-5, rtol=1e-6)
    assert_close(flat, pad, atol=1e-5, rtol=1e-6)
    assert n_flat.tolist() == n_pad.tolist() == [len(r) for _, r in PAIRS]


def grads(model, batch) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logps, _ = policy_logps(model, batch, "sum")
    (logps * torch.linspace(-1.0, 2.0, logps.shape[0], dtype=logps.dtype)).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def rms_norm_in_input_dtype(self, hidden):
    """Llama's RMSNorm without its float32 cast (which makes a float64 model partly float32)."""
    variance = hidden.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden * torch.rsqrt(variance + self.variance_epsilon))


@pytest.mark.parametrize("shared", [False, True])
def test_gradients_equal_the_padded_path_in_float64(padded, shared, monkeypatch):
    """Exact in float64. Llama's RMSNorm computes in float32 even for float64 inputs; with
    shared prompts the gradients then sum in another order around those float32 roundings
    (measured: 9e-8 relative), so the norm runs in float64 here."""
    from transformers.models.llama import modeling_llama

    monkeypatch.setattr(modeling_llama.LlamaRMSNorm, "forward", rms_norm_in_input_dtype)
    model = copy.deepcopy(padded).double()
    batch = pair_batch("left") if shared else make_batch("left")
    want, got = grads(model, batch), grads(unpadded_copy(model), batch)
    assert want.keys() == got.keys() and "model.layers.0.self_attn.k_proj.weight" in got
    for name in want:
        assert_close(got[name], want[name], atol=1e-12, rtol=1e-10, msg=name)
    assert max(g.abs().max() for g in got.values()) > 1e-3


def test_lora_policy_and_disabled_adapter_match_the_padded_path(padded):
    peft = pytest.importorskip("peft")
    from bapo_exp.modeling.reference_model import Reference
    from bapo_exp.modeling.scoring import forward_logps

    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])
    torch.manual_seed(0)
    slow = peft.get_peft_model(copy.deepcopy(padded), lora)
    with torch.no_grad():
        for name, p in slow.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    fast = copy.deepcopy(slow)
    fast.base_model.model.set_attn_implementation(UNPADDED)
    spec = None  # the References below wrap given models: no spec is read
    assert is_unpadded(fast) and is_unpadded(Reference(spec, "unused", fast))
    batch = pair_batch("right")
    with torch.no_grad():
        assert_close(policy_logps(fast, batch, "sum")[0], policy_logps(slow, batch, "sum")[0],
                     atol=1e-5, rtol=1e-6)  # fmt: skip
    ref_fast = forward_logps(Reference(spec, "unused", fast), batch)[0]
    ref_slow = forward_logps(Reference(spec, "unused", slow), batch)[0]
    assert_close(ref_fast, ref_slow, atol=1e-5, rtol=1e-6)


def test_calls_without_a_flat_batch_are_plain_sdpa(padded):
    """Generation and full-logits scoring go through transformers' sdpa: identical outputs."""
    fast, batch = unpadded_copy(padded), make_batch("left")
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    with torch.no_grad():
        assert torch.equal(fast(**inputs).logits, padded(**inputs).logits)
        gen = dict(max_new_tokens=4, do_sample=False, pad_token_id=0)
        ids, attn = batch["input_ids"], batch["attention_mask"]
        assert torch.equal(fast.generate(ids, attention_mask=attn, **gen),
                           padded.generate(ids, attention_mask=attn, **gen))  # fmt: skip


class DropsUnpadKeywords(torch.nn.Module):
    """A model that does not pass extra keywords on to its attention layers."""

    def __init__(self, inner):
        super().__init__()
        self.module = inner

    def forward(self, unpad_index=None, unpad_shape=None, **inputs):
        return self.module(**inputs)


def test_a_model_that_drops_the_keywords_is_a_clear_error(padded):
    with pytest.raises(RuntimeError, match="0 attention layers took the padding-free path"):
        policy_logps(DropsUnpadKeywords(unpadded_copy(padded)), make_batch("right"), "sum")


def test_a_response_token_first_in_its_sequence_is_refused():
    batch = collate([TokenizedSeq(ids=[5, 6], n_prompt=0)], pad_id=0)
    with pytest.raises(ValueError, match="sequence 0's first token"):
        unpadded_inputs(batch)


def test_a_response_that_is_not_a_suffix_is_refused():
    batch = collate([TokenizedSeq(ids=[5, 6, 7], n_prompt=1)], pad_id=0)
    batch["loss_mask"][0, 2] = 0
    with pytest.raises(ValueError, match="not a suffix"):
        unpadded_inputs(batch)


def test_a_sliding_window_shorter_than_the_batch_is_refused(padded):
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(**padded.config.to_dict() | {"sliding_window": 3})
    config.model_type = "mistral"
    model = MistralForCausalLM(config)
    model.set_attn_implementation(UNPADDED)
    with pytest.raises(ValueError, match="sliding window of 3 tokens"):
        policy_logps(model, make_batch("right"), "sum")
