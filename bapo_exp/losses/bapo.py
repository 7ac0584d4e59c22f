"""BAPO: base-anchored preference optimisation (Lee et al., Findings EMNLP 2024, arXiv 2407.00693).

``python -m bapo_exp method=bapo method.anchor.type=hinge method.anchor.weight=1.0``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from bapo_exp.losses.dpo import dpo_loss
from bapo_exp.losses.types import AnchorLogps, LossOutput, PairLogps

# A(Delta_b, logp_theta(y_b), margin): the anchor penalties of METHODS §3 (design choices).
ANCHORS: dict[str, Callable[[Tensor, Tensor, float], Tensor]] = {
    "hinge": lambda delta, logp, margin: torch.relu(-delta - margin),
    "abs": lambda delta, logp, margin: delta.abs(),
    "sq": lambda delta, logp, margin: delta.square(),
    "nll": lambda delta, logp, margin: -logp,
    "none": lambda delta, logp, margin: torch.zeros_like(delta),
}
REDUCES = ("sum", "mean")


def _anchor_logps(anchors: AnchorLogps, reduce: str) -> tuple[Tensor, Tensor]:
    """(policy, reference) base-response log-probs, summed or per token, each (B,)."""
    if reduce not in REDUCES:
        raise ValueError(f"unknown anchor_reduce {reduce!r}; valid: {list(REDUCES)}")
    if reduce == "sum":
        return anchors.policy, anchors.reference
    if anchors.tokens is None:
        raise ValueError('anchor_reduce="mean" needs AnchorLogps.tokens (base-response lengths)')
    return anchors.policy / anchors.tokens, anchors.reference / anchors.tokens


def bapo_loss(
    policy: PairLogps,
    reference: PairLogps,
    anchors: AnchorLogps,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    anchor_type: str = "hinge",
    anchor_weight: float = 1.0,
    anchor_margin: float = 0.0,
    anchor_reduce: str = "sum",
) -> LossOutput:
    """BAPO loss ``L_DPO + lambda * A(Delta_b)`` (METHODS §3; Lee et al. 2024, arXiv 2407.00693).

    ``Delta_b = logp_theta(y_b|x) - logp_ref(y_b|x)`` on the reference model's own (base)
    response y_b. The anchor forms are a design choice, not the paper's (METHODS §3):
    ``hinge`` ``max(0, -Delta_b - margin)`` (default), ``abs`` ``|Delta_b|``, ``sq``
    ``Delta_b^2``, ``nll`` ``-logp_theta(y_b|x)`` (rehearsal ablation), ``none`` (exactly DPO).

    Args:
        policy: policy log-probs of y_w and y_l, each (B,).
        reference: reference log-probs of y_w and y_l, each (B,).
        anchors: policy and reference log-probs of y_b, each (B,) (+ ``tokens`` for "mean").
        beta: DPO temperature.
        label_smoothing: cDPO flip rate of the DPO term, in [0, 0.5).
        anchor_type: one of ``hinge | abs | sq | nll | none``.
        anchor_weight: lambda >= 0; 0 gives DPO elementwise.
        anchor_margin: hinge margin delta in nats (ignored by the other types).
        anchor_reduce: ``sum`` or ``mean`` (log-probs of y_b divided by |y_b|; design choice,
            not the paper's).

    Returns:
        Per-example losses (B,) and detached (B,) metrics: DPO's, plus ``anchor/term``
        (``lambda * A``, so ``loss = dpo + anchor/term``), ``anchor/active_frac`` (1.0 where
        ``A > 0``) and ``anchor/delta`` (Delta_b after the reduce).

    Raises:
        ValueError: on an unknown ``anchor_type``/``anchor_reduce`` or a negative weight.
    """
    if anchor_type not in ANCHORS:
        raise ValueError(f"unknown anchor_type {anchor_type!r}; valid: {list(ANCHORS)}")
    if not anchor_weight >= 0:
        raise ValueError(f"anchor_weight must be >= 0, got {anchor_weight}")
    dpo = dpo_loss(policy, reference, beta=beta, label_smoothing=label_smoothing)
    logp, ref_logp = _anchor_logps(anchors, anchor_reduce)
    delta = logp - ref_logp
    penalty = ANCHORS[anchor_type](delta, logp, anchor_margin)
    term = anchor_weight * penalty
    metrics = dict(dpo.metrics)
    metrics["anchor/term"] = term.detach()
    metrics["anchor/active_frac"] = (penalty > 0).to(delta.dtype)
    metrics["anchor/delta"] = delta.detach()
    return LossOutput(dpo.losses + term, metrics)
