"""IPO with length-normalised log-ratios (METHODS §2)."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.losses import PairLogps, ipo_loss

from . import reference as ref

B = 16


def _pairs(seed: int, tokens_on: str = "policy") -> tuple[PairLogps, PairLogps]:
    gen = torch.Generator().manual_seed(seed)
    nw = torch.randint(1, 40, (B,), generator=gen)
    nl = torch.randint(1, 40, (B,), generator=gen)
    counts = {"chosen_tokens": nw, "rejected_tokens": nl}
    policy = PairLogps(
        ref.random_logps(B, gen),
        ref.random_logps(B, gen),
        **(counts if tokens_on == "policy" else {}),
    )
    reference = PairLogps(
        ref.random_logps(B, gen), ref.random_logps(B, gen), **(counts if tokens_on == "ref" else {})
    )
    return policy, reference


def test_hand_derived_value():
    """y_w: policy -4, reference -6, 4 tokens -> r/|y| = 2/4 = 0.5.

    y_l: policy -9, reference -6, 3 tokens -> r/|y| = -3/3 = -1.  h = 0.5 - (-1) = 1.5.
    beta 0.5 -> target 1/(2 beta) = 1;  L = (1.5 - 1)^2 = 0.25.  rewards 0.25 and -0.5.
    """
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    policy = PairLogps(t(-4.0), t(-9.0), torch.tensor([4]), torch.tensor([3]))
    out = ipo_loss(policy, PairLogps(t(-6.0), t(-6.0)), beta=0.5)
    assert out.losses.item() == pytest.approx(0.25)
    assert out.metrics["rewards/chosen"].item() == pytest.approx(0.25)
    assert out.metrics["rewards/rejected"].item() == pytest.approx(-0.5)
    assert out.metrics["logps/chosen"].item() == -4.0  # summed, not normalised


@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
@pytest.mark.parametrize("tokens_on", ["policy", "ref"])
def test_matches_reference(beta, tokens_on):
    policy, reference = _pairs(seed=int(beta * 10), tokens_on=tokens_on)
    counts = policy if tokens_on == "policy" else reference
    expected = [
        ref.ipo(*vals, beta)
        for vals in zip(
            policy.chosen.tolist(),
            policy.rejected.tolist(),
            reference.chosen.tolist(),
            reference.rejected.tolist(),
            counts.chosen_tokens.tolist(),
            counts.rejected_tokens.tolist(),
            strict=True,
        )
    ]
    out = ipo_loss(policy, reference, beta=beta)
    assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))


def test_missing_token_counts_is_a_clear_error():
    gen = torch.Generator().manual_seed(0)
    pair = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    with pytest.raises(ValueError, match="token counts"):
        ipo_loss(pair, pair)


def test_overshoot_is_penalised():
    """Unlike DPO, IPO pulls the normalised margin back to 1/(2 beta): past it, raising
    logp(y_w) increases the loss, so d L / d policy.chosen > 0 there."""
    chosen = torch.tensor([-1.0], dtype=torch.float64, requires_grad=True)
    one = torch.tensor([1])
    policy = PairLogps(chosen, torch.tensor([-50.0]).double(), one, one)
    reference = PairLogps(torch.tensor([-10.0]).double(), torch.tensor([-10.0]).double())
    ipo_loss(policy, reference, beta=0.1).losses.sum().backward()  # h = 49 > 5
    assert chosen.grad.item() > 0
