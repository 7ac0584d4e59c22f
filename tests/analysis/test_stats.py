"""Intervals over bases, p-values, Holm, the minimum detectable effect and the verdict rule
(bapo_exp.analysis.stats)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bapo_exp.analysis.stats import (
    CEILING,
    bootstrap_means,
    holm,
    interval,
    mde,
    needed,
    simulated_coverage,
    summarise,
    verdict,
)
from tests.analysis.curves import units


def naive_bootstrap(u: pd.DataFrame, n_boot: int, seed: int) -> np.ndarray:
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
    return np.array(stats)


def test_bootstrap_equals_a_loop_reference_with_the_same_draws() -> None:
    u = units(np.random.default_rng(5), 4, 3, 0.1, 0.05, 0.02)
    u = u[~((u["base"] == 2) & (u["seed"] > 0))]  # one base with a single seed: ragged
    s = summarise(u, n_boot=300, rng=11)
    assert s.boot == pytest.approx(naive_bootstrap(u, 300, 11), abs=1e-12)
    lo, hi = np.quantile(naive_bootstrap(u, 300, 11), [0.05, 0.95])
    assert s.boot_interval(0.9) == pytest.approx((lo, hi), abs=1e-12)


def test_equal_weight_per_base_not_per_seed() -> None:
    """Base a: one seed at 1.0; base b: ten seeds at 0.0 -> 0.5, not the pooled 1/11."""
    u = pd.DataFrame({"base": ["a"] + ["b"] * 10, "seed": range(11), "value": [1.0] + [0.0] * 10})
    s = summarise(u)
    assert s.estimate == pytest.approx(0.5) and s.per_base == {"a": 1.0, "b": 0.0}
    assert (s.n_bases, s.n_units) == (2, 11)
    assert s.boot_interval(0.95) == (0.0, 1.0)  # means of two draws from {1, 0}


def test_nan_units_are_dropped_and_duplicates_refused() -> None:
    u = pd.DataFrame({"base": [0, 0, 1, 1, 2], "seed": [0, 1, 0, 1, 0]})
    s = summarise(u.assign(value=[0.2, 0.2, 0.2, np.nan, np.nan]))
    assert (s.estimate, s.n_bases, s.n_units, s.constant) == (0.2, 2, 3, True)
    assert s.interval() == (0.2, 0.2)  # zero width: the ceiling case
    empty = summarise(u.assign(value=np.nan))
    assert empty.n_bases == 0 and math.isnan(empty.estimate) and math.isnan(empty.interval()[0])
    with pytest.raises(ValueError, match=r"\[0, 1\] appears 2 times"):
        summarise(pd.DataFrame({"base": [0, 0], "seed": [1, 1], "value": [0.1, 0.2]}))


def test_seeds_matter_only_when_resampled() -> None:
    mat = np.array([[0.0, 1.0], [0.0, 1.0]])
    fixed = bootstrap_means(mat, np.array([2, 2]), 200, 0, resample_seeds=False)
    assert set(fixed) == {0.5}
    assert bootstrap_means(mat, np.array([2, 2]), 200, 0).std() > 0


def test_t_interval_and_p_equal_scipy_on_per_base_means() -> None:
    u = units(np.random.default_rng(3), 5, 3, 0.03, 0.05, 0.02)
    means = u.groupby("base")["value"].mean().to_numpy()
    s = summarise(u)
    lo, hi = sps.t.interval(0.9, len(means) - 1, loc=means.mean(), scale=sps.sem(means))
    assert s.t_interval(0.9) == pytest.approx((lo, hi), abs=1e-12)
    assert s.p_value("t") == pytest.approx(sps.ttest_1samp(means, 0).pvalue, abs=1e-12)
    p_boot = 2 * min((s.boot <= 0).mean(), (s.boot >= 0).mean())
    assert s.p_value() == max(s.p_value("t"), p_boot)


def test_both_is_the_union_and_excludes_zero_exactly_when_both_tests_reject() -> None:
    gen = np.random.default_rng(4)
    for _ in range(30):
        s = summarise(units(gen, 6, 2, 0.02, 0.03, 0.01), n_boot=1000, rng=1)
        (bl, bh), (tl, th) = s.boot_interval(0.95), s.t_interval(0.95)
        assert s.interval(0.95) == (min(bl, tl), max(bh, th))
        lo, hi = s.interval(0.95, "t")
        assert (lo > 0 or hi < 0) == (s.p_value("t") < 0.05)
    with pytest.raises(ValueError, match="'z' is not one of"):
        summarise(units(gen, 3, 1, 0, 1, 1)).interval(0.95, "z")


def test_holm_matches_the_step_down_by_hand_and_its_levels_agree_with_it() -> None:
    p = [0.01, 0.04, 0.03, 0.005, 0.5]
    reject, p_adj, levels = holm(p, alpha=0.05)
    # ascending 0.005 (/5=0.01 ok), 0.01 (/4=0.0125 ok), 0.03 (/3=0.0167 no): stop
    assert reject.tolist() == [True, False, False, True, False]
    assert p_adj == pytest.approx([0.04, 0.09, 0.09, 0.025, 0.5])  # monotone: max(0.08, 0.09)
    assert levels == pytest.approx([0.0125, 0.05 / 3, 0.05 / 3, 0.01, 0.05 / 3])
    for pi, r, lv in zip(p, reject, levels, strict=True):
        assert (pi <= lv) == r  # an interval at its level excludes 0 exactly when Holm rejects
    nan = holm([0.001, math.nan], alpha=0.05)  # an untestable primary stays in the family
    assert nan[2][0] == 0.025 and nan[0].tolist() == [True, False]


def test_holm_adjusted_t_intervals_are_consistent_with_the_test() -> None:
    gen = np.random.default_rng(9)
    for _ in range(20):
        family = [
            summarise(units(gen, 8, 1, t, 0.05, 0.0), n_boot=10) for t in (0.0, 0.03, 0.06, 0.1)
        ]
        reject, _, levels = holm([s.p_value("t") for s in family])
        for s, r, lv in zip(family, reject, levels, strict=True):
            lo, hi = s.interval(1 - lv, "t")
            assert (lo > 0 or hi < 0) == bool(r)


def test_mde_has_eighty_percent_power_by_the_noncentral_t() -> None:
    n, sd, alpha = 10, 0.03, 0.01
    effect = mde(sd, n, alpha=alpha)
    crit = sps.t.ppf(1 - alpha / 2, n - 1)
    nc = effect / (sd / math.sqrt(n))
    power = sps.nct.sf(crit, n - 1, nc) + sps.nct.cdf(-crit, n - 1, nc)
    assert power == pytest.approx(0.8, abs=1e-4)
    assert mde(sd, 20, alpha=alpha) < effect < mde(sd, 5, alpha=alpha)
    assert math.isnan(mde(sd, 1)) and math.isnan(mde(math.nan, 5))


def test_bootstrap_coverage_on_simulated_experiments() -> None:
    """200 seeded experiments (8 bases x 3 seeds): the 95% intervals cover the truth."""
    gen = np.random.default_rng(2024)
    covered = covered_t = 0
    for i in range(200):
        s = summarise(units(gen, 8, 3, 0.1, 0.05, 0.03), n_boot=1000, rng=i)
        lo, hi = s.boot_interval(0.95)
        covered += lo <= 0.1 <= hi
        lo, hi = s.t_interval(0.95)
        covered_t += lo <= 0.1 <= hi
    assert 0.85 <= covered / 200 < 0.995
    assert 0.90 <= covered_t / 200 < 0.995


def test_few_bases_the_t_interval_keeps_coverage_the_bootstrap_loses() -> None:
    boot = simulated_coverage(3, method="bootstrap", n_experiments=200, n_boot=500)
    t = simulated_coverage(3, method="t", n_experiments=200)
    assert boot < 0.88 and 0.90 <= t < 0.99
    assert interval(units(np.random.default_rng(0), 4, 2, 0, 1, 1)).n_bases == 4


ARGS = {"n_bases": 10, "n_agree": 10, "n_oppose": 0}


@pytest.mark.parametrize(
    ("lo", "hi", "sign", "kw", "expected"),
    [
        (0.01, 0.2, 1, {}, "supported"),
        (0.01, 0.2, 1, {"reject": False}, "inconclusive"),  # Holm did not reject
        (-0.2, -0.01, 1, {"n_agree": 0, "n_oppose": 9}, "refuted"),
        (-0.2, -0.01, -1, {}, "supported"),
        (-0.1, 0.1, 1, {}, "inconclusive"),
        (0.0, 0.1, 1, {}, "inconclusive"),  # a bound at 0 includes 0
        (0.01, 0.2, 1, {"n_agree": 6}, "inconclusive"),  # 6 of 10 agree, 7 needed
        (0.01, 0.2, 1, {"n_agree": 7}, "supported"),
        (0.01, 0.2, 1, {"n_bases": 4, "n_agree": 4}, "insufficient"),
        (0.01, 0.2, 1, {"n_bases": 4, "n_agree": 4, "n_unreached": 3}, "not reached"),
        (0.1, 0.1, 1, {"constant": True}, CEILING),
        (0.01, 0.2, 1, {"not_reached": True}, "not reached"),
        (math.nan, math.nan, 1, {}, "insufficient"),
    ],
)
def test_verdict_rule(lo: float, hi: float, sign: int, kw: dict, expected: str) -> None:
    word, note = verdict(lo, hi, sign, **(ARGS | kw))
    assert word == expected
    if kw.get("n_agree") == 6:
        assert note == "interval excludes 0 but only 6/10 bases agree"


def test_agreement_needs_two_thirds_rounded_up() -> None:
    assert [needed(n) for n in (3, 5, 6, 9, 10, 12)] == [2, 4, 4, 6, 7, 8]
    with pytest.raises(ValueError, match="expected_sign"):
        verdict(0.1, 0.2, 0, **ARGS)
