"""Properties every registered loss must have, parametrised over ``LOSSES`` (STYLE §16).

Per-example losses and metrics of shape (B,), no reduction across the batch, float64
gradcheck, finite values and gradients at extreme log-probs, monotonicity in the policy's
log-probs and the chosen/rejected swap relation.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.testing import assert_close

from bapo_exp.losses import LOSSES, AnchorLogps, PairLogps

from . import reference as ref

CONFIGS = [
    ("dpo", {}),
    ("dpo", {"label_smoothing": 0.1}),
    ("ipo", {"beta": 0.5}),
    ("bapo", {}),
    ("bapo", {"anchor_type": "sq", "anchor_reduce": "mean", "label_smoothing": 0.1}),
    ("bapo", {"anchor_type": "nll", "anchor_weight": 0.3}),
    ("bapo", {"anchor_type": "abs", "anchor_margin": 1.0}),
    ("dpo_rescaled", {}),
    ("dpo_rescaled", {"ctro_eps": 0.5, "eps_split": "fixed", "label_smoothing": 0.1}),
    ("mrpo", {"weight_assignment": "harmonic"}),  # the fixture has K=3 references
    (
        "mrpo",
        {
            "eps_split": "fixed",
            "weights": [1.0, 2.0, 1.0],
            "label_smoothing": 0.1,
            "weight_assignment": "harmonic",
        },
    ),
]
IDS = [f"{name}-{i}" for i, (name, _) in enumerate(CONFIGS)]


def _inputs(name, seed=0, n=8, policy_at=(0.5, 40.0), ref_at=(0.5, 40.0), dtype=torch.float64):
    """Keyword arguments for ``LOSSES[name].fn`` (as the train loop builds them) and the
    policy leaves that carry gradients."""
    spec = LOSSES[name]
    gen = torch.Generator().manual_seed(seed)

    def logps(span, grad=False):
        return ref.random_logps(n, gen, *span).to(dtype).requires_grad_(grad)

    def counts():
        return torch.randint(1, 50, (n,), generator=gen)

    policy = PairLogps(logps(policy_at, True), logps(policy_at, True), counts(), counts())
    main = PairLogps(logps(ref_at), logps(ref_at))
    kwargs = {"policy": policy}
    leaves = [policy.chosen, policy.rejected]
    if spec.multi_reference:
        nearby = [PairLogps(ref.nearby(main.chosen, gen), ref.nearby(main.rejected, gen))]
        kwargs["references"] = [main, *nearby, *nearby]  # K = 3
    else:
        kwargs["reference"] = main
    if spec.needs_anchors:
        kwargs["anchors"] = AnchorLogps(logps(policy_at, True), logps(ref_at), counts())
        leaves.append(kwargs["anchors"].policy)
    return kwargs, leaves


def _map(kwargs, fn):
    """Apply ``fn`` to every tensor inside the PairLogps/AnchorLogps arguments."""

    def one(value):
        if isinstance(value, list):
            return [one(v) for v in value]
        changes = {
            f.name: fn(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None
        }
        return dataclasses.replace(value, **changes)

    return {key: one(value) for key, value in kwargs.items()}


def _swap(kwargs):
    def one(value):
        if isinstance(value, list):
            return [one(v) for v in value]
        if isinstance(value, PairLogps):
            return PairLogps(
                value.rejected, value.chosen, value.rejected_tokens, value.chosen_tokens
            )
        return value

    return {key: one(value) for key, value in kwargs.items()}


def test_every_registered_loss_is_covered():
    assert {name for name, _ in CONFIGS} == {n for n, spec in LOSSES.items() if spec.trains}


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=IDS)
def test_per_example_shapes_and_detached_metrics(name, hp):
    kwargs, _ = _inputs(name, n=8)
    out = LOSSES[name].fn(**kwargs, **hp)
    assert out.losses.shape == (8,) and out.losses.requires_grad
    assert {"rewards/chosen", "rewards/margin", "rewards/accuracy", "logps/chosen"} <= set(
        out.metrics
    )
    for key, value in out.metrics.items():
        assert value.shape == (8,), key
        assert not value.requires_grad, key
        assert torch.isfinite(value).all(), key


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=IDS)
def test_no_reduction_across_the_batch(name, hp):
    """Each example's loss and metrics depend on that example only."""
    kwargs, _ = _inputs(name, seed=1, n=6)
    batch = LOSSES[name].fn(**kwargs, **hp)
    for i in range(6):
        single = LOSSES[name].fn(**_map(kwargs, lambda t, i=i: t[i : i + 1]), **hp)
        assert_close(single.losses, batch.losses[i : i + 1])
        for key, value in single.metrics.items():
            assert_close(value, batch.metrics[key][i : i + 1], msg=key)


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=IDS)
def test_gradcheck_float64(name, hp):
    kwargs, leaves = _inputs(name, seed=2, n=4)

    def fn(*tensors):
        swap = dict(zip(map(id, leaves), tensors, strict=True))
        replaced = _map(kwargs, lambda t: swap.get(id(t), t))
        return LOSSES[name].fn(**replaced, **hp).losses

    assert torch.autograd.gradcheck(fn, tuple(leaves))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=IDS)
