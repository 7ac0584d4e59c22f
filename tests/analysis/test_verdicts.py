"""Claims to verdict rows, the heterogeneity trend and the markdown report."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis.report import to_markdown
from bapo_exp.analysis.verdicts import (
    ROW_COLS,
    Claim,
    TrendClaim,
    base_slopes,
    claim_table,
    per_base_table,
)
from tests.analysis.curves import curves

LEVELS = (0.25, 0.5, 0.75)


def anchoring(**kw) -> Claim:
    args = {"expected_sign": 1, "levels": LEVELS, "by": ("preference",)} | kw
    return Claim("A1", "BAPO keeps more knowledge", "BAPO", "DPO", "knowledge", **args)


def test_known_effect_is_supported_and_its_interval_holds_it() -> None:
    table = claim_table([anchoring()], curves(effect=0.1))
    assert list(table.columns) == list(ROW_COLS)
    assert table["at"].tolist() == list(LEVELS)
    assert (table["verdict"] == "supported").all()
    assert ((table["lo"] < 0.1) & (0.1 < table["hi"])).all()
    assert (table["n_bases"] == 4).all() and (table["n_pairs"] == 12).all()
    assert (table["bases_expected"] == "4/4").all()
    assert (table["group"] == "preference=concise").all()
    row = table.iloc[0]  # the estimate is the mean of the per-base means
    assert row["estimate"] == pytest.approx(np.mean(list(row["per_base"].values())))


def test_no_effect_is_inconclusive_and_the_opposite_is_refuted() -> None:
    none = claim_table([anchoring()], curves(effect=0.0))
    assert (none["verdict"] == "inconclusive").all()
    assert ((none["lo"] < 0) & (0 < none["hi"])).all()
    opposite = claim_table([anchoring()], curves(effect=-0.1))
    assert (opposite["verdict"] == "refuted").all()
    expects_less = claim_table([anchoring(expected_sign=-1)], curves(effect=-0.1))
    assert (expects_less["verdict"] == "supported").all()


def test_not_reached_levels_are_counted_and_named() -> None:
    """BAPO's x stops at 0.5: level 0.75 has no pair, every BAPO curve counted as not reached."""
    table = claim_table([anchoring()], curves(treatment_x_scale=0.5)).set_index("at")
    assert table.loc[0.75, "verdict"] == "not reached"
    assert table.loc[0.75, "n_not_reached_treatment"] == 12
    assert table.loc[0.75, "n_not_reached_control"] == 0
    assert table.loc[0.75, "n_pairs"] == 0 and math.isnan(table.loc[0.75, "estimate"])
    assert table.loc[0.25, "verdict"] == "supported"
    assert table.loc[0.5, "n_not_reached_treatment"] == 0  # 0.5 is reached at the last step


def test_a_claim_without_a_direction_is_refused() -> None:
    with pytest.raises(ValueError, match="claim 'A1': expected_sign must be"):
        anchoring(expected_sign=0)
    with pytest.raises(ValueError, match="claim 'H': expected_sign"):
        TrendClaim("H", "", "het", "loss", 2)


def test_one_base_gives_no_verdict() -> None:
    table = claim_table([anchoring()], curves(n_bases=1))
    assert (table["verdict"] == "insufficient").all() and (table["n_bases"] == 1).all()


def test_fixed_strength_groups_and_filters() -> None:
    formal = curves(effect=0.0, rng=1).assign(preference="formal")
    df = pd.concat([curves(effect=0.1), formal], ignore_index=True)
    fixed = claim_table([anchoring(levels=None)], df)
    assert fixed["compare"].unique().tolist() == ["fixed strength"]
    by_group = fixed.groupby("group")["verdict"].unique().map(list).to_dict()
    assert by_group == {
        "preference=concise": ["supported"],
        "preference=formal": ["inconclusive"],
    }
    assert fixed["at"].unique().tolist() == [10, 20, 40, 80]
    only = claim_table([anchoring(by=(), where=(("preference", "formal"),))], df)
    assert (only["group"] == "all").all() and (only["verdict"] == "inconclusive").all()
    both = anchoring(by=(), where=(("preference", ("formal", "concise")),))
    with pytest.raises(ValueError, match="add the column that tells them apart to `by`"):
        claim_table([both], df)  # two preferences per curve: the claim must split by them


