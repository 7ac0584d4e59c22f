"""Dataset builder for the synthetic world (same signature as the other dataset builders).

    from bapo_exp.config import DataConfig
    from bapo_exp.synthetic import build_synthetic
    cfg = DataConfig(name="synthetic", path="<world dir>", preferences=["academic"])
    data = build_synthetic(cfg, data_root=".", cache_dir="runs/cache")

Pairs come from the world's ``pairs.jsonl``. The split is **by entity** (design): every
question about a held-out entity is held out, so no prompt, and no entity, is on both sides;
held-out prompts ask about facts the micro base model learnt in pretraining.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bapo_exp.data.types import PreferenceData, PreferenceExample
from bapo_exp.synthetic.export import ensure_world, load_world_json, read_jsonl
from bapo_exp.synthetic.styles import NEUTRAL
from bapo_exp.synthetic.world import WorldConfig


def split_entities(entities: list[str], heldout_frac: float, seed: int) -> set[str]:
    """The held-out entities: a seeded ``heldout_frac`` share (at least one, not all)."""
    order = sorted(entities)
    random.Random(f"split:{seed}").shuffle(order)
    n_held = min(max(1, round(heldout_frac * len(order))), len(order) - 1)
    return set(order[:n_held])


def mix(records: list[dict], preferences: list[str], n: int | None, seed: int) -> list[dict]:
    """Union the pairs of ``preferences``, balanced: each contributes ``n // k`` (+1 for the
    first ``n % k``) when ``n`` is set; the result is shuffled with ``seed``."""
    rng = random.Random(f"mix:{seed}")
    by_pref = {p: [r for r in records if r["preference"] == p] for p in preferences}
    for p in preferences:
        rng.shuffle(by_pref[p])
    if n is not None:
        k = len(preferences)
        by_pref = {p: by_pref[p][: n // k + (i < n % k)] for i, p in enumerate(preferences)}
    out = [r for p in preferences for r in by_pref[p]]
    rng.shuffle(out)
    return out


def _example(record: dict, key: str) -> PreferenceExample:
    source = {k: str(record[k]) for k in ("fact_id", "entity", "attribute", "rejected_style")}
    source.update(dataset="synthetic", world=key)
    return PreferenceExample(
        id=record["id"],
        prompt=record["prompt"],
        chosen=record["chosen"],
        rejected=record["rejected"],
        preference=record["preference"],
        source=source,
    )


def _world_root(path: str | None, cache_dir: str | Path) -> Path:
    if path is None:
        return ensure_world(WorldConfig(), Path(cache_dir) / "synthetic")
    root = Path(path)
    if not (root / "READY").exists():
        raise FileNotFoundError(
            f"{root} is not a synthetic world; create it with "
            "bapo_exp.synthetic.write_world(WorldConfig(...), root)"
        )
    return root


def _report(root, meta, preferences, held, n_all, n_kept, train, heldout) -> dict:
    return {
        "dataset": "synthetic",
        "world": str(root),
        "world_key": meta["key"],
        "preferences": preferences,
        "split": "by entity (every question about a held-out entity is held out)",
        "heldout_entities": sorted(held),
        "n_pairs_available": n_all,
        "n_dropped_neutral_rejected": n_all - n_kept,
        "n_train": len(train),
        "n_heldout": len(heldout),
        "train_per_preference": dict(Counter(r["preference"] for r in train)),
        "heldout_per_preference": dict(Counter(r["preference"] for r in heldout)),
        "train_prompts": len({r["prompt"] for r in train}),
        "heldout_prompts": len({r["prompt"] for r in heldout}),
    }


def build_synthetic(
    cfg: Any,
    *,
    data_root: str | Path,
    cache_dir: str | Path,
    load_writer: Callable[..., Any] | None = None,
) -> PreferenceData:
    """Preference pairs of the synthetic world for ``cfg.preferences`` (styles).

    Args:
        cfg: a ``DataConfig``. ``path`` = world directory (``None``: the default world, written
            under ``cache_dir/synthetic``); ``preferences`` = style names (empty: all);
            ``include_normal`` also keeps pairs whose rejected response is the neutral (base)
            style; ``heldout_frac``/``split_seed`` split by entity; ``n_train``/``n_heldout``
            cap the pairs after balanced mixing with ``mix_seed``.
        data_root: unused (the world is self-contained); kept for the shared signature.
        cache_dir: where the default world is written.
        load_writer: unused (no generated responses here).

    Returns:
        ``PreferenceData`` with train and held-out pairs and a report (counts, split).
    """
    del data_root, load_writer
    root = _world_root(cfg.path, cache_dir)
    meta = load_world_json(root)
    styles = list(meta["config"]["styles"])
    preferences = list(cfg.preferences) or styles
    unknown = sorted(set(preferences) - set(styles))
    if unknown:
        raise ValueError(f"unknown synthetic styles {unknown}; this world has {styles}")
    records = [r for r in read_jsonl(root / "pairs.jsonl") if r["preference"] in preferences]
    n_all = len(records)
    if not cfg.include_normal:
        records = [r for r in records if r["rejected_style"] != NEUTRAL]
    held = split_entities(meta["entities"], cfg.heldout_frac, cfg.split_seed)
    train = mix(
        [r for r in records if r["entity"] not in held], preferences, cfg.n_train, cfg.mix_seed
    )
    heldout = mix(
        [r for r in records if r["entity"] in held], preferences, cfg.n_heldout, cfg.mix_seed
    )
    report = _report(root, meta, preferences, held, n_all, len(records), train, heldout)
    key = meta["key"]
    return PreferenceData(
        [_example(r, key) for r in train], [_example(r, key) for r in heldout], report
    )
