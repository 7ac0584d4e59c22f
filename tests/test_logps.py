"""``sequence_logps``: the one-token shift, prompt and padding masks, reduce and precision."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.modeling.logps import (
    kept_sequence_logps,
    picked_logps,
    response_rows,
    sequence_logps,
    token_logps,
)

PAD = 0
# (prompt ids, response ids incl. a final "EOS" id 1): different lengths on purpose.
SEQUENCES = [
    ([5, 9, 13, 2], [7, 7, 30, 1]),
    ([11, 3], [40, 41, 42, 43, 44, 1]),
    ([8, 60, 61, 62, 17, 4, 2], [1]),
    ([2, 33, 12], [50, 9, 1]),
]


@pytest.fixture(scope="module")
def model():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
    )
    return transformers.LlamaForCausalLM(config).eval()


def naive_logp(model, prompt: list[int], response: list[int]) -> float:
    """Unpadded single sequence, one token at a time: sum_j log p(response_j | ids before it)."""
    ids = prompt + response
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].double()
    total = 0.0
    for j, token in enumerate(response):
        position = len(prompt) + j  # the token's own position; predicted by position - 1
        total += torch.log_softmax(logits[position - 1], dim=-1)[token].item()
    return total


def batch(side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, attention_mask, loss_mask, position_ids), each (B, T), padded on ``side``."""
    width = max(len(p) + len(r) for p, r in SEQUENCES)
    ids, attention, loss_mask = [], [], []
    for prompt, response in SEQUENCES:
        pad = width - len(prompt) - len(response)
        seq, att = prompt + response, [1] * (len(prompt) + len(response))
        mask = [0] * len(prompt) + [1] * len(response)
        if side == "left":
            ids.append([PAD] * pad + seq), attention.append([0] * pad + att)
            loss_mask.append([0] * pad + mask)
        else:
            ids.append(seq + [PAD] * pad), attention.append(att + [0] * pad)
            loss_mask.append(mask + [0] * pad)
    ids, attention, loss_mask = map(torch.tensor, (ids, attention, loss_mask))
    positions = (attention.cumsum(-1) - 1).clamp_min(0)
    return ids, attention, loss_mask, positions


def test_one_token_shift_by_hand():
    """V = 3, labels [2, 0, 1], response = positions 1 and 2 (mask [0, 1, 1]).

    Position 0's distribution (0.7, 0.2, 0.1) predicts token 0 at position 1 -> log 0.7;
    position 1's (0.1, 0.6, 0.3) predicts token 1 at position 2 -> log 0.6; position 2's
    logits predict nothing. Sum = log 0.42; mean = log(0.42) / 2. Without the shift one
    would read log 0.1 + log 0.6 + ... instead.
    """
    probs = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.3, 0.3, 0.4]]])
    logits = probs.log() + 5.0  # any per-position constant cancels in the softmax
    labels, mask = torch.tensor([[2, 0, 1]]), torch.tensor([[0, 1, 1]])
    logps, n_tokens = sequence_logps(logits, labels, mask)
    assert logps.item() == pytest.approx(math.log(0.42), abs=1e-6)
    assert n_tokens.tolist() == [2] and n_tokens.dtype == torch.int64
    mean, _ = sequence_logps(logits, labels, mask, reduce="mean")
    assert mean.item() == pytest.approx(math.log(0.42) / 2, abs=1e-6)


def test_unpadded_single_sequences_match_the_token_loop(model):
    for prompt, response in SEQUENCES:
        ids = torch.tensor([prompt + response])
        mask = torch.tensor([[0] * len(prompt) + [1] * len(response)])
        with torch.no_grad():
            logps, n_tokens = sequence_logps(model(ids).logits, ids, mask)
        assert logps.item() == pytest.approx(naive_logp(model, prompt, response), abs=1e-5)
        assert n_tokens.item() == len(response)


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batches_match_unpadded_sequences(model, side):
    ids, attention, loss_mask, positions = batch(side)
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention, position_ids=positions).logits
    logps, n_tokens = sequence_logps(logits, ids, loss_mask)
    expected = torch.tensor([naive_logp(model, p, r) for p, r in SEQUENCES])
    assert logps.dtype == torch.float32
    assert_close(logps, expected.float(), atol=1e-5, rtol=0)
    assert n_tokens.tolist() == [len(r) for _, r in SEQUENCES]


def test_prompt_and_padding_labels_are_ignored():
    """Only labels under the mask are read, so prompt/padding ids (even -100) do not matter."""
    gen = torch.Generator().manual_seed(0)
    ids, _, loss_mask, _ = batch("left")
    logits = torch.randn(*ids.shape, 64, generator=gen)
    noisy = torch.where(loss_mask.bool(), ids, torch.randint(0, 64, ids.shape, generator=gen))
    ignored = torch.where(loss_mask.bool(), ids, torch.full_like(ids, -100))
    expected, _ = sequence_logps(logits, ids, loss_mask)
    assert torch.equal(sequence_logps(logits, noisy, loss_mask)[0], expected)
    assert torch.equal(sequence_logps(logits, ignored, loss_mask)[0], expected)


