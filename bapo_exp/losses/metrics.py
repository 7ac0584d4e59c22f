"""Method-independent per-example metrics (METHODS §6), measured against the MAIN reference.

The train and eval stages log these for every method, so DPO, BAPO and MRPO are compared on
the same scale (MRPO's own reward accuracy uses a virtual reference and is logged apart).
"""

from __future__ import annotations

from torch import Tensor

from bapo_exp.losses.types import AnchorLogps, PairLogps


def pair_metrics(policy: PairLogps, reference: PairLogps, beta: float) -> dict[str, Tensor]:
    """Preference accuracy, reward margin and drifts against the main reference.

    Args:
        policy: policy log-probs of y_w and y_l, each (B,) (token counts optional).
        reference: the MAIN reference's log-probs, each (B,).
        beta: scale of the implicit reward ``beta * (logp_theta - logp_ref)``.

    Returns:
        Detached (B,) tensors: ``pref_acc`` (1.0 where ``r(y_w) > r(y_l)``), ``reward_margin``
        (``beta * (r(y_w) - r(y_l))``), ``drift/chosen``, ``drift/rejected``
        (``logp_theta - logp_ref``, summed) and, when token counts are given (the policy's,
        else the reference's), ``drift/chosen_per_token`` and ``drift/rejected_per_token``.
    """
    chosen = (policy.chosen - reference.chosen).detach()
    rejected = (policy.rejected - reference.rejected).detach()
    out = {
        "pref_acc": (chosen > rejected).to(chosen.dtype),
        "reward_margin": beta * (chosen - rejected),
        "drift/chosen": chosen,
        "drift/rejected": rejected,
    }
    for name, drift, mine, theirs in (
        ("chosen", chosen, policy.chosen_tokens, reference.chosen_tokens),
        ("rejected", rejected, policy.rejected_tokens, reference.rejected_tokens),
    ):
        tokens = mine if mine is not None else theirs
        if tokens is not None:
            out[f"drift/{name}_per_token"] = drift / tokens
    return out


def anchor_drift(anchors: AnchorLogps) -> dict[str, Tensor]:
    """Drift of the base response y_b: ``drift/base`` and ``drift/base_per_token``, each (B,).

    Args:
        anchors: policy and reference log-probs of y_b, each (B,); ``tokens`` (B,) optional.

    Returns:
        Detached (B,) tensors; ``drift/base_per_token`` only when ``anchors.tokens`` is set.
    """
    drift = (anchors.policy - anchors.reference).detach()
    out = {"drift/base": drift}
    if anchors.tokens is not None:
        out["drift/base_per_token"] = drift / anchors.tokens
    return out
