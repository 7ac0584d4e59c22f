"""MRPO: multi-reference preference optimisation (Le et al., AAAI 2025, arXiv 2405.16388).

``python -m bapo_exp method=mrpo method.ctro_eps=0.1``. references[0] is the main reference
(the policy's initial model); the others are scored with their own tokenizers (METHODS §4.1).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from bapo_exp.losses.dpo import _bradley_terry, _check_hparams, _reward_metrics
from bapo_exp.losses.types import LossOutput, PairLogps

EPS_SPLITS = ("adaptive", "fixed")
WEIGHT_ASSIGNMENTS = ("auto", "harmonic", "official_k2")
ARWC_EPS = 1e-6  # denominator guard of the ARWC weights, as in the official code


def _split_eps(chosen: Tensor, rejected: Tensor, eps: float, split: str) -> tuple[Tensor, Tensor]:
    """CTRO band widths (eps_w, eps_l), each (B,), from the unclipped (K, B) log-probs.

    ``adaptive`` (official code): ``s = |b_w| / (|b_w| + |b_l|)`` with ``b_y = mean_k l_k(y)``,
    ``eps_w = eps * s``, ``eps_l = eps * (1 - s)``; ``fixed``: ``eps_w = eps_l = eps``.
    """
    if split == "fixed":
        return torch.full_like(chosen[0], eps), torch.full_like(rejected[0], eps)
    b_w, b_l = chosen.mean(0).abs(), rejected.mean(0).abs()
    share = torch.where(b_w + b_l > 0, b_w / (b_w + b_l), 0.5)  # s, guarding 0/0
    return eps * share, eps * (1 - share)


def _ctro_clip(logps: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
    """CTRO (METHODS §4.2): clip references k >= 1 into ``[(1+eps) l_0, (1-eps) l_0]``.

    Args:
        logps: unclipped reference log-probs ``l_k(y)``, shape (K, B); row 0 is the main one.
        eps: per-example band half-width, shape (B,).

    Returns:
        Clipped log-probs ``l^_k(y)`` (K, B) (row 0 unchanged) and a (K, B) clipped mask.
    """
    main = logps[0]
    a, b = (1 + eps) * main, (1 - eps) * main
    low, high = torch.minimum(a, b), torch.maximum(a, b)  # low = (1+eps) l_0 when l_0 <= 0
    clipped = torch.maximum(torch.minimum(logps, high), low)
    clipped = torch.cat([main[None], clipped[1:]])
    mask = (logps < low) | (logps > high)
    mask[0] = False
    return clipped, mask


def _weights(chosen: Tensor, rejected: Tensor, weights: Sequence[float] | None) -> Tensor:
    """ARWC adaptive weights (METHODS §4.3) or fixed normalised ones, shape (K, B).

    ``alpha_k = |l_k(y_w) - l_k(y_l)| / (sum_j |l_j(y_w) - l_j(y_l)| + 1e-6)`` from the unclipped
    (K, B) log-probs. Where every reference has a zero margin (all alpha_k = 0, an undefined
    virtual reference) the weights fall back to uniform: a numerical guard, a design choice,
    not the paper's.
    """
    if weights is not None:
        w = torch.as_tensor(weights, dtype=chosen.dtype, device=chosen.device)
        if w.shape != chosen.shape[:1] or (w < 0).any() or not w.sum() > 0:
            raise ValueError(f"weights must be K={len(chosen)} non-negative numbers, got {weights}")
        return (w / w.sum())[:, None].expand_as(chosen)
    gaps = (chosen - rejected).abs()
    total = gaps.sum(0, keepdim=True)
    return torch.where(total > 0, gaps / (total + ARWC_EPS), 1.0 / len(chosen))


def _virtual_reference(clipped: Tensor, alpha: Tensor) -> Tensor:
    """Weighted harmonic mean of probabilities ``-logsumexp_k(log alpha_k - l^_k)``: (K,B)->(B,)."""
    return -torch.logsumexp(alpha.log() - clipped, dim=0)


def check_ctro(ctro_eps: float, eps_split: str) -> None:
    """CTRO's band and its split (MRPO, and DPO against the rescaled reference)."""
    if not ctro_eps >= 0:
        raise ValueError(f"ctro_eps must be >= 0, got {ctro_eps}")
    if eps_split not in EPS_SPLITS:
        raise ValueError(f"unknown eps_split {eps_split!r}; valid: {list(EPS_SPLITS)}")