def test_finite_at_extreme_logps(name, hp, dtype):
    """Policy log-probs ~ -1e4 against references near -1 (and the reverse): |z| ~ 1e3."""
    for policy_at, ref_at in [((9.9e3, 1.0e4), (0.5, 2.0)), ((0.5, 2.0), (9.9e3, 1.0e4))]:
        kwargs, leaves = _inputs(name, seed=3, policy_at=policy_at, ref_at=ref_at, dtype=dtype)
        out = LOSSES[name].fn(**kwargs, **hp)
        out.losses.sum().backward()
        assert torch.isfinite(out.losses).all()
        assert all(torch.isfinite(leaf.grad).all() for leaf in leaves)
        assert all(torch.isfinite(v).all() for v in out.metrics.values())


MONOTONE = [(n, hp) for n, hp in CONFIGS if n != "ipo" and not hp.get("label_smoothing")]


@pytest.mark.parametrize(("name", "hp"), MONOTONE)
def test_raising_chosen_never_hurts(name, hp):
    """Without label smoothing, d L / d logp_theta(y_w) <= 0 <= d L / d logp_theta(y_l).
    (IPO is excluded by design: it penalises overshooting its target margin, test_ipo.)"""
    kwargs, _ = _inputs(name, seed=4, n=32)
    LOSSES[name].fn(**kwargs, **hp).losses.sum().backward()
    assert (kwargs["policy"].chosen.grad <= 0).all()
    assert (kwargs["policy"].rejected.grad >= 0).all()


def _swap_gap(name, hp, metrics):
    """Expected loss(swapped) - loss.

    Bradley-Terry losses: L(z) = softplus(-z) + eps z, so L(-z) - L(z) = (1 - 2 eps) z, i.e.
    -z = L(z) - L(-z) without smoothing (the anchor term does not change). IPO: with
    c = 1/(2 beta), (-h - c)^2 - (h - c)^2 = 4 h c, where h = margin / beta.
    """
    beta = hp.get("beta", 0.1)
    if name == "ipo":
        return 4 * (metrics["rewards/margin"] / beta) / (2 * beta)
    own = {"mrpo": "mrpo/rewards_margin", "dpo_rescaled": "rescaled/rewards_margin"}
    z = metrics[own.get(name, "rewards/margin")]  # the margin the loss itself sees
    return (1 - 2 * hp.get("label_smoothing", 0.0)) * z


@pytest.mark.parametrize(("name", "hp"), CONFIGS, ids=IDS)
def test_swapping_chosen_and_rejected(name, hp):
    kwargs, _ = _inputs(name, seed=5, n=16)
    out = LOSSES[name].fn(**kwargs, **hp)
    swapped = LOSSES[name].fn(**_swap(kwargs), **hp)
    assert_close(swapped.losses - out.losses, _swap_gap(name, hp, out.metrics))
    assert_close(swapped.metrics["rewards/accuracy"], 1 - out.metrics["rewards/accuracy"])
