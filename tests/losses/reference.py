"""Naive float64 re-implementations of the losses, straight from METHODS §2-4.

One example at a time, with ``math`` only (torch only generates inputs); deliberately
independent of ``bapo_exp.losses`` (it must never import it), so the vectorised code is
checked against the equations.
"""

from __future__ import annotations

import math

import torch


def log_sigmoid(x: float) -> float:
    """log(1 / (1 + e^-x)), stable for large |x|."""
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def bradley_terry(z: float, eps: float) -> float:
    """-(1 - eps) log s(z) - eps log s(-z)   (METHODS §2)."""
    return -(1 - eps) * log_sigmoid(z) - eps * log_sigmoid(-z)


def dpo(pw: float, pl: float, rw: float, rl: float, beta: float, eps: float = 0.0) -> float:
    """z = beta * ((pw - rw) - (pl - rl)); L = BT(z)."""
    return bradley_terry(beta * ((pw - rw) - (pl - rl)), eps)


def dpo_rescaled(pw, pl, rw, rl, *, beta, eps_ls, eps, split):
    """DPO against (1 + eps_y) l_0(y); eps_w = eps s, eps_l = eps (1 - s),
    s = |rw| / (|rw| + |rl|) (adaptive) or eps_w = eps_l = eps (fixed)."""
    s = abs(rw) / (abs(rw) + abs(rl)) if split == "adaptive" else None
    eps_w, eps_l = (eps * s, eps * (1 - s)) if s is not None else (eps, eps)
    return dpo(pw, pl, (1 + eps_w) * rw, (1 + eps_l) * rl, beta, eps_ls)


def ipo(pw, pl, rw, rl, nw, nl, beta):
    """(r(y_w)/|y_w| - r(y_l)/|y_l| - 1/(2 beta))^2."""
    return ((pw - rw) / nw - (pl - rl) / nl - 1 / (2 * beta)) ** 2


def anchor(kind: str, delta: float, logp: float, margin: float) -> float:
    """A(Delta_b) of METHODS §3."""
    if kind == "hinge":
        return max(0.0, -delta - margin)
    if kind == "abs":
        return abs(delta)
    if kind == "sq":
        return delta * delta
    if kind == "nll":
        return -logp
    assert kind == "none"
    return 0.0


def bapo(pw, pl, rw, rl, bp, br, nb, *, beta, eps, kind, weight, margin, reduce):
    """L_DPO + lambda * A(Delta_b); ``reduce="mean"`` divides the y_b log-probs by |y_b|."""
    if reduce == "mean":
        bp, br = bp / nb, br / nb
    return dpo(pw, pl, rw, rl, beta, eps) + weight * anchor(kind, bp - br, bp, margin)


def clip(value: float, main: float, eps: float) -> float:
    """clip(l_k, (1+eps) l_0, (1-eps) l_0) for l_0 <= 0."""
    low, high = (1 + eps) * main, (1 - eps) * main
    return min(max(value, low), high)


def mrpo_parts(lw, ll, *, eps, split, weights, assignment):
    """Virtual reference of one example (METHODS §4.2-4.4).

    Args:
        lw, ll: the K references' log-probs of y_w and y_l (lists, main first).

    Returns:
        (virtual log-prob of y_w, of y_l, alphas, clipped-flags per k of (y_w, y_l)).
    """
    k = len(lw)
    if split == "adaptive":
        bw, bl = abs(sum(lw) / k), abs(sum(ll) / k)
        eps_w, eps_l = eps * bw / (bw + bl), eps * (1 - bw / (bw + bl))
    else:
        eps_w = eps_l = eps
    hw = [lw[0]] + [clip(v, lw[0], eps_w) for v in lw[1:]]
    hl = [ll[0]] + [clip(v, ll[0], eps_l) for v in ll[1:]]
    if weights is None:
        gaps = [abs(a - b) for a, b in zip(lw, ll, strict=True)]
        alpha = [g / (sum(gaps) + 1e-6) for g in gaps]
    else:
        alpha = [w / sum(weights) for w in weights]
    if assignment == "official_k2":
        alpha = alpha[::-1]

    def virtual(h):  # -log sum_k alpha_k exp(-l^_k), shifted for stability
        terms = [math.log(a) - v for a, v in zip(alpha, h, strict=True) if a > 0]
        top = max(terms)
        return -(top + math.log(sum(math.exp(t - top) for t in terms)))

    flags = [(hw[i] != lw[i], hl[i] != ll[i]) for i in range(k)]
    return virtual(hw), virtual(hl), alpha, flags


def mrpo(pw, pl, lw, ll, *, beta, eps_ls, eps, split, weights, assignment):
    """DPO against the virtual reference."""
    vw, vl, _, _ = mrpo_parts(lw, ll, eps=eps, split=split, weights=weights, assignment=assignment)
    return dpo(pw, pl, vw, vl, beta, eps_ls)


# ---- random inputs shared by the tests (torch is used for inputs only, never for the maths) ----


def random_logps(n: int, gen: torch.Generator, low: float = 0.5, high: float = 30.0):
    """(n,) float64 negative log-probs, uniform in [-high, -low]."""
    return -(low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64))


def nearby(main: torch.Tensor, gen: torch.Generator, spread: float = 0.3) -> torch.Tensor:
    """Another reference's log-probs: main * (1 + u), u in [-spread/2, spread/2].

    With CTRO eps ~ 0.1 this mixes clipped and unclipped entries.
    """
    u = spread * (torch.rand(main.shape, generator=gen, dtype=torch.float64) - 0.5)
    return main * (1 + u.to(main.dtype))
