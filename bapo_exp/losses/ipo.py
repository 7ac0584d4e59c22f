"""IPO (Azar et al. 2023, arXiv 2310.12036) with length-normalised log-ratios (METHODS §2).

``python -m bapo_exp method=ipo``.
"""

from __future__ import annotations

from torch import Tensor

from bapo_exp.losses.dpo import _check_hparams, _reward_metrics
from bapo_exp.losses.types import LossOutput, PairLogps


def _token_counts(policy: PairLogps, reference: PairLogps) -> tuple[Tensor, Tensor]:
    chosen = policy.chosen_tokens if policy.chosen_tokens is not None else reference.chosen_tokens
    rejected = (
        policy.rejected_tokens if policy.rejected_tokens is not None else reference.rejected_tokens
    )
    if chosen is None or rejected is None:
        raise ValueError(
            "ipo_loss needs response token counts: set PairLogps.chosen_tokens and "
            "rejected_tokens (the n_tokens returned by sequence_logps)"
        )
    return chosen, rejected


def ipo_loss(policy: PairLogps, reference: PairLogps, *, beta: float = 0.1) -> LossOutput:
    """IPO loss (Azar et al. 2023, Eq. 17) on per-token log-ratios.

    ``h = r(y_w)/|y_w| - r(y_l)/|y_l|`` with ``r = logp_theta - logp_ref``;
    ``L = (h - 1/(2 beta))^2``. The length normalisation follows METHODS §2 (as in the DPO
    repo and TRL); the paper states the loss on summed log-ratios.

    Args:
        policy: policy log-probs, each (B,); ``chosen_tokens``/``rejected_tokens`` (B,) are
            used (falling back to the reference's counts). Counts must be >= 1.
        reference: reference log-probs, each (B,).
        beta: regularisation strength tau; the target margin is ``1/(2 beta)``.

    Returns:
        Per-example losses (B,) and detached (B,) metrics. ``rewards/*`` use the
        length-normalised log-ratios ``beta * r(y)/|y|`` that the loss sees; ``logps/*`` are
        the summed policy log-probs.

    Raises:
        ValueError: if token counts are missing or ``beta <= 0``.
    """
    _check_hparams(beta)
    n_chosen, n_rejected = _token_counts(policy, reference)
    chosen = (policy.chosen - reference.chosen) / n_chosen
    rejected = (policy.rejected - reference.rejected) / n_rejected
    losses = (chosen - rejected - 1.0 / (2.0 * beta)) ** 2  # Eq. 17 of arXiv 2310.12036
    return LossOutput(losses, _reward_metrics(chosen, rejected, policy, beta))
