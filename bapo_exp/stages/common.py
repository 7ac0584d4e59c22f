"""Helpers shared by the stages: the run's data, its reference tables, and multi-process views."""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bapo_exp.config import CONF_DIR, Config
from bapo_exp.data.types import PreferenceData
from bapo_exp.references import Reference, RefTable, base_responses, references_of, score_examples
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

    def mark_done(self, stage: str, summary: dict[str, Any]) -> None:
        return None

    def clear_done(self, stage: str) -> None:
        return None


def world_size() -> int:
    """Processes of this job, from the launcher's environment (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_view(cfg: Config, run: RunDir) -> tuple[Config, RunDir]:
    """This process's view of the job: ``(cfg, run)`` unchanged in a single process.

    Under ``accelerate launch`` (``WORLD_SIZE > 1``) the process group is set up here, every
    process must agree on the run directory (pass ``hydra.run.dir``: a ``${now:}`` stamp can
    differ between processes), and a non-main process gets a run directory that never writes,
    no tracker (``logger=none``), no ``main.log`` handler, and only the data-parallel stages.
    """
    if world_size() <= 1:
        return cfg, run
    import torch
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=not torch.cuda.is_available())
    [main_root] = broadcast_object_list([str(run.root.resolve())], from_process=0)
    if main_root != str(run.root.resolve()):
        raise RuntimeError(
            f"process {state.process_index} has run directory {run.root}, the main process "
            f"{main_root}: pass hydra.run.dir=<dir> under accelerate launch"
        )
    if state.is_main_process:
        return cfg, run
    _drop_file_logging(run.root)
    stages = [s for s in cfg.stages if s in DATA_PARALLEL_STAGES]
    worker = replace(cfg, stages=stages, logger=replace(cfg.logger, name="none"))
    return worker, WorkerRunDir(run.root)


def _drop_file_logging(root: Path) -> None:
    """Detach this process from ``main.log`` (the main process writes it); stderr stays."""
    top = logging.getLogger()
    for handler in list(top.handlers):
        name = getattr(handler, "baseFilename", None)
        if name and Path(name).resolve().is_relative_to(root.resolve()):
            top.removeHandler(handler)
            handler.close()


def main_process_first():
    """Context: the main process runs the block (filling caches) before the others read them."""
    if world_size() <= 1:
        return nullcontext()
    from accelerate import PartialState

    return PartialState().main_process_first()
