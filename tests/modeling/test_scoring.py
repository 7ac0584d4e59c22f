"""Batched scoring: padding/batch invariance, forward counting, per-reference tokenisation."""

from __future__ import annotations

import math

import pytest
import torch

from bapo_exp.modeling.scoring import FORWARD_COUNTER, score_seqs, score_texts
from bapo_exp.modeling.tokenize import Tokenization, TokenizerMismatchError


def naive_logps(model, tz: Tokenization, prompts, responses) -> torch.Tensor:
    """One unpadded sequence at a time, full logits, float64 log-softmax (no shared code)."""
    out = []
    with torch.no_grad():
        for p, r in zip(prompts, responses, strict=True):
            prompt_ids = tz.tokenizer(tz.render(p), add_special_tokens=False)["input_ids"]
            response_ids = tz.tokenizer(r, add_special_tokens=False)["input_ids"]
            ids = prompt_ids + response_ids + [tz.tokenizer.eos_token_id]
            logits = model(input_ids=torch.tensor([ids])).logits[0].double()
            lp = torch.log_softmax(logits, dim=-1)
            out.append(sum(lp[t - 1, ids[t]].item() for t in range(len(prompt_ids), len(ids))))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize(
    ("side", "batch_size"), [("left", 2), ("right", 3), ("left", 5), ("right", 1)]
)
def test_padding_side_and_batch_size_invariance(tiny, pairs, side, batch_size):
    model, tok = tiny
    tz = Tokenization(tok)
    expected = naive_logps(model, tz, *pairs)
    logps, n_tokens = score_texts(model, tz, *pairs, batch_size=batch_size, side=side)
    assert logps.dtype == torch.float32 and logps.shape == (5,)
    torch.testing.assert_close(logps.double(), expected, atol=1e-4, rtol=1e-5)
    seqs = tz.encode_many(*pairs)
    assert n_tokens.tolist() == [s.n_response for s in seqs]


def test_mean_is_sum_over_tokens(tiny, pairs):
    model, tok = tiny
    tz = Tokenization(tok)
    total, n = score_texts(model, tz, *pairs, batch_size=4)
    mean, _ = score_texts(model, tz, *pairs, batch_size=4, reduce="mean")
    torch.testing.assert_close(mean, total / n, atol=1e-5, rtol=1e-5)


def test_forward_passes_are_counted(tiny, pairs):
    model, tok = tiny
    tz = Tokenization(tok)
    seen: list[int] = []
    before = FORWARD_COUNTER.passes
    score_seqs(
        model, tz.encode_many(*pairs), pad_id=tz.pad_id, batch_size=2, on_forward=seen.append
    )
    assert FORWARD_COUNTER.passes - before == math.ceil(5 / 2) == len(seen)
    assert sum(seen) == 5


def test_reference_with_other_tokenizer_scores_its_own_ids(tiny, other_tiny, pairs):
    """METHODS §4.1: a reference with another vocabulary re-tokenises the text."""
    model_a, tok_a = tiny
    model_b, tok_b = other_tiny
    tz_a, tz_b = Tokenization(tok_a), Tokenization(tok_b)
    seqs_a, seqs_b = tz_a.encode_many(*pairs), tz_b.encode_many(*pairs)
    assert [s.ids for s in seqs_a] != [s.ids for s in seqs_b]  # really different BPE
    logps_b, _ = score_texts(model_b, tz_b, *pairs, batch_size=2)
    torch.testing.assert_close(
        logps_b.double(), naive_logps(model_b, tz_b, *pairs), atol=1e-4, rtol=1e-5
    )
    logps_a, _ = score_texts(model_a, tz_a, *pairs, batch_size=2)
    assert not torch.allclose(logps_a, logps_b)
    with pytest.raises(TokenizerMismatchError):
        tz_b.share_ids_from(tz_a)  # feeding model B the ids of tokenizer A is refused


def test_forward_seconds_counts_the_models_forwards_only() -> None:
    """Time inside the innermost model's forward (outermost call only), none outside it; the
    hooks are gone afterwards."""
    import time

    from bapo_exp.modeling.scoring import forward_seconds

    class Slow(torch.nn.Module):
        def forward(self, x, depth=0):
            time.sleep(0.05)
            return self(x, depth + 1) if depth == 0 else x  # a nested call: counted once

    class Wrapper(torch.nn.Module):  # like a PEFT model around its base
        def __init__(self) -> None:
            super().__init__()
            self.base = Slow()

        def get_base_model(self):
            return self.base

        def forward(self, x):
            time.sleep(0.05)  # the wrapper's own work: not the model's
            return self.base(x)

    model = Wrapper()
    with forward_seconds(model) as seconds:
        model(torch.zeros(1))
        model.base(torch.zeros(1))  # a path that calls the base directly
        time.sleep(0.1)
    assert 0.2 <= seconds[0] < 0.3, seconds  # 2 calls x (0.05 + nested 0.05)
    assert not model.base._forward_hooks and not model.base._forward_pre_hooks