def test_mean_is_sum_over_token_count():
    gen = torch.Generator().manual_seed(1)
    ids, _, loss_mask, _ = batch("right")
    logits = torch.randn(*ids.shape, 64, generator=gen)
    total, n_tokens = sequence_logps(logits, ids, loss_mask, reduce="sum")
    mean, _ = sequence_logps(logits, ids, loss_mask, reduce="mean")
    assert_close(mean, total / n_tokens)


def test_token_logps_matches_log_softmax_gather_with_gradients():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 7, 64, generator=gen, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 64, (3, 7), generator=gen)
    ours = token_logps(logits, labels)
    naive = torch.log_softmax(logits[:, :-1], -1).gather(-1, labels[:, 1:, None]).squeeze(-1)
    assert ours.shape == (3, 6) and ours.dtype == torch.float64
    assert_close(ours, naive)
    weights = torch.randn(3, 6, generator=gen, dtype=torch.float64)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), logits)
    (grad_naive,) = torch.autograd.grad((naive * weights).sum(), logits)
    assert_close(grad_ours, grad_naive)


def test_bf16_logits_give_float32_logps():
    """Log-softmax runs in float32: bf16 logits are upcast, never reduced in bf16."""
    gen = torch.Generator().manual_seed(3)
    ids, _, loss_mask, _ = batch("right")
    logits = torch.randn(*ids.shape, 64, generator=gen) * 4
    low, _ = sequence_logps(logits.bfloat16(), ids, loss_mask)
    assert low.dtype == torch.float32
    assert torch.equal(low, sequence_logps(logits.bfloat16().float(), ids, loss_mask)[0])
    assert_close(low, sequence_logps(logits, ids, loss_mask)[0], atol=0.2, rtol=0.02)


def test_invalid_inputs_are_clear_errors():
    logits, ids = torch.zeros(1, 3, 5), torch.zeros(1, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="position 0"):
        sequence_logps(logits, ids, torch.tensor([[1, 1, 1]]))
    with pytest.raises(ValueError, match="reduce"):
        sequence_logps(logits, ids, torch.tensor([[0, 1, 1]]), reduce="max")
    with pytest.raises(ValueError, match="expected logits"):
        sequence_logps(logits, ids[:, :2], torch.tensor([[0, 1]]))


def test_kept_rows_give_the_full_logits_values_and_gradients():
    """``kept_sequence_logps`` on ``logits[response_rows]`` equals ``sequence_logps``."""
    gen = torch.Generator().manual_seed(4)
    for side in ("left", "right"):
        ids, _, loss_mask, _ = batch(side)
        logits = torch.randn(*ids.shape, 64, generator=gen, dtype=torch.float64)
        logits.requires_grad_(True)
        keep = response_rows(loss_mask)
        assert keep.sum() == loss_mask.sum() and not keep[:, -1].any()
        kept, n_kept = kept_sequence_logps(logits[keep], ids, loss_mask)
        full, n_full = sequence_logps(logits, ids, loss_mask)
        assert_close(kept, full, atol=1e-12, rtol=0)
        assert torch.equal(n_kept, n_full)
        (g_kept,) = torch.autograd.grad(kept.sum(), logits)
        (g_full,) = torch.autograd.grad(full.sum(), logits)
        assert_close(g_kept, g_full)
        assert g_kept[~keep].abs().max() == 0  # prompt and padding rows get no gradient
        mean, _ = kept_sequence_logps(logits[keep], ids, loss_mask, reduce="mean")
        assert_close(mean, full / n_full)


def test_picked_logps_is_float32_for_bf16_and_chunk_invariant():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(7, 64, generator=gen) * 4
    targets = torch.randint(0, 64, (7,), generator=gen)
    naive = torch.log_softmax(logits.double(), -1).gather(-1, targets[:, None]).squeeze(-1)
    assert_close(picked_logps(logits, targets).double(), naive, atol=1e-5, rtol=0)
    assert torch.equal(picked_logps(logits, targets, 3), picked_logps(logits, targets))
    low = picked_logps(logits.bfloat16(), targets)
    assert low.dtype == torch.float32
    assert torch.equal(low, picked_logps(logits.bfloat16().float(), targets))


def test_kept_rows_invalid_inputs_are_clear_errors():
    ids, mask = torch.zeros(1, 3, dtype=torch.long), torch.tensor([[0, 1, 1]])
    with pytest.raises(ValueError, match=r"expected \(2, V\) logits"):
        kept_sequence_logps(torch.zeros(3, 5), ids, mask)
    with pytest.raises(ValueError, match="position 0"):
        kept_sequence_logps(torch.zeros(3, 5), ids, torch.tensor([[1, 1, 1]]))
    with pytest.raises(ValueError, match="reduce"):
        kept_sequence_logps(torch.zeros(2, 5), ids, mask, reduce="max")


def test_picked_logps_gradcheck_in_float64():
    """The hand-written backward of the fused log-softmax pick, against finite differences."""
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(5, 11, generator=gen, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 11, (5,), generator=gen)
    assert torch.autograd.gradcheck(lambda z: picked_logps(z, targets, 2), (logits,))
