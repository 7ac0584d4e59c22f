"""Preference losses: pure functions of per-sequence log-probs, and the method registry.

The train stage looks a method up with ``LOSSES.require(cfg.method.name)`` and calls
``spec.fn(policy=..., reference=refs[0] | references=refs, [anchors=...],
**cfg.method.loss_kwargs())``; the ``LossSpec`` flags say what it must compute, so no code
compares method names. A new method is a pure loss function, a ``LossSpec`` registered here
(or from a plug-in: ``LOSSES.register(name, spec)``) and a method config (``conf/method``).
This package imports only torch, the standard library and ``bapo_exp.registry``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bapo_exp.losses.bapo import bapo_loss
from bapo_exp.losses.dpo import dpo_loss
from bapo_exp.losses.ipo import ipo_loss
from bapo_exp.losses.metrics import anchor_drift, pair_metrics
from bapo_exp.losses.mrpo import mrpo_loss
from bapo_exp.losses.rescaled import dpo_rescaled_loss
from bapo_exp.losses.types import AnchorLogps, LossOutput, PairLogps
from bapo_exp.registry import Registry


@dataclass(frozen=True)
class LossSpec:
    """A method's loss and what the training loop must compute for it.

    Attributes:
        fn: the loss function, returning ``LossOutput``; None for a method that trains nothing
            (``none``: the untrained base model, evaluated as the forgetting baseline).
        needs_reference: pass ``reference`` (or ``references``) log-probs.
        needs_anchors: pass ``anchors`` (BAPO base responses y_b).
        multi_reference: pass ``references`` (K >= 2, main first) instead of ``reference``.
        needs_token_counts: ``PairLogps.*_tokens`` must be filled.
        length_normalised: the loss divides by response length itself (IPO), so a per-token
            ``reference.reduce=mean`` would divide twice (METHODS §2): refused at validation.
    """

    fn: Callable[..., LossOutput] | None
    needs_reference: bool = True
    needs_anchors: bool = False
    multi_reference: bool = False
    needs_token_counts: bool = False
    length_normalised: bool = False

    @property
    def trains(self) -> bool:
        return self.fn is not None

    @property
    def min_references(self) -> int:
        """References the method needs, the main one included."""
        return 2 if self.multi_reference else 1


LOSSES: Registry[LossSpec] = Registry("method", config_key="method.name")
LOSSES.register("none", LossSpec(None, needs_reference=False))
LOSSES.register("dpo", LossSpec(dpo_loss))
LOSSES.register("ipo", LossSpec(ipo_loss, needs_token_counts=True, length_normalised=True))
LOSSES.register("bapo", LossSpec(bapo_loss, needs_anchors=True))
LOSSES.register("mrpo", LossSpec(mrpo_loss, multi_reference=True))
LOSSES.register("dpo_rescaled", LossSpec(dpo_rescaled_loss))  # MRPO's control (issue 17)


def get_loss(name: str) -> LossSpec:
    """The registered ``LossSpec`` for ``name``; KeyError naming the valid methods."""
    return LOSSES.require(name)


__all__ = [
    "LOSSES",
    "AnchorLogps",
    "LossOutput",
    "LossSpec",
    "PairLogps",
    "anchor_drift",
    "bapo_loss",
    "dpo_loss",
    "dpo_rescaled_loss",
    "get_loss",
    "ipo_loss",
    "mrpo_loss",
    "pair_metrics",
]
