"""Mixing and splitting: exact, seeded, reproducible (METHODS §7, mixing axis)."""

from __future__ import annotations

import pytest

from bapo_exp.data.heterogeneity import equal_shares, mix, n_heldout_groups, split_groups


def pools(sizes: dict[str, int]) -> dict[str, list[str]]:
    return {p: [f"{p}-{i}" for i in range(n)] for p, n in sizes.items()}


@pytest.mark.parametrize(
    ("n", "prefs", "expected"),
    [
        (10, ["c", "a", "b"], {"a": 4, "b": 3, "c": 3}),
        (11, ["a", "b", "c"], {"a": 4, "b": 4, "c": 3}),
        (12, ["a", "b", "c"], {"a": 4, "b": 4, "c": 4}),
        (2, ["a", "b", "c"], {"a": 1, "b": 1, "c": 0}),
        (7, ["solo"], {"solo": 7}),
    ],
)
def test_equal_shares_remainder_goes_to_first_in_sorted_order(n, prefs, expected):
    assert equal_shares(n, prefs) == expected
    assert equal_shares(n, list(reversed(prefs))) == expected  # listing order does not matter


@pytest.mark.parametrize("n_total", [0, 1, 5, 29, 30, 31, 60])
def test_mix_counts_are_exact(n_total):
    by_pref = pools({"P1A": 40, "P2B": 25, "P3A": 30})
    mixed, counts = mix(by_pref, n_total, seed=3)
    assert len(mixed) == n_total == sum(counts.values())
    assert counts == equal_shares(n_total, list(by_pref))
    for pref, c in counts.items():
        assert sum(1 for x in mixed if x.startswith(pref)) == c
    assert len(set(mixed)) == len(mixed)  # drawn without replacement


def test_mix_is_reproducible_and_seeded():
    by_pref = pools({"a": 50, "b": 50})
    first, _ = mix(by_pref, 20, seed=7)
    again, _ = mix(pools({"a": 50, "b": 50}), 20, seed=7)
    other, _ = mix(by_pref, 20, seed=8)
    assert first == again
    assert first != other


def test_mix_draws_do_not_depend_on_other_preferences_and_nest():
    one, _ = mix(pools({"a": 50}), 10, seed=1)
    two, _ = mix(pools({"a": 50, "b": 50}), 20, seed=1)
    assert {x for x in two if x.startswith("a")} == set(one)
    small, _ = mix(pools({"a": 50, "b": 50}), 10, seed=1)
    assert set(small) <= set(two)  # a smaller n_total takes a subset of a larger one


def test_mix_all_and_too_few():
    mixed, counts = mix(pools({"a": 3, "b": 5}), None, seed=0)
    assert counts == {"a": 3, "b": 5} and len(mixed) == 8
    with pytest.raises(ValueError, match="available"):
        mix(pools({"a": 3, "b": 50}), 10, seed=0)


def test_split_groups_reproducible_disjoint_and_order_free():
    keys = [f"q{i}" for i in range(101)]
    held = split_groups(keys, heldout_frac=0.2, seed=0)
    assert len(held) == 20  # floor(20.2 + 0.5)
    assert held == split_groups(list(reversed(keys)) + keys, heldout_frac=0.2, seed=0)
    assert held != split_groups(keys, heldout_frac=0.2, seed=1)
    assert held <= set(keys)


def test_n_heldout_groups_bounds():
    assert n_heldout_groups(4, 0.2) == 1
    assert n_heldout_groups(2, 0.01) == 1
    assert n_heldout_groups(2, 0.9) == 1
    assert n_heldout_groups(10, 0.0) == 0
    with pytest.raises(ValueError):
        n_heldout_groups(10, 1.0)