def test_rows_do_not_depend_on_other_claims_or_their_order() -> None:
    df = curves()
    fixed = dataclasses.replace(anchoring(levels=None), id="A2")
    alone = claim_table([fixed], df)
    together = claim_table([anchoring(), fixed], df)
    pd.testing.assert_frame_equal(together[together["claim"] == "A2"].reset_index(drop=True), alone)
    per_base = per_base_table(together)
    assert len(per_base) == together["n_bases"].sum()
    assert set(per_base["base"]) == {"b0", "b1", "b2", "b3"}


def heterogeneity(slope: float, n_bases: int = 5, rng: int = 0) -> pd.DataFrame:
    """Knowledge loss = slope * distance + base intercept + noise; distance per exposure level
    depends on the base (measured, not a label) and is shared by its seeds."""
    gen = np.random.default_rng(rng)
    rows = []
    for b in range(n_bases):
        intercept, b_slope = gen.normal(0, 0.05), slope + gen.normal(0, 0.02)
        for exposure in (0.0, 0.01, 0.1, 0.3):
            distance = 2.0 - 5 * exposure + gen.normal(0, 0.1)
            for seed in range(3):
                loss = intercept + b_slope * distance + gen.normal(0, 0.01)
                rows.append({"base": b, "seed": seed, "exposure": exposure, "het": distance,
                             "loss": loss, "method": "DPO"})  # fmt: skip
    return pd.DataFrame(rows)


def test_trend_slope_per_base_then_over_bases() -> None:
    df = heterogeneity(0.1)
    slopes = base_slopes(df, "het", "loss", design="exposure")
    for b, g in df.groupby("base"):
        pts = g.groupby("exposure")[["het", "loss"]].mean()
        hand = np.polyfit(pts["het"], pts["loss"], 1)[0]
        assert slopes.loc[slopes["base"] == b, "value"].item() == pytest.approx(hand, abs=1e-12)
    claims = [
        TrendClaim("H1", "loss grows with heterogeneity", "het", "loss", 1, by=("method",)),
        TrendClaim("H2", "loss shrinks with heterogeneity", "het", "loss", -1),
    ]
    table = claim_table(claims, df).set_index("claim")
    assert table.loc["H1", "verdict"] == "supported" and table.loc["H2", "verdict"] == "refuted"
    assert table.loc["H1", "estimate"] == pytest.approx(slopes["value"].mean())
    assert table.loc["H1", "lo"] < 0.1 < table.loc["H1", "hi"]
    assert table.loc["H1", "group"] == "method=DPO" and table.loc["H1", "n_bases"] == 5
    flat = claim_table(claims[:1], heterogeneity(0.0))
    assert flat["verdict"].item() == "inconclusive"


def test_per_seed_slopes_average_to_the_seed_averaged_slope() -> None:
    """With x shared by a base's seeds, OLS is linear in y: mean of slopes = slope of means."""
    df = heterogeneity(0.1)
    per_seed = base_slopes(df, "het", "loss", design="exposure", average_seeds=False)
    averaged = base_slopes(df, "het", "loss", design="exposure")
    means = per_seed.groupby("base")["value"].mean().to_numpy()
    assert means == pytest.approx(averaged["value"].to_numpy(), abs=1e-12)
    one_point = base_slopes(df[df["exposure"] == 0.1], "het", "loss")
    assert one_point["value"].isna().all()  # one distinct x: no slope


