"""Held-out generation items, and means with their standard errors (shared by the
personalisation measures: ``evaluation.personalisation``, ``evaluation.answers``).

    items = select_items(data.heldout, n)     # distinct (preference, prompt), balanced
    put(out, "gen/style_share", values)       # out[key] and out[key + "_stderr"]
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

from bapo_exp.data.types import PreferenceExample


@dataclass(frozen=True)
class GenItem:
    """One held-out (preference, prompt) with its gold pairs."""

    id: str
    preference: str
    prompt: str
    pairs: tuple[PreferenceExample, ...]


def select_items(heldout: Sequence[PreferenceExample], n: int) -> list[GenItem]:
    """``n`` distinct (preference, prompt), taken in turn from each preference (design: balanced
    even when the mixed held-out order starts with a run of one preference), each preference's
    in held-out order, with all their held-out pairs.

    ``id`` is ``<preference>/<sha256(prompt)[:12]>``: stable across runs and splits.
    """
    groups: dict[tuple[str, str], list[PreferenceExample]] = {}
    for e in heldout:
        groups.setdefault((e.preference, e.prompt), []).append(e)
    queues: dict[str, list[tuple[str, str]]] = {}
    for key in groups:
        queues.setdefault(key[0], []).append(key)
    order = [q[r] for r in range(max(map(len, queues.values()), default=0))
             for _, q in sorted(queues.items()) if r < len(q)]  # fmt: skip
    return [
        GenItem(f"{pref}/{hashlib.sha256(prompt.encode()).hexdigest()[:12]}", pref, prompt,
                tuple(groups[pref, prompt]))
        for pref, prompt in order[: max(n, 0)]
    ]  # fmt: skip


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its sample standard error; (NaN, NaN) for no values, SE NaN for one."""
    import torch  # lazily: the synthetic plug-in imports this module at every start

    x = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if len(x) == 0:
        return math.nan, math.nan
    se = float(x.std(correction=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), se


def put(out: dict, key: str, values: Sequence[float]) -> None:
    """``out[key]`` = mean of ``values``, ``out[key + "_stderr"]`` = its standard error."""
    out[key], out[f"{key}_stderr"] = mean_se(values)
