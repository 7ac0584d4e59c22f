"""flatten: keys, standard errors against hand computation, chance rate and the chance flag."""

from __future__ import annotations

import math

import pytest

from bapo_exp.evaluation.summary import at_chance, binomial_stderr, flatten


def task_record(name: str, acc: float, n: int, chance: float, stderr=None) -> dict:
    res = {"acc,none": acc, "acc_norm,none": acc}
    if stderr is not None:
        res |= {"acc_stderr,none": stderr, "acc_norm_stderr,none": "N/A"}
    return {
        "results": {name: res},
        "n-samples": {name: {"original": 2 * n, "effective": n}},
        "items": {name: {"n": n, "chance": chance}},
        "layout": {name: {"name": name, "tasks": [name], "weighting": "size"}},
        "wall_time_s": 1.5,
    }


def test_keys_and_binomial_fallback() -> None:
    flat = flatten({"scienceqa": task_record("scienceqa", 0.6, 10, 0.4)})
    assert set(flat) == {
        f"scienceqa/{k}"
        for k in (
            "acc",
            "acc_stderr",
            "acc_norm",
            "acc_norm_stderr",
            "n",
            "chance",
            "at_chance",
            "at_chance_norm",
            "wall_time_s",
        )
    }
    assert flat["scienceqa/acc_stderr"] == pytest.approx(math.sqrt(0.6 * 0.4 / 10))
    assert flat["scienceqa/n"] == 10 and flat["scienceqa/chance"] == 0.4


def test_lm_eval_stderr_is_kept_and_na_falls_back() -> None:
    flat = flatten({"s": task_record("s", 0.5, 8, 0.25, stderr=0.1234)})
    assert flat["s/acc_stderr"] == 0.1234
    assert flat["s/acc_norm_stderr"] == pytest.approx(math.sqrt(0.25 / 8))  # "N/A" -> binomial


def test_group_chance_is_item_weighted_and_mean_groups_use_subset_means() -> None:
    record = {
        "results": {
            "a": {"acc,none": 1.0, "acc_norm,none": 1.0},
            "b": {"acc,none": 0.5, "acc_norm,none": 0.5},
            "g": {"acc,none": 0.75, "acc_norm,none": 0.75},
            "m": {"acc,none": 0.75, "acc_norm,none": 0.75},
        },
        "n-samples": {"a": {"effective": 10}, "b": {"effective": 30}},
        "items": {"a": {"n": 10, "chance": 0.5}, "b": {"n": 30, "chance": 0.25}},
        "layout": {
            "g": {"name": "g", "tasks": ["a", "b"], "weighting": "size"},
            "m": {"name": "m", "tasks": ["a", "b"], "weighting": "mean"},
        },
    }
    flat = flatten({"x": record})
    assert flat["g/chance"] == pytest.approx((10 * 0.5 + 30 * 0.25) / 40)
    assert flat["m/chance"] == pytest.approx((0.5 + 0.25) / 2)
    assert flat["g/n"] == flat["m/n"] == 40
    assert flat["g/acc_stderr"] == pytest.approx(math.sqrt(0.75 * 0.25 / 40))
    se_a, se_b = 0.0, math.sqrt(0.5 * 0.5 / 30)
    assert flat["m/acc_stderr"] == pytest.approx(math.sqrt(se_a**2 + se_b**2) / 2)


@pytest.mark.parametrize(
    ("acc", "n", "chance", "flag"),
    [
        (0.26, 4705, 0.25, 1.0),  # MMLU humanities as measured once: at chance
        (0.42, 221, 0.5, 0.0),  # below chance by more than 2 s.e. (sqrt(.42*.58/221) = .033)
        (0.9, 100, 0.25, 0.0),
        (0.0, 2, 0.5, 1.0),  # two items prove nothing: se0 = sqrt(.25/2) = .35
        (1.0, 100, 0.5, 0.0),
    ],
)
def test_chance_flag(acc, n, chance, flag) -> None:
    flat = flatten({"s": task_record("s", acc, n, chance)})
    assert flat["s/at_chance"] == flag == flat["s/at_chance_norm"]


def test_at_chance_edges() -> None:
    assert at_chance(0.30, 0.0249, 0.25, 0.0) == 0.0  # 0.05 > 2 * 0.0249
    assert at_chance(0.30, 0.0251, 0.25, 0.0) == 1.0
    assert math.isnan(at_chance(0.3, 0.1, float("nan"), 0.1))
    assert math.isnan(binomial_stderr(0.5, 0))


def test_missing_results_entry_is_skipped() -> None:
    record = task_record("s", 0.5, 4, 0.5)
    record["layout"]["ghost"] = {"name": "ghost", "tasks": ["s"], "weighting": "size"}
    assert not any(k.startswith("ghost/") for k in flatten({"s": record}))
