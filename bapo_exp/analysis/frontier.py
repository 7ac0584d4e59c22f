"""Retention against personalisation as a monotone frontier per run (docs/STUDY_PROTOCOL.md 6).

    f = fit(x, knowledge)                  # isotonic: non-increasing in x, over all points
    e = fit(x, knowledge, "envelope")      # best checkpoint with x at least the level
    g = mean_gap(f_bapo, f_dpo, (0.2, 0.8))

A run's points are its evaluated checkpoints, step 0 (the untrained base) included. Both kinds
are undefined (NaN) above the run's **reach**, the largest x it attained at any point: a level
beyond it was *not reached*, never filled in.

- ``isotonic``: scikit-learn's ``IsotonicRegression(increasing=False)`` of retention on x (least
  squares under the constraint that retention does not rise with personalisation), linearly
  interpolated between its fitted points and held constant below the smallest x.
- ``envelope``: at level x, the largest retention among the points with x_i >= x (a step
  function; it lies on or above every point).

The gap of two frontiers is their mean difference over the part of the x-range both reach
(trapezoid on a grid); a pair sharing less than ``min_coverage`` of the range has no gap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from bapo_exp.analysis.protocol import GRID_STEP, MIN_COVERAGE, X_RANGE

KINDS = ("isotonic", "envelope")


@dataclass(frozen=True)
class Frontier:
    """A fitted frontier: ``x`` ascending, ``y`` the fitted values there (non-increasing)."""

    kind: str
    x: np.ndarray
    y: np.ndarray
    reach: float
    n_points: int

    def at(self, grid: np.ndarray | float) -> np.ndarray:
        """The frontier at ``grid`` (NaN above the reach, or for a frontier without points)."""
        g = np.atleast_1d(np.asarray(grid, dtype=float))
        if self.n_points == 0:
            return np.full(g.shape, np.nan)
        if self.kind == "isotonic":
            out = np.interp(g, self.x, self.y)
        else:  # y[i] is already the best retention among points with x >= x[i]
            idx = np.searchsorted(self.x, g, side="left")
            out = self.y[np.minimum(idx, len(self.y) - 1)]
        return np.where(g <= self.reach, out, np.nan)


def _clean(x, y) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length: {xs.shape} vs {ys.shape}")
    keep = np.isfinite(xs) & np.isfinite(ys)
    return xs[keep], ys[keep]


def fit(x, y, kind: str = "isotonic") -> Frontier:
    """The frontier of points ``(x, y)`` (NaN points are dropped; none left: an empty one)."""
    if kind not in KINDS:
        raise ValueError(f"frontier kind {kind!r} is not one of {KINDS}")
    xs, ys = _clean(x, y)
    if xs.size == 0:
        return Frontier(kind, np.empty(0), np.empty(0), math.nan, 0)
    if kind == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(increasing=False, out_of_bounds="clip").fit(xs, ys)
        fx, fy = iso.X_thresholds_, iso.y_thresholds_
    else:
        fx = np.unique(xs)
        best = np.array([ys[xs == v].max() for v in fx])
        fy = np.maximum.accumulate(best[::-1])[::-1]  # best of every point at or above x
    return Frontier(kind, np.asarray(fx, float), np.asarray(fy, float), float(xs.max()), xs.size)


def coverage(reach: float, x_range: tuple[float, float] = X_RANGE) -> float:
    """The share of ``x_range`` at or below ``reach`` (0 for a NaN reach)."""
    lo, hi = x_range
    if not math.isfinite(reach):
        return 0.0
    return float(np.clip((min(reach, hi) - lo) / (hi - lo), 0.0, 1.0))


def grid(lo: float, hi: float, step: float = GRID_STEP) -> np.ndarray:
    """Points from ``lo`` to ``hi`` (both included), at most ``step`` apart."""
    n = max(2, int(math.ceil((hi - lo) / step - 1e-9)) + 1)
    return np.linspace(lo, hi, n)


def _mean_over(values: np.ndarray, g: np.ndarray) -> float:
    if g[-1] == g[0]:
        return float(values[0])
    return float(np.trapezoid(values, g) / (g[-1] - g[0]))


class Gap(NamedTuple):
    """``gap``: mean of treatment minus control over ``[lo, hi]`` (NaN: not reached);
    ``coverage_t``/``coverage_c``: each side's coverage of the range; ``common``: the shared
    part's."""

    gap: float
    coverage_t: float
    coverage_c: float
    common: float
    hi: float


def mean_gap(
    treatment: Frontier,
    control: Frontier,
    x_range: tuple[float, float] = X_RANGE,
    min_coverage: float = MIN_COVERAGE,
    step: float = GRID_STEP,
) -> Gap:
    """The treatment's frontier minus the control's, averaged over ``[x_range[0], hi]`` with
    ``hi = min(x_range[1], reach_t, reach_c)``; NaN when that part is shorter than
    ``min_coverage`` of the range or empty (protocol section 6)."""
    lo, top = x_range
    hi = min(top, treatment.reach, control.reach)
    cov_t, cov_c = coverage(treatment.reach, x_range), coverage(control.reach, x_range)
    common = coverage(hi, x_range) if math.isfinite(hi) else 0.0
    if not math.isfinite(hi) or hi < lo or common < min_coverage:
        return Gap(math.nan, cov_t, cov_c, common, hi)
    g = grid(lo, hi, step)
    diff = treatment.at(g) - control.at(g)
    return Gap(_mean_over(diff, g), cov_t, cov_c, common, hi)


def frontier_mean(
    f: Frontier,
    x_range: tuple[float, float] = X_RANGE,
    min_coverage: float = MIN_COVERAGE,
    step: float = GRID_STEP,
) -> float:
    """One frontier's mean over the part of ``x_range`` it reaches (NaN below
    ``min_coverage``): the retention "at matched personalisation" of a single run."""
    lo, top = x_range
    hi = min(top, f.reach)
    if not math.isfinite(hi) or hi < lo or coverage(hi, x_range) < min_coverage:
        return math.nan
    g = grid(lo, hi, step)
    return _mean_over(f.at(g), g)


def reached(reach: float, levels) -> np.ndarray:
    """For each level, whether a run with this reach attained it (False for a NaN reach)."""
    lv = np.asarray(levels, dtype=float)
    return np.isfinite(reach) & (lv <= (reach if math.isfinite(reach) else -np.inf))
