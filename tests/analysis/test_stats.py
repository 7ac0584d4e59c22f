"""Hierarchical bootstrap, t-interval over bases and the verdict rule (bapo_exp.analysis.stats)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bapo_exp.analysis.stats import (
    hierarchical_bootstrap,
    interval,
    simulated_coverage,
    t_interval_over_bases,
    verdict,
)
from tests.analysis.curves import units


def naive_bootstrap(u: pd.DataFrame, n_boot: int, ci: float, seed: int) -> np.ndarray:
    """Loop-over-resamples reference drawing the same random numbers in the same order."""
    bases = sorted(u["base"].unique())
    values = [u.loc[u["base"] == b, "value"].to_numpy(float) for b in bases]
    n_s = max(len(v) for v in values)
    gen = np.random.default_rng(seed)
    drawn = gen.integers(0, len(bases), size=(n_boot, len(bases)))
    uniform = gen.random((n_boot, len(bases), n_s))
    stats = []
    for r in range(n_boot):
        means = []
        for j, b in enumerate(drawn[r]):
            n = len(values[b])
            picks = [values[b][math.floor(uniform[r, j, k] * n)] for k in range(n)]
            means.append(sum(picks) / n)
        stats.append(sum(means) / len(means))
    return np.quantile(np.array(stats), [(1 - ci) / 2, (1 + ci) / 2])


def test_bootstrap_equals_a_loop_reference_with_the_same_draws() -> None:
    gen = np.random.default_rng(5)
    u = units(gen, 4, 3, 0.1, 0.05, 0.02)
    u = u[~((u["base"] == 2) & (u["seed"] > 0))]  # one base with a single seed: ragged
    res = hierarchical_bootstrap(u, n_boot=300, ci=0.9, rng=11)
    lo, hi = naive_bootstrap(u, 300, 0.9, 11)
    assert (res.lo, res.hi) == pytest.approx((lo, hi), abs=1e-12)


def test_equal_weight_per_base_not_per_seed() -> None:
    """Base a: one seed at 1.0; base b: ten seeds at 0.0 -> 0.5, not the pooled 1/11."""
    u = pd.DataFrame({"base": ["a"] + ["b"] * 10, "seed": range(11), "value": [1.0] + [0.0] * 10})
    res = hierarchical_bootstrap(u, rng=0)
    assert res.estimate == pytest.approx(0.5)
    assert res.per_base == {"a": 1.0, "b": 0.0}
    assert (res.n_bases, res.n_units) == (2, 11)
    # resampled statistics are means of two draws from {1, 0}: 0, 0.5 or 1
    assert res.lo == 0.0 and res.hi == 1.0
    gen = np.random.default_rng(1)
    u = units(gen, 3, 4, 0.0, 0.1, 0.1)
    hand = u.groupby("base")["value"].mean().mean()
    assert hierarchical_bootstrap(u).estimate == pytest.approx(hand, abs=1e-15)


def test_bootstrap_is_deterministic_given_its_seed() -> None:
    u = units(np.random.default_rng(2), 5, 3, 0.1, 0.05, 0.02)
    a, b = hierarchical_bootstrap(u, rng=7), hierarchical_bootstrap(u, rng=7)
    assert (a.lo, a.hi) == (b.lo, b.hi)
    c = hierarchical_bootstrap(u, rng=8)
    assert (a.lo, a.hi) != (c.lo, c.hi) and a.estimate == c.estimate
    gen = np.random.default_rng(7)
    assert hierarchical_bootstrap(u, rng=gen).lo == a.lo  # a Generator works as a seed


def test_constant_values_give_a_point_interval_and_nan_is_dropped() -> None:
    u = pd.DataFrame({"base": [0, 0, 1, 1, 2], "seed": [0, 1, 0, 1, 0]})
    u["value"] = [0.2, 0.2, 0.2, np.nan, np.nan]  # base 2 has no value left
    res = hierarchical_bootstrap(u)
    assert (res.estimate, res.lo, res.hi) == (0.2, 0.2, 0.2)
    assert (res.n_bases, res.n_units) == (2, 3)
    empty = hierarchical_bootstrap(u.assign(value=np.nan))
    assert empty.n_bases == 0 and math.isnan(empty.estimate) and math.isnan(empty.lo)


def test_seeds_matter_only_when_resampled() -> None:
    """Two bases with equal means but spread seeds: base-only resampling gives a point."""
    u = pd.DataFrame({"base": [0, 0, 1, 1], "seed": [0, 1, 0, 1], "value": [0.0, 1.0, 0.0, 1.0]})
    fixed = hierarchical_bootstrap(u, resample_seeds=False)
    assert (fixed.lo, fixed.hi) == (0.5, 0.5)
    both = hierarchical_bootstrap(u)
    assert both.lo < 0.5 < both.hi


def test_duplicate_units_are_an_error() -> None:
    u = pd.DataFrame({"base": [0, 0], "seed": [1, 1], "value": [0.1, 0.2]})
    with pytest.raises(ValueError, match=r"\[0, 1\] appears 2 times"):
        hierarchical_bootstrap(u)
    with pytest.raises(KeyError, match="value"):
        hierarchical_bootstrap(u.drop(columns="value"))


def test_t_interval_equals_scipy_on_per_base_means() -> None:
    u = units(np.random.default_rng(3), 5, 3, 0.1, 0.05, 0.02)
    means = u.groupby("base")["value"].mean().to_numpy()
    lo, hi = sps.t.interval(0.9, len(means) - 1, loc=means.mean(), scale=sps.sem(means))
    res = t_interval_over_bases(u, ci=0.9)
    assert (res.lo, res.hi) == pytest.approx((lo, hi), abs=1e-12)
    one = t_interval_over_bases(u[u["base"] == 0])
    assert one.n_bases == 1 and math.isnan(one.lo) and not math.isnan(one.estimate)


def test_both_is_the_union_of_bootstrap_and_t() -> None:
    u = units(np.random.default_rng(4), 4, 3, 0.1, 0.05, 0.02)
    boot, t = interval(u, method="bootstrap"), interval(u, method="t")
    both = interval(u, method="both")
    assert both.lo == min(boot.lo, t.lo) and both.hi == max(boot.hi, t.hi)
    with pytest.raises(ValueError, match="'z' is not one of"):
        interval(u, method="z")


def test_bootstrap_coverage_on_simulated_experiments() -> None:
    """200 seeded experiments (8 bases x 3 seeds): the 95% interval covers the truth in at
    least 85% of them (measured 92% over 400 with this model) and is not vacuous (< 99.5%)."""
    gen = np.random.default_rng(2024)
    covered = covered_t = 0
    for i in range(200):
        u = units(gen, 8, 3, 0.1, 0.05, 0.03)
        res = hierarchical_bootstrap(u, rng=i)
        covered += res.lo <= 0.1 <= res.hi
        t = t_interval_over_bases(u)
        covered_t += t.lo <= 0.1 <= t.hi
    assert 0.85 <= covered / 200 < 0.995
    assert 0.90 <= covered_t / 200 < 0.995


def test_few_bases_the_t_interval_keeps_coverage_the_bootstrap_loses() -> None:
    """The documented limitation: at 3 bases the percentile bootstrap under-covers."""
    boot = simulated_coverage(3, method="bootstrap", n_experiments=200, n_boot=500)
    t = simulated_coverage(3, method="t", n_experiments=200)
    assert boot < 0.88 and 0.90 <= t < 0.99


@pytest.mark.parametrize(
    ("lo", "hi", "sign", "expected"),
    [
        (0.01, 0.2, 1, "supported"),
        (-0.2, -0.01, 1, "refuted"),
        (-0.2, -0.01, -1, "supported"),
        (0.01, 0.2, -1, "refuted"),
        (-0.1, 0.1, 1, "inconclusive"),
        (0.0, 0.1, 1, "inconclusive"),  # a bound at 0 includes 0
        (-0.1, 0.0, -1, "inconclusive"),
        (math.nan, math.nan, 1, "insufficient"),
    ],
)
def test_verdict_reads_the_interval(lo: float, hi: float, sign: int, expected: str) -> None:
    assert verdict(lo, hi, sign, n_bases=3) == expected


def test_verdict_needs_two_bases() -> None:
    assert verdict(0.1, 0.2, 1, n_bases=1) == "insufficient"
    assert verdict(0.1, 0.2, 1, n_bases=1, n_not_reached=2) == "not reached"
    assert verdict(math.nan, math.nan, 1, n_bases=0, n_not_reached=6) == "not reached"
    assert verdict(0.1, 0.2, 1, n_bases=2) == "supported"
    assert verdict(0.1, 0.2, 1, n_bases=2, min_bases=3) == "insufficient"
    with pytest.raises(ValueError, match="expected_sign"):
        verdict(0.1, 0.2, 0)
