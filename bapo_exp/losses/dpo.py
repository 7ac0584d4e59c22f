"""DPO (Rafailov et al. 2023, arXiv 2305.18290) and the Bradley-Terry core shared by the family.

Used by the train stage through ``bapo_exp.losses.LOSSES["dpo"]``:
``python -m bapo_exp method=dpo``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from bapo_exp.losses.types import LossOutput, PairLogps


def _check_hparams(beta: float, label_smoothing: float = 0.0) -> None:
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")


def _bradley_terry(logits: Tensor, label_smoothing: float) -> Tensor:
    """Negative Bradley-Terry log-likelihood, with cDPO label smoothing.

    ``-(1 - eps) log sigmoid(z) - eps log sigmoid(-z)`` (DPO Eq. 7; cDPO, Mitchell 2023).

    Args:
        logits: ``z = beta * (r(y_w) - r(y_l))``, shape (B,).
        label_smoothing: assumed preference-flip rate eps in [0, 0.5).

    Returns:
        Per-example losses, shape (B,).
    """
    losses = -F.logsigmoid(logits)
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * F.logsigmoid(-logits)
    return losses


def _reward_metrics(
    chosen_ratio: Tensor, rejected_ratio: Tensor, policy: PairLogps, beta: float
) -> dict[str, Tensor]:
    """Detached (B,) metrics: implicit rewards ``beta * ratio`` and the policy's log-probs.

    Args:
        chosen_ratio: log-ratio ``logp_theta(y_w) - logp_ref(y_w)`` (or a normalised one), (B,).
        rejected_ratio: the same for y_l, (B,).
        policy: policy log-probs, each (B,), logged as ``logps/*``.
        beta: the loss's beta.
    """
    chosen = beta * chosen_ratio
    rejected = beta * rejected_ratio
    metrics = {
        "rewards/chosen": chosen,
        "rewards/rejected": rejected,
        "rewards/margin": chosen - rejected,
        "rewards/accuracy": (chosen > rejected).to(chosen.dtype),
        "logps/chosen": policy.chosen,
        "logps/rejected": policy.rejected,
    }
    return {k: v.detach() for k, v in metrics.items()}


def dpo_loss(
    policy: PairLogps,
    reference: PairLogps,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
) -> LossOutput:
    """DPO loss (Rafailov et al. 2023, Eq. 7); conservative cDPO via ``label_smoothing``.

    ``r(y) = logp_theta(y|x) - logp_ref(y|x)``, ``z = beta * (r(y_w) - r(y_l))``,
    ``L = -(1 - eps) log sigmoid(z) - eps log sigmoid(-z)`` (METHODS §2).

    Args:
        policy: policy log-probs of y_w and y_l, each (B,).
        reference: reference log-probs of y_w and y_l, each (B,).
        beta: KL temperature; larger keeps the policy closer to the reference.
        label_smoothing: assumed preference-flip rate eps in [0, 0.5); 0 gives plain DPO.

    Returns:
        Per-example losses (B,) and detached (B,) metrics ``rewards/{chosen,rejected,margin,
        accuracy}`` and ``logps/{chosen,rejected}``.
    """
    _check_hparams(beta, label_smoothing)
    chosen_ratio = policy.chosen - reference.chosen
    rejected_ratio = policy.rejected - reference.rejected
    losses = _bradley_terry(beta * (chosen_ratio - rejected_ratio), label_smoothing)
    return LossOutput(losses, _reward_metrics(chosen_ratio, rejected_ratio, policy, beta))
