"""Dataset builder for the synthetic world (the ``synthetic`` entry of ``DATASETS``).

    from bapo_exp.data import build_dataset
    cfg = SyntheticDataConfig(name="synthetic", preferences=["academic"], world={"seed": 0})
    data = build_dataset(cfg, data_root=".", cache_dir="runs/cache")

Pairs come from the world's ``pairs.jsonl``. The split is **by entity** (design): every
question about a held-out entity is held out, so no prompt, and no entity, is on both sides;
held-out prompts ask about facts the micro base model learnt in pretraining. The builder
returns per-preference ``SplitPools``; ``build_dataset`` cleans and mixes them like every
other source.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bapo_exp.config import DataConfig
from bapo_exp.data.heterogeneity import SplitPools
from bapo_exp.data.types import PreferenceExample
from bapo_exp.data.validation import check_preferences
from bapo_exp.folders import is_ready
from bapo_exp.synthetic.export import (
    load_world_json,
    read_jsonl,
    world_config,
    world_dir,
    write_world,
)
from bapo_exp.synthetic.styles import NEUTRAL


@dataclass
class SyntheticDataConfig(DataConfig):
    """``data=synthetic``: the world's own settings (``/schema/data/synthetic``, stored by the
    plug-in; the core schema knows none of them)."""

    include_normal: bool = False  # also keep pairs whose rejected answer is neutral (base) style
    world: dict[str, Any] = field(default_factory=dict)  # WorldConfig knobs (the world's key)


def split_entities(entities: list[str], heldout_frac: float, seed: int) -> set[str]:
    """The held-out entities: a seeded ``heldout_frac`` share (at least one, not all)."""
    order = sorted(entities)
    random.Random(f"split:{seed}").shuffle(order)
    n_held = min(max(1, round(heldout_frac * len(order))), len(order) - 1)
    return set(order[:n_held])


def _example(record: dict, key: str) -> PreferenceExample:
    fields = ("fact_id", "entity", "attribute", "value", "rejected_style", "kind")
    source = {k: str(record[k]) for k in fields if k in record}
    source.update(dataset="synthetic", world=key)
    return PreferenceExample(
        id=record["id"],
        prompt=record["prompt"],
        chosen=record["chosen"],
        rejected=record["rejected"],
        preference=record["preference"],
        source=source,
    )


def world_root(path: str | None, knobs: dict | None, cache_dir: str | Path) -> Path:
    """The world folder: ``path`` (written there from ``knobs`` when it is not a world yet),
    else the cache-keyed folder of ``knobs`` under ``<cache_dir>/synthetic``."""
    if path is None:
        return world_dir(knobs, cache_dir)
    root = Path(path)
    if is_ready(root):  # finished and intact (a damaged world is written again from knobs)
        return root
    if knobs:
        return write_world(world_config(knobs), root)
    raise FileNotFoundError(
        f"{root} is not a synthetic world (no READY); set data.world to write one there, "
        "or data.path=null for the cache-keyed default"
    )


def _by_preference(records: list[dict], preferences: list[str], key: str) -> dict:
    return {p: [_example(r, key) for r in records if r["preference"] == p] for p in preferences}


def _preferences(cfg: Any, meta: dict) -> list[str]:
    styles = list(meta["config"]["styles"])
    if not cfg.preferences:  # empty data.preferences: every style, in the world's order
        return styles
    return check_preferences(cfg.preferences, styles, kind="synthetic style",
                             defined_in="data.world.styles")  # fmt: skip


def build_synthetic(
    cfg: Any,
    *,
    data_root: str | Path,
    cache_dir: str | Path,
    load_writer: Callable[..., Any] | None = None,
) -> SplitPools:
    """Preference pairs of the synthetic world for ``cfg.preferences`` (styles), split by entity.

    Args:
        cfg: a ``SyntheticDataConfig``. ``path`` = world directory (``None``: the cache-keyed
            world of ``world``); ``world`` = ``WorldConfig`` knobs; ``preferences`` = style
            names (empty: all); ``include_normal`` also keeps pairs whose rejected response is
            in the neutral (base) style; ``heldout_frac``/``split_seed`` split by entity.
            Capping and mixing (``n_train``, ``n_heldout``, ``mix_seed``) are
            ``build_dataset``'s.
        data_root: unused (the world is self-contained); kept for the shared signature.
        cache_dir: where the cache-keyed world is written.
        load_writer: unused (no generated responses here).

    Returns:
        ``SplitPools`` (per preference, pairs in file order) with a report (world, split).
    """
    del data_root, load_writer
    root = world_root(cfg.path, cfg.world, cache_dir)
    meta = load_world_json(root)
    preferences = _preferences(cfg, meta)
    records = [r for r in read_jsonl(root / "pairs.jsonl") if r["preference"] in preferences]
    n_all = len(records)
    if not cfg.include_normal:
        records = [r for r in records if r["rejected_style"] != NEUTRAL]
    held = split_entities(meta["entities"], cfg.heldout_frac, cfg.split_seed)
    train = [r for r in records if r["entity"] not in held]
    heldout = [r for r in records if r["entity"] in held]
    report = {
        "dataset": "synthetic",
        "world": str(root),
        "world_key": meta["key"],
        "preferences": preferences,
        "split": {
            "method": "by_entity",
            "seed": cfg.split_seed,
            "heldout_frac": cfg.heldout_frac,
            "heldout_entities": sorted(held),
            "n_train_prompts": len({r["prompt"] for r in train}),
            "n_heldout_prompts": len({r["prompt"] for r in heldout}),
        },
        "n_pairs_available": n_all,
        "n_dropped_neutral_rejected": n_all - len(records),
    }
    key = meta["key"]
    return SplitPools(
        _by_preference(train, preferences, key), _by_preference(heldout, preferences, key), report
    )


def hard_synthetic(cfg: Any, *, cache_dir: str | Path) -> list[PreferenceExample]:
    """The world's harder pairs (``hard_pairs.jsonl``) of ``cfg.preferences`` about the held-out
    entities of ``cfg``'s split (never trained on), in file order (``DatasetSpec.hard``)."""
    root = world_root(cfg.path, cfg.world, cache_dir)
    meta = load_world_json(root)
    path = root / "hard_pairs.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the world {root} predates the hard pairs; "
                                "delete it to have it written again")  # fmt: skip
    preferences = set(_preferences(cfg, meta))
    held = split_entities(meta["entities"], cfg.heldout_frac, cfg.split_seed)
    return [
        _example(r, meta["key"])
        for r in read_jsonl(path)
        if r["preference"] in preferences and r["entity"] in held
    ]
