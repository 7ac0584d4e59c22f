"""Comparing lm-eval backends request by request: tolerance and deviations."""

from __future__ import annotations

import numpy as np

from bapo_exp.evaluation.requests import build_requests, item_metrics

__all__ = ["MMLU_SUBJECTS", "build_requests", "compare", "item_metrics", "tolerance"]
MMLU_SUBJECTS = ["abstract_algebra", "high_school_biology", "philosophy", "world_religions"]


def tolerance(reference: float) -> float:
    """1e-4, or 2 float32 ulps of the value when that is larger (|logprob| >= 512: a sum of
    hundreds of float32 token log-probs cannot be closer than its own rounding)."""
    return max(1e-4, 2 * float(np.spacing(np.float32(abs(reference)))))


def compare(ours: list, reference: list) -> dict:
    """Largest deviation, requests outside ``tolerance``, is_greedy mismatches and greedy count."""
    diffs = [abs(a[0] - b[0]) for a, b in zip(ours, reference, strict=True)]
    outside = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True))
               if abs(a[0] - b[0]) > tolerance(b[0])]  # fmt: skip
    return {
        "max_abs_diff": max(diffs, default=0.0),
        "outside": outside,
        "greedy_mismatch": [
            i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a[1] != b[1]
        ],  # fmt: skip
        "n_greedy": sum(b[1] for b in reference),
    }
