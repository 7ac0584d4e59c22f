"""Preference data: the ``DATASETS`` registry and ``build_dataset``.

A builder turns a source (files, or a writer model) into per-preference pairs split by prompt
(``SplitPools``); ``build_dataset`` then cleans them (``validation.clean_pairs``) and mixes the
preferences (``heterogeneity.mix``), so every source is cleaned, counted and mixed the same way.

    from bapo_exp.data import build_dataset
    data = build_dataset(cfg.data, data_root=cfg.paths.data_root, cache_dir=cfg.paths.cache_dir)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bapo_exp.config import DataConfig
from bapo_exp.data import dsp, persona_gen, psoups
from bapo_exp.data.heterogeneity import SplitPools, equal_shares, mix, split_groups
from bapo_exp.data.types import PreferenceData, PreferenceExample
from bapo_exp.data.validation import CLEANING_KEYS, DataError, clean_pairs
from bapo_exp.registry import Registry

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "check_dataset",
    "DataError",
    "PreferenceData",
    "PreferenceExample",
    "SplitPools",
    "build_dataset",
    "clean_pairs",
    "equal_shares",
    "mix",
    "split_groups",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """A preference source.

    Attributes:
        build: ``build(cfg: DataConfig, *, data_root, cache_dir, load_writer) -> SplitPools``.
        preflight: ``preflight(cfg, *, data_root, cache_dir)`` raising ``DataError`` on bad names,
            paths or records, run before any model is loaded; None: ``build`` is cheap (no model)
            and is the check.
        hard: ``hard(cfg, *, cache_dir) -> list[PreferenceExample]``, harder held-out pairs
            scored by the eval stage (``personal/hard_*``, ``evaluation.answers``); None: none.
    """

    build: Callable[..., SplitPools]
    preflight: Callable[..., None] | None = None
    hard: Callable[..., list[PreferenceExample]] | None = None


# Plug-ins add theirs (the synthetic world registers "synthetic" from bapo_exp.synthetic.plugin).
DATASETS: Registry[DatasetSpec] = Registry("dataset", config_key="data.name")
DATASETS.register("dsp", DatasetSpec(dsp.build))
DATASETS.register("psoups", DatasetSpec(psoups.build))
DATASETS.register("persona_gen", DatasetSpec(persona_gen.build, persona_gen.preflight))


def check_dataset(cfg: DataConfig, *, data_root: str, cache_dir: str) -> None:
    """Validate the configured data before any model is loaded (``DataError`` otherwise): a
    source's preflight, else the whole build, cleaning and mixing included (cheap sources)."""
    spec = DATASETS.require(cfg.name)
    if spec.preflight is not None:
        spec.preflight(cfg, data_root=data_root, cache_dir=cache_dir)
    else:
        build_dataset(cfg, data_root=data_root, cache_dir=cache_dir)


def _clean(
    by_pref: dict[str, list[PreferenceExample]], cfg: DataConfig
) -> tuple[dict, dict[str, dict[str, int]]]:
    kept, counts = {}, {}
    for pref, examples in by_pref.items():
        kept[pref], counts[pref] = clean_pairs(
            examples,
            drop_duplicates=cfg.drop_duplicates,
            drop_identical=cfg.drop_identical,
            max_chars=cfg.max_chars,
        )
    return kept, counts


def _clean_both(pools: SplitPools, cfg: DataConfig) -> tuple[dict, dict, dict]:
    train, train_counts = _clean(pools.train, cfg)
    heldout, heldout_counts = _clean(pools.heldout, cfg)
    sides = (train_counts, heldout_counts)
    report = {
        "train": train_counts,
        "heldout": heldout_counts,
        "total": {k: sum(c[k] for side in sides for c in side.values()) for k in CLEANING_KEYS},
        "dropped": {
            "empty": True,
            "identical": cfg.drop_identical,
            "duplicates": cfg.drop_duplicates,
            "over_length": cfg.max_chars is not None,
        },
    }
    return train, heldout, report


def build_dataset(
    cfg: DataConfig,
    *,
    data_root: str,
    cache_dir: str,
    load_writer: Callable[[str], tuple[Any, Any]] | None = None,
) -> PreferenceData:
    """Build, validate, clean and mix the preference pairs that ``cfg`` describes.

    Args:
        cfg: the data config; ``cfg.name`` selects the builder in ``DATASETS``.
        data_root: folder with the datasets (``paths.data_root``), for default file paths.
        cache_dir: cache folder (generated pairs are cached under it).
        load_writer: ``name -> (model, tokenizer)`` for sources that generate text
            (``persona_gen``); unused otherwise.
    Returns:
        ``PreferenceData`` with mixed train and held-out pairs and a ``report`` holding the
        source's notes plus ``pairs_built`` (before cleaning), ``cleaning`` (per side and
        preference) and ``counts`` (after mixing; ``{"train": {pref: n}, "heldout": {...}}``).
    Raises:
        KeyError: unknown ``cfg.name`` (the message lists the valid names).
        DataError: malformed data (the message names file, record index and field).
    """
    builder = DATASETS.require(cfg.name).build
    pools = builder(cfg, data_root=data_root, cache_dir=cache_dir, load_writer=load_writer)
    report = dict(pools.report)
    report["pairs_built"] = {
        "train": {p: len(v) for p, v in pools.train.items()},
        "heldout": {p: len(v) for p, v in pools.heldout.items()},
    }
    train_pools, heldout_pools, report["cleaning"] = _clean_both(pools, cfg)
    train, train_counts = mix(train_pools, cfg.n_train, cfg.mix_seed)
    heldout, heldout_counts = mix(heldout_pools, cfg.n_heldout, cfg.mix_seed)
    report["counts"] = {"train": train_counts, "heldout": heldout_counts}
    log.info(
        "data %s: %d train / %d held-out pairs; counts %s; cleaning %s",
        cfg.name,
        len(train),
        len(heldout),
        report["counts"],
        report["cleaning"]["total"],
    )
    return PreferenceData(train=train, heldout=heldout, report=report)