def _check_mrpo(k: int, ctro_eps: float, eps_split: str, weight_assignment: str) -> None:
    if k < 2:
        raise ValueError(f"mrpo_loss needs K >= 2 references (main first), got {k}")
    check_ctro(ctro_eps, eps_split)
    if weight_assignment not in WEIGHT_ASSIGNMENTS:
        raise ValueError(
            f"unknown weight_assignment {weight_assignment!r}; valid: {list(WEIGHT_ASSIGNMENTS)}"
        )
    if weight_assignment == "official_k2" and k != 2:
        raise ValueError(f'weight_assignment="official_k2" needs exactly K=2 references, got {k}')


def mrpo_loss(
    policy: PairLogps,
    references: Sequence[PairLogps],
    *,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    ctro_eps: float = 0.1,
    eps_split: str = "adaptive",
    weights: Sequence[float] | None = None,
    weight_assignment: str = "auto",
) -> LossOutput:
    """MRPO loss: DPO against a virtual reference built from K references (METHODS §4).

    CTRO clips ``l_k`` (k >= 1) into ``[(1+eps_y) l_0, (1-eps_y) l_0]`` separately for y_w and
    y_l (``_split_eps``). ARWC weights alpha (or fixed ``weights``) give the virtual reference
    ``log pi~(y) = -logsumexp_k(log alpha_k - l^_k(y))``, and the loss is DPO with ``log pi~``
    in place of ``logp_ref`` (Le et al. 2025, arXiv 2405.16388, CTRO and ARWC).
    ``weight_assignment="official_k2"`` swaps the two weights, as the official K=2 code does;
    ``harmonic`` keeps them on their own references (our reading, the only form for K > 2:
    design). ``auto`` (default) is ``official_k2`` for K=2 and ``harmonic`` for K > 2.

    Args:
        policy: policy log-probs of y_w and y_l, each (B,).
        references: K >= 2 reference log-probs, each (B,); references[0] is the main one.
        beta: DPO temperature.
        label_smoothing: cDPO flip rate in [0, 0.5).
        ctro_eps: CTRO band eps >= 0; 0 gives DPO against references[0].
        eps_split: ``adaptive`` or ``fixed``.
        weights: None for ARWC adaptive weights, else K fixed non-negative weights (normalised).
        weight_assignment: ``auto``, ``harmonic`` or ``official_k2``.

    Returns:
        Per-example losses (B,) and detached (B,) metrics: ``rewards/*`` against the main
        reference (comparable across methods), ``logps/*``, ``mrpo/alpha_{k}`` (weight applied
        to reference k, k >= 0), ``mrpo/clip_frac_{k}`` (k >= 1, share of y_w, y_l clipped),
        ``mrpo/virtual_margin`` (``log pi~(y_w) - log pi~(y_l)``), ``mrpo/rewards_margin`` and
        ``mrpo/rewards_accuracy`` (against the virtual reference, as the loss sees it).
    """
    _check_hparams(beta, label_smoothing)
    _check_mrpo(len(references), ctro_eps, eps_split, weight_assignment)
    chosen = torch.stack([r.chosen for r in references])  # (K, B)
    rejected = torch.stack([r.rejected for r in references])
    eps_w, eps_l = _split_eps(chosen, rejected, ctro_eps, eps_split)
    clip_w, mask_w = _ctro_clip(chosen, eps_w)
    clip_l, mask_l = _ctro_clip(rejected, eps_l)
    alpha = _weights(chosen, rejected, weights)
    if weight_assignment == "auto":
        weight_assignment = "official_k2" if len(references) == 2 else "harmonic"
    if weight_assignment == "official_k2":
        alpha = alpha.flip(0)
    virtual_w, virtual_l = _virtual_reference(clip_w, alpha), _virtual_reference(clip_l, alpha)
    margin = beta * ((policy.chosen - virtual_w) - (policy.rejected - virtual_l))
    metrics = _reward_metrics(
        policy.chosen - chosen[0], policy.rejected - rejected[0], policy, beta
    )
    for k in range(len(references)):
        metrics[f"mrpo/alpha_{k}"] = alpha[k].detach()
        if k:
            metrics[f"mrpo/clip_frac_{k}"] = (mask_w[k].to(margin.dtype) + mask_l[k]) / 2
    metrics["mrpo/virtual_margin"] = (virtual_w - virtual_l).detach()
    metrics["mrpo/rewards_margin"] = margin.detach()
    metrics["mrpo/rewards_accuracy"] = (margin > 0).to(margin.dtype)
    return LossOutput(_bradley_terry(margin, label_smoothing), metrics)
