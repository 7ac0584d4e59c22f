"""Helpers shared by the stages: the run's data, its reference tables, and multi-process views."""

from __future__ import annotations

import dataclasses
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

from bapo_exp.config import CONF_DIR, Config, ModelSpec
from bapo_exp.data.types import PreferenceData
from bapo_exp.logs import drop_file_logging
from bapo_exp.modeling.reference import Reference
from bapo_exp.references import RefTable, base_responses, score_examples
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
    """``references.base_responses`` with the run's settings."""
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


# --- multi-process (accelerate launch): the main process writes, the others compute ---------

DATA_PARALLEL_STAGES = ("train",)  # the only stage every process runs; the rest run on rank 0


@dataclass(frozen=True)
class WorkerRunDir(RunDir):
    """The run directory as a non-main process sees it: it reads, and never writes.

    Under ``accelerate launch`` every process shares one run directory; only the main
    process writes ``env.json``, summaries, ``DONE`` markers, reports and metrics.
    """

    def write_json(self, rel: str, obj: Any) -> Path:
        return self.root / rel

    def append_jsonl(self, rel: str, obj: dict) -> None:
        return None

    def save_config(self, yaml_text: str) -> None:
        return None

    def mark_done(self, stage: str, summary: dict[str, Any], seconds: float | None = None) -> None:
        return None


def world_size() -> int:
    """Processes of this job, from the launcher's environment (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_worker() -> bool:
    """A process other than the main one under ``accelerate launch`` (``RANK > 0``)."""
    return world_size() > 1 and int(os.environ.get("RANK", "0")) > 0


def process_view(cfg: Config | None, run: RunDir) -> tuple[Config, RunDir]:
    """This process's view of the job: ``(cfg, run)`` unchanged in a single process.

    Under ``accelerate launch`` (``WORLD_SIZE > 1``) the process group is set up here; the main
    process has checked the config (a re-launch's merged one) and hands it to the others
    (``cfg`` is None there); every process must agree on the run directory (pass
    ``hydra.run.dir``: a ``${now:}`` stamp can differ between processes), and a non-main process
    gets a run directory that never writes, no tracker (``logger=none``), no ``main.log``
    handler, and only the data-parallel stages.
    """
    if world_size() <= 1:
        assert cfg is not None
        return cfg, run
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=not torch.cuda.is_available())
    [cfg, main_root] = broadcast_object_list([cfg, str(run.root.resolve())], from_process=0)
    if main_root != str(run.root.resolve()):
        raise RuntimeError(
            f"process {state.process_index} has run directory {run.root}, the main process "
            f"{main_root}: pass hydra.run.dir=<dir> under accelerate launch"
        )
    if state.is_main_process:
        return cfg, run
    drop_file_logging(run.root)  # the main process writes main.log
    stages = [s for s in cfg.stages if s in DATA_PARALLEL_STAGES]
    worker = replace(cfg, stages=stages, logger=replace(cfg.logger, name="none"))
    return worker, WorkerRunDir(run.root)


def main_process_first():
    """Context: the main process runs the block (filling caches) before the others read them."""
    if world_size() <= 1:
        return nullcontext()
    from accelerate import PartialState

    return PartialState().main_process_first()
