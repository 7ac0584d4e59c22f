"""Multi-process views of a run (``accelerate launch``): the main process writes, the others
compute and follow it.

    world_size(), is_worker()       # from the launcher's environment (WORLD_SIZE, RANK)
    process_view(cfg, run)          # this process's (cfg, run): a worker's never writes
    main_process_first()            # rank 0 fills the caches, the others then read them
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bapo_exp.config import Config
from bapo_exp.logs import drop_file_logging
from bapo_exp.tracking.run_dir import RunDir

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
