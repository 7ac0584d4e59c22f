"""The control of the several-references claim (issue 17): DPO against a rescaled main reference.

``python -m bapo_exp method=dpo_rescaled method.ctro_eps=0.1``

When CTRO clips an extra reference to the lower edge of its band (its log-prob is below
``(1+eps_y) l_0(y)``, METHODS §4.4: the usual case for a genuinely different model), MRPO's
virtual reference is built from ``l_0`` and ``(1+eps_y) l_0`` only. This loss is DPO against
``(1+eps_y) l_0(y)`` alone, so a study can ask whether MRPO's effect is anything more than that
rescaling (design: ours, not the MRPO paper's). ``eps_y`` is split as in MRPO, from the main
reference alone (K = 1).
"""

from __future__ import annotations

from bapo_exp.losses.dpo import _bradley_terry, _check_hparams, _reward_metrics
from bapo_exp.losses.mrpo import _split_eps, check_ctro
from bapo_exp.losses.types import LossOutput, PairLogps


def dpo_rescaled_loss(
    policy: PairLogps,
    reference: PairLogps,
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    ctro_eps: float = 0.1,
    eps_split: str = "adaptive",
) -> LossOutput:
    """DPO with ``logp_ref(y)`` replaced by ``(1 + eps_y) logp_ref(y)`` (see the module).

    Args:
        policy: policy log-probs of y_w and y_l, each (B,).
        reference: main-reference log-probs of y_w and y_l, each (B,).
        beta, label_smoothing: as in DPO.
        ctro_eps: the band eps >= 0; 0 gives exactly DPO.
        eps_split: ``adaptive`` (``eps_w = eps s``, ``eps_l = eps (1 - s)``,
            ``s = |l_0(y_w)| / (|l_0(y_w)| + |l_0(y_l)|)``) or ``fixed`` (``eps`` for both).

    Returns:
        Per-example losses (B,); ``rewards/*`` against the unscaled main reference (comparable
        across methods) and ``rescaled/rewards_margin`` against the rescaled one.
    """
    _check_hparams(beta, label_smoothing)
    check_ctro(ctro_eps, eps_split)
    eps_w, eps_l = _split_eps(reference.chosen[None], reference.rejected[None], ctro_eps, eps_split)
    chosen_ratio = policy.chosen - (1 + eps_w) * reference.chosen
    rejected_ratio = policy.rejected - (1 + eps_l) * reference.rejected
    margin = beta * (chosen_ratio - rejected_ratio)
    metrics = _reward_metrics(
        policy.chosen - reference.chosen, policy.rejected - reference.rejected, policy, beta
    )
    metrics["rescaled/rewards_margin"] = margin.detach()
    return LossOutput(_bradley_terry(margin, label_smoothing), metrics)