def tiny_table() -> pd.DataFrame:
    common = {"ci": 0.95, "interval": "bootstrap", "n_missing": 0}
    rows = [
        {"claim": "A1", "statement": "BAPO keeps more knowledge", "treatment": "BAPO lambda=0.01",
         "control": "DPO", "metric": "knowledge", "compare": "matched x", "at": 0.75,
         "group": "all", "n_bases": 0, "n_pairs": 0, "n_not_reached_treatment": 12,
         "n_not_reached_control": 0, "estimate": math.nan, "lo": math.nan, "hi": math.nan,
         "verdict": "not reached", "bases_expected": "0/0", "per_base": {}},
        {"claim": "A1", "statement": "BAPO keeps more knowledge", "treatment": "BAPO lambda=0.01",
         "control": "DPO", "metric": "knowledge", "compare": "matched x", "at": 0.5,
         "group": "all", "n_bases": 2, "n_pairs": 6, "n_not_reached_treatment": 0,
         "n_not_reached_control": 0, "estimate": 0.1, "lo": 0.05, "hi": 0.1504,
         "verdict": "supported", "bases_expected": "2/2", "per_base": {"b1": 0.12, "b0": 0.08}},
        {"claim": "H1", "statement": "loss grows | heterogeneity", "treatment": "",
         "control": "", "metric": "loss", "compare": "slope on het", "at": math.nan,
         "group": "method=DPO", "n_bases": 3, "n_pairs": 3, "n_not_reached_treatment": 0,
         "n_not_reached_control": 0, "estimate": -0.002, "lo": -0.01, "hi": 0.0,
         "verdict": "inconclusive", "bases_expected": "1/3",
         "per_base": {0: 0.001, 1: -0.003, 2: -0.004}},
    ]  # fmt: skip
    return pd.DataFrame([common | r for r in rows], columns=list(ROW_COLS))


EXPECTED = """\
- **A1**: BAPO keeps more knowledge (supported 1, not reached 1; of 2)
- **H1**: loss grows | heterogeneity (inconclusive 1; of 1)

| claim | comparison | metric | at | group | estimate [95% CI] | bases | pairs | not reached (T/C) | bases with expected sign | verdict | per base |
|---|---|---|---|---|---|---|---|---|---|---|---|
| A1 | BAPO lambda=0.01 - DPO | knowledge | x=0.5 | all | +0.100 [+0.050, +0.150] | 2 | 6 | 0/0 | 2/2 | supported | b0:+0.080 b1:+0.120 |
| A1 | BAPO lambda=0.01 - DPO | knowledge | x=0.75 | all | n/a [n/a, n/a] | 0 | 0 | 12/0 | 0/0 | not reached |  |
| H1 | slope on het | loss |  | method=DPO | -0.002 [-0.010, +0.000] | 3 | 3 | 0/0 | 1/3 | inconclusive | 0:+0.001 1:-0.003 2:-0.004 |

Intervals: percentile hierarchical bootstrap (bases resampled, then seeds within each).
Verdict: supported (refuted) when the interval excludes 0 on the claimed (opposite) side, inconclusive when it includes 0, not reached or insufficient when too few bases have a value.
"""  # noqa: E501


def test_markdown_is_exact_and_independent_of_row_order() -> None:
    table = tiny_table()
    assert to_markdown(table, per_base=True) == EXPECTED
    shuffled = table.sample(frac=1, random_state=3)
    assert to_markdown(shuffled, per_base=True) == EXPECTED
    lines = to_markdown(table).splitlines()
    assert lines[3].endswith("| verdict |") and lines[5].endswith("| 2/2 | supported |")
    with pytest.raises(ValueError, match="different CI levels"):
        to_markdown(table.assign(ci=[0.95, 0.9, 0.95]))
    assert to_markdown(table.iloc[:0]) == "No claim has data.\n"


def test_markdown_of_a_computed_table_is_deterministic() -> None:
    def generate() -> str:
        paired = claim_table([anchoring()], curves())
        slope = claim_table([TrendClaim("H1", "loss grows", "het", "loss", 1)], heterogeneity(0.1))
        return to_markdown(pd.concat([slope, paired], ignore_index=True))

    text = generate()
    assert text == generate()
    assert text.count("| A1 |") == 3 and text.count("| H1 |") == 1
    assert text.index("| A1 |") < text.index("| H1 |")  # sorted by claim, not by input order
