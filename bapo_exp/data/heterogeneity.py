"""Preference heterogeneity, the mixing axis (METHODS §7): pure, seeded splitting and mixing.

A training set unions the pairs of one or several preferences (``data.preferences``); ``mix``
takes exact, equal per-preference shares. The measured distance of METHODS §7 needs the
reference model and is computed by the reference stage, not here.

    from bapo_exp.data.heterogeneity import mix, split_groups
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from bapo_exp.data.types import PreferenceExample
from bapo_exp.data.validation import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class SplitPools:
    """What a builder returns: per-preference pairs, already split by prompt.

    Attributes:
        train: preference id -> training pairs.
        heldout: preference id -> held-out pairs (no prompt is in both).
        report: provenance, split notes and counts for ``PreferenceData.report``.
    """

    train: dict[str, list[PreferenceExample]]
    heldout: dict[str, list[PreferenceExample]]
    report: dict = field(default_factory=dict)


def n_heldout_groups(n: int, heldout_frac: float) -> int:
    """Number of held-out groups: round half up, at least 1 and at most n-1 when n >= 2."""
    if not 0.0 <= heldout_frac < 1.0:
        raise ValueError(f"data.heldout_frac must be in [0, 1), got {heldout_frac}")
    k = math.floor(heldout_frac * n + 0.5)
    if heldout_frac > 0 and n >= 2:
        k = min(max(k, 1), n - 1)
    return k


def split_groups(keys: Sequence[Hashable], *, heldout_frac: float, seed: int) -> set:
    """Choose the held-out groups (e.g. query texts) with a seeded shuffle.

    The result depends only on the set of keys and the seed, not on their order, so every
    preference of a source splits its prompts the same way.
    Returns:
        The set of held-out keys; all other keys are training keys.
    """
    uniq = sorted(set(keys), key=repr)
    k = n_heldout_groups(len(uniq), heldout_frac)
    random.Random(f"split:{seed}").shuffle(uniq)
    return set(uniq[:k])


def split_note(keys: Sequence[Hashable], held: set, *, heldout_frac: float, seed: int) -> dict:
    """The report's ``split`` entry for a by-prompt split made by ``split_groups``."""
    return {
        "method": "by_prompt",
        "seed": seed,
        "heldout_frac": heldout_frac,
        "n_train_prompts": len(set(keys) - held),
        "n_heldout_prompts": len(held),
    }


def equal_shares(n_total: int, preferences: Sequence[str]) -> dict[str, int]:
    """Split ``n_total`` into equal integer shares; the remainder goes one each to the first
    preferences in sorted order (so the result does not depend on the listing order)."""
    if n_total < 0:
        raise ValueError(f"n_total must be >= 0, got {n_total}")
    if not preferences:
        raise ValueError("no preferences to share pairs between")
    base, rem = divmod(n_total, len(preferences))
    return {p: base + (1 if i < rem else 0) for i, p in enumerate(sorted(preferences))}


def mix(
    examples_by_pref: Mapping[str, Sequence[T]], n_total: int | None, seed: int
) -> tuple[list[T], dict[str, int]]:
    """Union the pools of several preferences with exact, reproducible counts.

    Each pool is shuffled with its own seed derived from ``(seed, preference)``, so the pairs
    drawn for one preference do not change when another preference is added, and a smaller
    ``n_total`` takes a subset of a larger one. The union is then shuffled with ``seed``.
    Args:
        examples_by_pref: preference id -> its pairs (in a fixed, source order).
        n_total: total pairs, shared equally (remainder as in ``equal_shares``); None = all.
        seed: mixing seed.
    Returns:
        (mixed examples, per-preference counts).
    Raises:
        DataError: a preference has fewer pairs than its share (a one-line user error).
    """
    if n_total is None:
        counts = {p: len(v) for p, v in sorted(examples_by_pref.items())}
    else:
        counts = equal_shares(n_total, list(examples_by_pref))
        short = {
            p: len(examples_by_pref[p]) for p, c in counts.items() if c > len(examples_by_pref[p])
        }
        if short:
            raise DataError(
                f"cannot draw {n_total} pairs as equal shares {counts}: available {short}; "
                f"lower data.n_train / data.n_heldout"
            )
    mixed: list[T] = []
    for pref, count in counts.items():
        pool = list(examples_by_pref[pref])
        random.Random(f"mix:{seed}:{pref}").shuffle(pool)
        mixed.extend(pool[:count])
    random.Random(f"order:{seed}").shuffle(mixed)
    log.info("mixed %d pairs from %d preference(s): %s", len(mixed), len(counts), counts)
    return mixed, counts
