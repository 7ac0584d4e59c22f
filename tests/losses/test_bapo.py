"""BAPO: DPO plus an anchor on the base response y_b (METHODS §3)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.losses import AnchorLogps, PairLogps, bapo_loss, dpo_loss

from . import reference as ref

B = 32
TYPES = ["hinge", "abs", "sq", "nll", "none"]


def _inputs(seed: int) -> tuple[PairLogps, PairLogps, AnchorLogps]:
    gen = torch.Generator().manual_seed(seed)
    policy = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    reference = PairLogps(ref.random_logps(B, gen), ref.random_logps(B, gen))
    base_ref = ref.random_logps(B, gen)
    base_policy = ref.nearby(base_ref, gen, spread=0.4)  # drifts of both signs
    tokens = torch.randint(1, 30, (B,), generator=gen)
    return policy, reference, AnchorLogps(base_policy, base_ref, tokens)


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


@pytest.mark.parametrize(
    ("kind", "margin", "reduce", "anchor"),
    [
        ("hinge", 0.5, "sum", 1.5),  # Delta_b = -10 - (-8) = -2; max(0, 2 - 0.5) = 1.5
        ("hinge", 0.0, "mean", 0.5),  # Delta_b = -10/4 - (-8/4) = -0.5; max(0, 0.5) = 0.5
        ("abs", 0.5, "sum", 2.0),  # |-2| = 2 (margin ignored)
        ("sq", 0.0, "sum", 4.0),  # (-2)^2 = 4
        ("nll", 0.0, "sum", 10.0),  # -logp_theta(y_b) = 10
        ("nll", 0.0, "mean", 2.5),  # -(-10/4) = 2.5
        ("none", 0.0, "sum", 0.0),
    ],
)
def test_hand_derived_values(kind, margin, reduce, anchor):
    """DPO part as in test_dpo: policy (-1, -3), reference (-2, -2), beta 0.5 -> z = 1,
    L_DPO = log(1 + e^-1) = 0.3132616875. Anchor: logp_theta(y_b) = -10, logp_ref(y_b) = -8,
    |y_b| = 4 tokens, lambda = 0.2, so L = L_DPO + 0.2 * A with A per case (see parameters).
    """
    policy, reference = PairLogps(_t(-1.0), _t(-3.0)), PairLogps(_t(-2.0), _t(-2.0))
    anchors = AnchorLogps(_t(-10.0), _t(-8.0), torch.tensor([4]))
    out = bapo_loss(
        policy,
        reference,
        anchors,
        beta=0.5,
        anchor_type=kind,
        anchor_weight=0.2,
        anchor_margin=margin,
        anchor_reduce=reduce,
    )
    assert out.losses.item() == pytest.approx(math.log1p(math.exp(-1)) + 0.2 * anchor)
    assert out.metrics["anchor/term"].item() == pytest.approx(0.2 * anchor)
    assert out.metrics["anchor/active_frac"].item() == float(anchor > 0)
    assert out.metrics["anchor/delta"].item() == (-2.0 if reduce == "sum" else -0.5)


@pytest.mark.parametrize("kind", TYPES)
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@pytest.mark.parametrize(("margin", "weight", "smoothing"), [(0.0, 1.0, 0.0), (0.3, 0.5, 0.1)])
def test_matches_reference(kind, reduce, margin, weight, smoothing):
    policy, reference, anchors = _inputs(seed=TYPES.index(kind) + 10 * (reduce == "mean"))
    kw = {"beta": 0.1, "label_smoothing": smoothing}
    out = bapo_loss(
        policy,
        reference,
        anchors,
        **kw,
        anchor_type=kind,
        anchor_weight=weight,
        anchor_margin=margin,
        anchor_reduce=reduce,
    )
    columns = [
        policy.chosen,
        policy.rejected,
        reference.chosen,
        reference.rejected,
        anchors.policy,
        anchors.reference,
        anchors.tokens,
    ]
    expected = [
        ref.bapo(
            *row, beta=0.1, eps=smoothing, kind=kind, weight=weight, margin=margin, reduce=reduce
        )
        for row in zip(*(c.tolist() for c in columns), strict=True)
    ]
    assert_close(out.losses, torch.tensor(expected, dtype=torch.float64))
    dpo = dpo_loss(policy, reference, **kw)
    assert_close(out.losses, dpo.losses + out.metrics["anchor/term"])  # loss = dpo + term


@pytest.mark.parametrize(
    ("kind", "weight"), [("none", 1.0), ("none", 3.0)] + [(k, 0.0) for k in TYPES]
)
def test_none_or_zero_weight_is_dpo_elementwise(kind, weight):
    policy, reference, anchors = _inputs(seed=7)
    bapo = bapo_loss(policy, reference, anchors, anchor_type=kind, anchor_weight=weight)
    dpo = dpo_loss(policy, reference)
    assert torch.equal(bapo.losses, dpo.losses)
    for key, value in dpo.metrics.items():
        assert torch.equal(bapo.metrics[key], value), key


@pytest.mark.parametrize("margin", [0.0, 0.5, -0.5])
def test_hinge_is_one_sided_with_margin(margin):
    """A = max(0, -Delta_b - margin): zero (and no gradient) wherever Delta_b >= -margin,
    i.e. the base response may lose up to ``margin`` nats for free (a negative margin
    demands a gain); equal to -Delta_b - margin where it is active."""
    policy, reference, anchors = _inputs(seed=11)
    base = anchors.policy.clone().requires_grad_(True)
    out = bapo_loss(
        policy,
        reference,
        AnchorLogps(base, anchors.reference),
        anchor_margin=margin,
        anchor_weight=1.0,
    )
    out.losses.sum().backward()
    delta = anchors.policy - anchors.reference
    free = delta >= -margin
    assert free.any() and (~free).any()
    term = out.metrics["anchor/term"]
    assert torch.equal(term[free], torch.zeros_like(term[free]))
    assert torch.equal(base.grad[free], torch.zeros_like(base.grad[free]))
    assert_close(term[~free], -delta[~free] - margin)
    assert torch.equal(base.grad[~free], -torch.ones_like(base.grad[~free]))
    assert torch.equal(out.metrics["anchor/active_frac"], (~free).double())


def test_invalid_options_are_clear_errors():
    policy, reference, anchors = _inputs(seed=0)
    with pytest.raises(ValueError, match="hinge.*abs.*sq.*nll.*none"):
        bapo_loss(policy, reference, anchors, anchor_type="l2")
    with pytest.raises(ValueError, match="anchor_reduce"):
        bapo_loss(policy, reference, anchors, anchor_reduce="max")
    with pytest.raises(ValueError, match="tokens"):
        no_tokens = AnchorLogps(anchors.policy, anchors.reference)
        bapo_loss(policy, reference, no_tokens, anchor_reduce="mean")
    with pytest.raises(ValueError, match="anchor_weight"):
        bapo_loss(policy, reference, anchors, anchor_weight=-1.0)
