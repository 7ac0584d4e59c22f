"""Interpolation at matched personalisation and within-base pairing (bapo_exp.analysis.matched)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis.matched import (
    attach_base,
    matched,
    paired_at_strength,
    paired_differences,
    value_at_level,
)
from tests.analysis.curves import curves

S, X, Y = [0, 10, 20, 40], [0.1, 0.3, 0.6, 0.9], [0.9, 0.8, 0.6, 0.5]


def test_value_at_level_by_hand() -> None:
    """level 0.5 lies on segment (0.3, 0.6): t = 2/3, y = 0.8 - 2/3 * 0.2, s = 10 + 2/3 * 10."""
    r = value_at_level(S, X, Y, 0.5)
    assert r.reached and r.value == pytest.approx(0.8 - 0.2 * 2 / 3)
    assert r.strength == pytest.approx(10 + 10 * 2 / 3)
    assert value_at_level(S, X, Y, 0.6) == pytest.approx((0.6, True, 20.0))  # level == x[i+1]
    assert value_at_level(S, X, Y, 0.1) == (0.9, True, 0.0)  # the base already has x >= level
    r = value_at_level(S, X, Y, 0.95)
    assert not r.reached and math.isnan(r.value) and math.isnan(r.strength)
    shuffled = [3, 1, 0, 2]  # input order does not matter: points are ordered by strength
    r2 = value_at_level(*(np.array(a)[shuffled] for a in (S, X, Y)), 0.5)
    assert r2 == pytest.approx(tuple(value_at_level(S, X, Y, 0.5)))


def test_non_monotone_curve_takes_the_first_crossing() -> None:
    s, x, y = [0, 10, 20, 40], [0.1, 0.6, 0.3, 0.9], [1.0, 0.8, 0.7, 0.2]
    # 0.5 is crossed on (0.1, 0.6), t = 0.8, and again on (0.3, 0.9): the first one counts
    assert value_at_level(s, x, y, 0.5) == pytest.approx((1.0 - 0.8 * 0.2, True, 8.0))
    # 0.7 is first crossed after the dip, on (0.3, 0.9), t = 2/3
    assert value_at_level(s, x, y, 0.7) == pytest.approx((0.7 - 0.5 * 2 / 3, True, 20 + 40 / 3))
    # a falling segment is not a crossing: 0.45 is passed on the way down, then up
    assert value_at_level([0, 1, 2], [0.5, 0.4, 0.6], [1.0, 2.0, 3.0], 0.45) == (1.0, True, 0.0)


def test_nan_points_and_duplicates() -> None:
    r = value_at_level([0, 10, 20], [0.1, np.nan, 0.9], [1.0, 0.0, 0.2], 0.5)
    assert r == pytest.approx((0.6, True, 10.0))  # the NaN-x point is dropped
    r = value_at_level([0, 10], [0.1, 0.9], [1.0, np.nan], 0.5)
    assert r.reached and math.isnan(r.value)
    with pytest.raises(ValueError, match="share a strength"):
        value_at_level([0, 10, 10], [0.1, 0.2, 0.3], [1, 1, 1], 0.5)
    with pytest.raises(ValueError, match="one length"):
        value_at_level([0, 10], [0.1], [1, 1], 0.5)


def test_matched_rows_and_not_reached() -> None:
    df = curves(treatment_x_scale=0.5, n_bases=2, n_seeds=2)  # BAPO tops out at x = 0.5
    m = matched(df, [0.3, 0.75], ["knowledge"], by=["preference"])
    assert list(m.columns[:3]) == ["preference", "base", "seed"]
    assert len(m) == 2 * 2 * 2 * 2  # bases x seeds x methods x levels
    bapo = m[m["method"] == "BAPO"].set_index(["base", "seed", "level"])
    assert (~bapo.xs(0.75, level="level")["reached"]).all()
    assert bapo.xs(0.75, level="level")["value"].isna().all()
    dpo = m[(m["method"] == "DPO") & (m["level"] == 0.3)]
    # DPO: x = 0.1 + 0.01 * step, so 0.3 is reached at step 20 where knowledge = base - 0.08
    base_know = df[df["strength"] == 0].groupby(["base", "seed"])["knowledge"].first()
    got = dpo.set_index(["base", "seed"])["value"]
    assert np.allclose(got, base_know.loc[got.index] - 0.08)
    assert np.allclose(dpo["strength"], 20.0)


def test_matched_checks_its_input() -> None:
    df = curves(n_bases=1, n_seeds=1)
    with pytest.raises(KeyError, match=r"\['alignment'\] not in the table"):
        matched(df, [0.5], ["alignment"])
    with pytest.raises(ValueError, match="no point at strength 0"):
        matched(df[df["strength"] > 0], [0.5], ["knowledge"])
    assert len(matched(df[df["strength"] > 0], [0.5], ["knowledge"], start=None)) == 2
    twice = pd.concat([df, df.assign(preference="formal")])
    with pytest.raises(ValueError, match="add the column that tells them apart"):
        matched(twice, [0.5], ["knowledge"])
    assert len(matched(twice, [0.5], ["knowledge"], by=["preference"])) == 4


def test_attach_base_equals_repeated_base_rows() -> None:
    df = curves(n_bases=2, n_seeds=2)
    base = df[(df["strength"] == 0) & (df["method"] == "DPO")].assign(method="none")
    compact = pd.concat([base, df[df["strength"] > 0]], ignore_index=True)
    via_attach = matched(compact, [0.3, 0.6], ["knowledge"], base_method="none")
    direct = matched(df, [0.3, 0.6], ["knowledge"])
    pd.testing.assert_frame_equal(via_attach, direct)
    assert len(attach_base(compact, "none")) == len(df)
    with pytest.raises(ValueError, match="no row has method == 'base'"):
        attach_base(compact, "base")


def test_paired_differences_counts_each_side() -> None:
    df = curves(effect=0.1, noise=0.0, base_sd=0.0, treatment_x_scale=0.5, n_bases=2, n_seeds=2)
    df = df[~((df["method"] == "DPO") & (df["base"] == "b1") & (df["seed"] == 1))]
    p = paired_differences(matched(df, [0.3, 0.75], ["knowledge"]), "BAPO", "DPO")
    at3, at75 = p[p["level"] == 0.3], p[p["level"] == 0.75]
    assert (at3["treatment"] == "BAPO").all() and (at3["control"] == "DPO").all()
    # BAPO reaches x = 0.3 at step 40 (x = 0.1 + 0.005 step), where its knowledge is DPO's at
    # the same x plus 0.1; the missing DPO run leaves one unit without a difference
    assert at3["diff"].dropna().tolist() == pytest.approx([0.1] * 3)
    assert at3["control_status"].tolist().count("missing") == 1
    assert at75["diff"].isna().all()
    assert at75["treatment_status"].tolist() == ["not reached"] * 4
    assert at75["control_status"].value_counts().to_dict() == {"reached": 3, "missing": 1}
    with pytest.raises(ValueError, match="method 'MRPO' not in the table"):
        paired_differences(matched(df, [0.3], ["knowledge"]), "MRPO", "DPO")


def test_paired_at_strength_is_exact_and_skips_the_shared_start() -> None:
    df = curves(effect=0.1, noise=0.0, base_sd=0.0, n_bases=2, n_seeds=1)
    df = df[~((df["method"] == "BAPO") & (df["strength"] == 80))]
    p = paired_at_strength(df, "BAPO", "DPO", ["knowledge"])
    assert sorted(p["strength"].unique()) == [10, 20, 40, 80]
    have = p[p["strength"] < 80]
    assert have["diff"].tolist() == pytest.approx([0.1] * len(have))
    assert (p.loc[p["strength"] == 80, "treatment_status"] == "missing").all()
    assert p.loc[p["strength"] == 80, "diff"].isna().all()
    only = paired_at_strength(df, "BAPO", "DPO", ["knowledge"], strengths=[20])
    assert only["strength"].unique().tolist() == [20]
    kept = paired_at_strength(df, "BAPO", "DPO", ["knowledge"], start=None)
    assert kept.loc[kept["strength"] == 0, "diff"].tolist() == [0.0, 0.0]
