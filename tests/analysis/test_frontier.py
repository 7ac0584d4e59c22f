"""Monotone frontiers per run, their reach and the gap of two (bapo_exp.analysis.frontier)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bapo_exp.analysis.frontier import coverage, fit, frontier_mean, grid, mean_gap, reached


def noisy(seed: int = 0, n: int = 12):
    gen = np.random.default_rng(seed)
    x = np.sort(gen.uniform(0.05, 0.9, n))
    return x, 0.9 - 0.3 * x + gen.normal(0, 0.03, n)


@pytest.mark.parametrize("seed", range(5))
def test_isotonic_is_non_increasing_least_squares_and_keeps_the_mean(seed: int) -> None:
    x, y = noisy(seed)
    f = fit(x, y)
    assert np.all(np.diff(f.y) <= 1e-12) and np.all(np.diff(f.x) > 0)
    fitted = f.at(x)
    assert fitted.mean() == pytest.approx(y.mean(), abs=1e-12)  # blocks pool their means
    # no other non-increasing fit does better: moving any pooled block's level only hurts
    sse = ((fitted - y) ** 2).sum()
    for shift in (-0.01, 0.01):
        assert ((fitted + shift - y) ** 2).sum() > sse
    g = grid(0.0, f.reach, 0.005)
    assert np.all(np.diff(f.at(g)) <= 1e-12)  # interpolation keeps it monotone


def test_isotonic_passes_through_points_that_are_already_monotone() -> None:
    x, y = np.array([0.05, 0.3, 0.6, 0.8]), np.array([0.9, 0.85, 0.7, 0.6])
    f = fit(x, y)
    assert f.at(x) == pytest.approx(y)
    assert f.at(0.45) == pytest.approx((0.85 + 0.7) / 2)  # linear between fitted points
    assert f.at(0.0) == pytest.approx(0.9)  # held at the first point below it
    rising = fit(x, y[::-1])  # retention rising with x: pooled to its mean
    assert rising.at(x) == pytest.approx(np.full(4, y.mean()))


def test_envelope_is_the_best_checkpoint_at_or_above_the_level() -> None:
    x, y = noisy(3)
    e = fit(x, y, "envelope")
    for level in grid(0.0, x.max(), 0.01):
        assert e.at(level)[0] == pytest.approx(y[x >= level].max())
    assert np.all(e.at(x) >= y - 1e-12)  # on or above every point
    assert np.all(e.at(x) >= fit(x, y).at(x) - 1e-12)  # a pooled block's suffix beats its mean
    assert np.all(np.diff(e.y) <= 0)


@pytest.mark.parametrize("kind", ["isotonic", "envelope"])
def test_nothing_above_the_reach(kind: str) -> None:
    x, y = np.array([0.05, 0.2, 0.55, np.nan]), np.array([0.9, 0.88, 0.8, 0.1])
    f = fit(x, y, kind)
    assert f.reach == 0.55 and f.n_points == 3  # the NaN point is dropped
    assert math.isnan(f.at(0.56)[0]) and not math.isnan(f.at(0.55)[0])
    empty = fit([], [], kind)
    assert math.isnan(empty.reach) and np.isnan(empty.at([0.1, 0.5])).all()
    assert reached(f.reach, [0.2, 0.55, 0.6]).tolist() == [True, True, False]
    assert reached(math.nan, [0.2]).tolist() == [False]
    with pytest.raises(ValueError, match="frontier kind 'max'"):
        fit(x, y, "max")


def test_coverage_of_the_range() -> None:
    assert coverage(0.5, (0.2, 0.8)) == pytest.approx(0.5)
    assert coverage(0.9, (0.2, 0.8)) == 1.0 and coverage(0.1, (0.2, 0.8)) == 0.0
    assert coverage(math.nan) == 0.0


def line(top: float, offset: float = 0.0):
    x = np.linspace(0.05, top, 9)
    return fit(x, 0.9 - 0.3 * x + offset)


def test_gap_of_two_parallel_frontiers_is_their_offset() -> None:
    g = mean_gap(line(0.9, 0.05), line(0.95), (0.2, 0.8))
    assert g.gap == pytest.approx(0.05, abs=1e-12)
    assert (g.coverage_t, g.coverage_c, g.common, g.hi) == (1.0, 1.0, 1.0, 0.8)


def test_gap_over_the_common_part_and_not_reached_below_half() -> None:
    """Treatment reaches 0.6 (2/3 of the range): averaged over 0.2-0.6. At 0.45 (5/12 < 1/2)
    there is no gap: not reached, never extrapolated."""
    t = fit([0.05, 0.3, 0.6], [0.9, 0.9, 0.9])
    c = line(0.95)
    g = mean_gap(t, c, (0.2, 0.8))
    truth = np.mean([0.9 - (0.9 - 0.3 * x) for x in np.linspace(0.2, 0.6, 4001)])
    assert g.gap == pytest.approx(truth, abs=1e-6) and g.common == pytest.approx(2 / 3)
    short = mean_gap(fit([0.05, 0.45], [0.9, 0.9]), c, (0.2, 0.8))
    assert math.isnan(short.gap) and short.coverage_t == pytest.approx(0.25 / 0.6)
    assert math.isnan(mean_gap(fit([0.05, 0.1], [0.9, 0.9]), c).gap)  # never in the range
    assert mean_gap(t, c, (0.2, 0.8), min_coverage=0.0).gap == pytest.approx(truth, abs=1e-6)


def test_frontier_mean_is_the_mean_over_the_reached_range() -> None:
    assert frontier_mean(line(0.95), (0.2, 0.8)) == pytest.approx(0.9 - 0.3 * 0.5)
    assert math.isnan(frontier_mean(line(0.3), (0.2, 0.8)))
