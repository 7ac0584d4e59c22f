"""Preference losses: pure functions of per-sequence log-probs, and the method registry.

The train stage looks a method up with ``get_loss(cfg.method.name)`` and calls
``spec.fn(policy=..., reference=refs[0] | references=refs, [anchors=...],
**cfg.method.loss_kwargs())``; the ``LossSpec`` flags say what it must compute.
This package imports only torch and the standard library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bapo_exp.losses.bapo import bapo_loss
from bapo_exp.losses.dpo import dpo_loss
from bapo_exp.losses.ipo import ipo_loss
from bapo_exp.losses.metrics import anchor_drift, pair_metrics
from bapo_exp.losses.mrpo import mrpo_loss
from bapo_exp.losses.types import AnchorLogps, LossOutput, PairLogps


@dataclass(frozen=True)
class LossSpec:
    """A method's loss and what the training loop must compute for it.

    Attributes:
        fn: the loss function, returning ``LossOutput``.
        needs_reference: pass ``reference`` (or ``references``) log-probs.
        needs_anchors: pass ``anchors`` (BAPO base responses y_b).
        multi_reference: pass ``references`` (K >= 2, main first) instead of ``reference``.
        needs_token_counts: ``PairLogps.*_tokens`` must be filled.
    """

    fn: Callable[..., LossOutput]
    needs_reference: bool = True
    needs_anchors: bool = False
    multi_reference: bool = False
    needs_token_counts: bool = False


LOSSES: dict[str, LossSpec] = {
    "dpo": LossSpec(dpo_loss),
    "ipo": LossSpec(ipo_loss, needs_token_counts=True),
    "bapo": LossSpec(bapo_loss, needs_anchors=True),
    "mrpo": LossSpec(mrpo_loss, multi_reference=True),
}


def get_loss(name: str) -> LossSpec:
    """The registered ``LossSpec`` for ``name``; KeyError listing the available names."""
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; available: {sorted(LOSSES)}") from None


__all__ = [
    "LOSSES",
    "AnchorLogps",
    "LossOutput",
    "LossSpec",
    "PairLogps",
    "anchor_drift",
    "bapo_loss",
    "dpo_loss",
    "get_loss",
    "ipo_loss",
    "mrpo_loss",
    "pair_metrics",
]
