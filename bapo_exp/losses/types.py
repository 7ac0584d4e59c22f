"""Typed inputs and outputs of the loss functions (METHODS §1: losses see (B,) log-probs only).

Every loss in ``bapo_exp.losses`` takes per-sequence log-probabilities, never logits or token
ids, so references with other tokenizers can take part (METHODS §4.1). Build them with
``bapo_exp.modeling.logps.sequence_logps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import Tensor


@dataclass(frozen=True)
class PairLogps:
    """Log-probabilities of the chosen (y_w) and rejected (y_l) responses under one model.

    Attributes:
        chosen: summed response log-probs ``log pi(y_w|x)``, shape (B,).
        rejected: summed response log-probs ``log pi(y_l|x)``, shape (B,).
        chosen_tokens: response token counts |y_w|, shape (B,); needed by IPO.
        rejected_tokens: response token counts |y_l|, shape (B,); needed by IPO.
    """

    chosen: Tensor
    rejected: Tensor
    chosen_tokens: Tensor | None = None
    rejected_tokens: Tensor | None = None


@dataclass(frozen=True)
class AnchorLogps:
    """Log-probabilities of BAPO's base responses y_b (METHODS §3).

    Attributes:
        policy: ``logp_theta(y_b|x)``, summed, shape (B,); carries the gradient.
        reference: ``logp_ref(y_b|x)``, summed, shape (B,); a constant (precomputed).
        tokens: token counts |y_b|, shape (B,); needed by ``anchor_reduce="mean"``.
    """

    policy: Tensor
    reference: Tensor
    tokens: Tensor | None = None


class LossOutput(NamedTuple):
    """What every loss returns.

    Attributes:
        losses: per-example losses, shape (B,); the caller reduces (``.mean()``).
        metrics: detached per-example metrics, each shape (B,), so callers can average them
            exactly across micro-batches and processes.
    """

    losses: Tensor
    metrics: dict[str, Tensor]
