"""Helpers shared by the stages: the run's data, and its reference tables."""

from __future__ import annotations

import logging

from bapo_exp.config import Config
from bapo_exp.data.types import PreferenceData
from bapo_exp.references import Reference, RefTable, base_responses, references_of, score_examples
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


def load_data(cfg: Config, run: RunDir | None = None) -> PreferenceData:
    """Build the configured preference data (validated); write its report to the run dir."""
    from bapo_exp.data import build_dataset

    def load_writer(name: str):
        from hydra import compose  # the writer is another model config of conf/model/
        from omegaconf import OmegaConf

        from bapo_exp.modeling.load import load_model

        model_cfg = OmegaConf.to_object(compose(config_name=f"model/{name}").model)
        return load_model(model_cfg, cfg.paths.cache_dir)

    data = build_dataset(cfg.data, data_root=cfg.paths.data_root, cache_dir=cfg.paths.cache_dir,
                         load_writer=load_writer)  # fmt: skip
    if run is not None:
        run.write_json("data/report.json", data.report)
    log.info("data %s: %d train / %d held-out pairs", cfg.data.name, len(data.train),
             len(data.heldout))  # fmt: skip
    return data


def reference_tables(
    cfg: Config, data: PreferenceData, main: Reference | None = None
) -> tuple[dict[str, str], RefTable, RefTable]:
    """Base responses for every prompt, and the reference tables of train and held-out pairs."""
    refs = references_of(cfg, main)
    prompts = [e.prompt for e in data.train + data.heldout]
    base = base_responses(cfg, refs[0], prompts)
    return (
        base,
        score_examples(cfg, refs, data.train, base),
        score_examples(cfg, refs, data.heldout, base),
    )
