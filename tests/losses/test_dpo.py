"""DPO: hand-derived values, the naive reference, and the step-0 identity (METHODS §2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.losses import PairLogps, dpo_loss

from . import reference as ref

B = 16


def _pairs(seed: int) -> tuple[PairLogps, PairLogps]:
    gen = torch.Generator().manual_seed(seed)
    policy = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    reference = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    return policy, reference


def test_hand_derived_values():
    """policy (-1, -3), reference (-2, -2), beta 0.5.

    r(y_w) = -1 - (-2) = 1, r(y_l) = -3 - (-2) = -1, z = 0.5 * (1 - (-1)) = 1.
    L = -log s(1) = log(1 + e^-1) = 0.3132616875.
    Smoothing eps = 0.1: -(0.9) log s(1) - 0.1 log s(-1); since -log s(-z) = z - log s(z),
    L = -log s(1) + 0.1 * 1 = 0.4132616875.
    Rewards: 0.5 * 1 = 0.5 and 0.5 * -1 = -0.5, margin 1, accuracy 1.
    """
    policy = PairLogps(torch.tensor([-1.0], dtype=torch.float64), torch.tensor([-3.0]).double())
    reference = PairLogps(torch.tensor([-2.0]).double(), torch.tensor([-2.0]).double())
    out = dpo_loss(policy, reference, beta=0.5)
    assert_close(out.losses, torch.tensor([math.log1p(math.exp(-1))], dtype=torch.float64))
    assert out.losses.item() == pytest.approx(0.3132616875182228)
    smoothed = dpo_loss(policy, reference, beta=0.5, label_smoothing=0.1)
    assert smoothed.losses.item() == pytest.approx(0.4132616875182228)
    m = out.metrics
    assert (m["rewards/chosen"].item(), m["rewards/rejected"].item()) == (0.5, -0.5)
    assert (m["rewards/margin"].item(), m["rewards/accuracy"].item()) == (1.0, 1.0)
    assert (m["logps/chosen"].item(), m["logps/rejected"].item()) == (-1.0, -3.0)


@pytest.mark.parametrize("beta", [0.05, 0.1, 1.0])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_matches_reference(beta, label_smoothing):
    policy, reference = _pairs(seed=int(beta * 100) + int(label_smoothing * 10))
    out = dpo_loss(policy, reference, beta=beta, label_smoothing=label_smoothing)
    expected = [
        ref.dpo(pw, pl, rw, rl, beta, label_smoothing)
        for pw, pl, rw, rl in zip(
            policy.chosen.tolist(),
            policy.rejected.tolist(),
            reference.chosen.tolist(),
            reference.rejected.tolist(),
            strict=True,
        )
    ]
    assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))
    rewards_w = beta * (policy.chosen - reference.chosen)
    rewards_l = beta * (policy.rejected - reference.rejected)
    assert_close(out.metrics["rewards/margin"], rewards_w - rewards_l)
    assert_close(out.metrics["rewards/accuracy"], (rewards_w > rewards_l).double())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_policy_equal_reference_is_ln2_and_zero_rewards(dtype):
    """Step 0: r = 0 for both responses, z = 0, L = -log s(0) = ln 2 exactly (PITFALLS)."""
    gen = torch.Generator().manual_seed(0)
    policy = PairLogps(ref.random_logps(B, gen).to(dtype), ref.random_logps(B, gen).to(dtype))
    out = dpo_loss(policy, policy, beta=0.1)
    assert torch.equal(out.losses, torch.full((B,), math.log(2), dtype=dtype))
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margin", "rewards/accuracy"):
        assert torch.equal(out.metrics[key], torch.zeros(B, dtype=dtype)), key


def test_smoothing_is_softplus_plus_eps_z():
    """-(1-e) log s(z) - e log s(-z) = softplus(-z) + e z, for any z."""
    policy, reference = _pairs(seed=3)
    plain = dpo_loss(policy, reference, beta=0.1)
    smooth = dpo_loss(policy, reference, beta=0.1, label_smoothing=0.3)
    z = plain.metrics["rewards/margin"]
    assert_close(smooth.losses, plain.losses + 0.3 * z)


@pytest.mark.parametrize("kwargs", [{"beta": 0.0}, {"beta": -1.0}, {"label_smoothing": 0.5}])
def test_rejects_bad_hyperparameters(kwargs):
    policy, reference = _pairs(seed=4)
    with pytest.raises(ValueError):
        dpo_loss(policy, reference, **kwargs)
