"""Helpers shared by the stages: named model configs, the run's data and its reference tables."""

from __future__ import annotations

import dataclasses
import logging
from typing import NamedTuple

from bapo_exp.config import CONF_DIR, Config, ModelSpec
from bapo_exp.data.types import PreferenceData
from bapo_exp.modeling.reference_model import Reference
from bapo_exp.reference_tables import RefTable, base_responses, score_examples
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


def named_model(name: str):
    """``conf/model/<name>.yaml`` as a ``ModelConfig`` (inside or outside a Hydra app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    if GlobalHydra.instance().is_initialized():
        return OmegaConf.to_object(compose(config_name=f"model/{name}").model)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return OmegaConf.to_object(compose(config_name=f"model/{name}").model)


def load_data(cfg: Config, run: RunDir | None = None) -> PreferenceData:
    """Build the configured preference data (validated); write its report to the run dir."""
    from bapo_exp.data import build_dataset

    def load_writer(name: str):  # the writer is another model config of conf/model/
        from bapo_exp.modeling.load import load_model

        return load_model(named_model(name), cfg.paths.cache_dir)

    data = build_dataset(cfg.data, data_root=cfg.paths.data_root, cache_dir=cfg.paths.cache_dir,
                         load_writer=load_writer)  # fmt: skip
    if run is not None:
        run.write_json("data/report.json", data.report)
    log.info("data %s: %d train / %d held-out pairs", cfg.data.name, len(data.train),
             len(data.heldout))  # fmt: skip
    return data


def extra_reference_specs(cfg: Config) -> list[ModelSpec]:
    """The method's extra references, or their ``reference_substitute`` (see the config)."""
    specs = cfg.method.reference_models()
    if cfg.reference_substitute is None or not specs:
        return specs
    sub = named_model(cfg.reference_substitute)
    return [
        dataclasses.replace(sub, name=f"{sub.name}_{k}", tiny=dataclasses.replace(sub.tiny, seed=k))
        for k in range(1, len(specs) + 1)
    ]


def references_of(cfg: Config, main: Reference | None = None) -> list[Reference]:
    """Reference 0 (the policy's initial model, ``main`` if given) then the method's extra ones."""
    cache = cfg.paths.cache_dir
    main = main or Reference(cfg.model, cache)
    return [main, *(Reference(spec, cache) for spec in extra_reference_specs(cfg))]


def base_responses_of(cfg: Config, main: Reference, prompts: list[str]) -> dict[str, str]:
    """``reference_tables.base_responses`` with the run's settings."""
    return base_responses(main, prompts, cfg.reference, cache_dir=cfg.paths.cache_dir,
                          seed=cfg.seed)  # fmt: skip


class Tables(NamedTuple):
    """What the reference stage computes and the train stage reads back from the caches."""

    base: dict[str, str]  # prompt -> y_b, for every train, held-out and anchor prompt
    train: RefTable
    heldout: RefTable
    anchor_prompts: list[str] | None  # per training pair, with method.anchor.prompts=file


def anchor_prompts_of(cfg: Config, n: int) -> list[str] | None:
    """The anchor prompt of each of ``n`` training pairs when BAPO anchors on a prompt file
    (design, METHODS §3): the file's prompts in order, cycled; None = the pairs' own prompts."""
    path = cfg.method.anchor_prompt_file()
    if path is None:
        return None
    from bapo_exp.data.io import read_prompts

    prompts = [p for _, p in read_prompts(path)]
    return [prompts[i % len(prompts)] for i in range(n)]


def reference_tables(cfg: Config, data: PreferenceData, main: Reference | None = None) -> Tables:
    """Base responses for every prompt, and the reference tables of train and held-out pairs."""
    refs = references_of(cfg, main)
    anchors = anchor_prompts_of(cfg, len(data.train))
    prompts = [e.prompt for e in data.train + data.heldout] + (anchors or [])
    base = base_responses_of(cfg, refs[0], prompts)
    return Tables(
        base,
        score_examples(refs, data.train, base, cfg.reference, anchors),
        score_examples(refs, data.heldout, base, cfg.reference),
        anchors,
    )
