"""The response-only LM head (``policy_logps``): same values and gradients as the full logits."""

from __future__ import annotations

import copy

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.modeling.tokenize import TokenizedSeq, collate
from bapo_exp.training.forward import policy_logps

VOCAB = 96
# (prompt ids, response ids): prompts of different lengths, the response ends with EOS (2).
PAIRS = [
    ([5, 9, 13, 40, 41, 42], [7, 7, 30, 2]),
    ([11, 3], [40, 41, 42, 43, 44, 60, 61, 2]),
    ([8, 60, 61, 62, 17, 4, 50, 51, 52], [2]),
    ([33, 12, 70], [50, 9, 88, 91, 2]),
]


@pytest.fixture(scope="module")
def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         tie_word_embeddings=True, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # a non-trivial distribution: random init gives near-uniform logits
        for p in model.parameters():
            p.mul_(4.0)
    return model.eval()


def make_batch(side: str) -> dict[str, torch.Tensor]:
    seqs = [TokenizedSeq(ids=p + r, n_prompt=len(p)) for p, r in PAIRS]
    return collate(seqs, pad_id=0, side=side)


def float64_reference(model, batch) -> torch.Tensor:
    """Full logits of a float64 copy, log-softmax in float64, summed by hand (no library code)."""
    ref = copy.deepcopy(model).double()
    with torch.no_grad():
        logits = ref(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                     position_ids=batch["position_ids"]).logits  # fmt: skip
    logp = torch.log_softmax(logits, dim=-1)
    out = torch.zeros(batch["input_ids"].shape[0], dtype=torch.float64)
    for b in range(out.shape[0]):
        for t in range(1, batch["input_ids"].shape[1]):
            if batch["loss_mask"][b, t]:
                out[b] += logp[b, t - 1, batch["input_ids"][b, t]]
    return out


@pytest.mark.parametrize("side", ["right", "left"])
def test_values_match_a_float64_full_logits_reference(llama, side):
    batch = make_batch(side)
    expected = float64_reference(llama, batch)
    with torch.no_grad():
        fast, n_fast = policy_logps(llama, batch, "sum")
        full, n_full = policy_logps(llama, batch, "sum", response_only=False)
    assert fast.dtype == torch.float32 and fast.shape == (len(PAIRS),)
    assert expected.abs().min() > 1.0  # the reference is not trivially ~0
    assert_close(fast.double(), expected, atol=2e-5, rtol=1e-6)
    assert_close(fast, full, atol=2e-5, rtol=1e-6)
    assert n_fast.tolist() == n_full.tolist() == [len(r) for _, r in PAIRS]
    mean, _ = policy_logps(llama, batch, "mean")
    assert_close(mean, fast.detach() / n_fast, atol=1e-6, rtol=1e-6)


def grads(model, batch, response_only: bool) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logps, _ = policy_logps(model, batch, "sum", response_only=response_only)
    weights = torch.linspace(-1.0, 2.0, logps.shape[0], dtype=logps.dtype)
    (logps * weights).sum().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_gradients_equal_the_full_logits_path_in_float64(llama):
    model = copy.deepcopy(llama).double()
    batch = make_batch("right")
    fast, full = grads(model, batch, True), grads(model, batch, False)
    assert fast.keys() == full.keys() and "model.embed_tokens.weight" in fast  # tied head
    for name in full:
        assert_close(fast[name], full[name], atol=1e-12, rtol=1e-10, msg=name)
    assert max(g.abs().max() for g in fast.values()) > 1e-3  # gradients are not all zero


def test_lora_policy_and_disabled_adapter_match_the_full_path(llama):
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(
        copy.deepcopy(llama),
        peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    with torch.no_grad():  # a trained-looking adapter: B != 0, so enabled != disabled
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)
    batch = make_batch("right")
    with torch.no_grad():
        policy = policy_logps(model, batch, "sum")[0]
        assert_close(policy, policy_logps(model, batch, "sum", response_only=False)[0],
                     atol=2e-5, rtol=1e-6)  # fmt: skip
        with model.disable_adapter():
            base = policy_logps(model, batch, "sum")[0]
    assert_close(base, policy_logps(llama, batch, "sum", response_only=False)[0].detach(),
                 atol=2e-5, rtol=1e-6)  # fmt: skip
    assert (policy - base).abs().max() > 1e-2


class DropsLogitsToKeep(torch.nn.Module):
    """A model whose forward ignores ``logits_to_keep`` (returns (B, T, V) logits)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, logits_to_keep=None, **inputs):
        return self.inner(**inputs)


def test_a_model_that_ignores_the_mask_is_a_clear_error(llama):
    with pytest.raises(ValueError, match="response_only=False"):
        policy_logps(DropsLogitsToKeep(llama), make_batch("right"), "sum")
