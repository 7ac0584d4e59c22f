"""Structured configs: the Slurm launcher (submitit's options plus the project's three) and the
sweeper that checks every cell first (``checked_sweeper``)."""

# No `from __future__ import annotations`: Hydra's plugin scan loads this module outside
# sys.modules, where dataclasses cannot resolve string annotations.
from dataclasses import dataclass
from typing import Optional

from hydra._internal.core_plugins.basic_sweeper import BasicSweeperConf
from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import SlurmQueueConf


@dataclass
class BapoSlurmQueueConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.bapo_exp_launcher.slurm_launcher.BapoSlurmLauncher"
    # Processes per cell: 1 runs the cell in the Slurm job's process; N > 1 runs it under
    # `accelerate launch --num_processes N` inside the job (one node, e.g. one per GPU).
    processes_per_cell: int = 1
    # accelerate config for N > 1: a name under conf/accelerate (ddp, fsdp) or a file path;
    # None = `--multi_gpu` with accelerate's defaults (DDP; gloo on a CPU-only node).
    accelerate_config: Optional[str] = None  # noqa: UP045 (Hydra 1.3 needs typing.Optional)
    # Do not submit a cell whose every stage is done (re-launching a grid runs only the rest).
    skip_done_cells: bool = True


ConfigStore.instance().store(
    group="hydra/launcher", name="bapo_slurm", node=BapoSlurmQueueConf(), provider="bapo_exp"
)


@dataclass
class CheckedSweeperConf(BasicSweeperConf):
    _target_: str = "hydra_plugins.bapo_exp_launcher.checked_sweeper.CheckedSweeper"
    # Check every cell's config and inputs in the launching process before any cell starts.
    check_cells: bool = True


ConfigStore.instance().store(
    group="hydra/sweeper", name="bapo_checked", node=CheckedSweeperConf(), provider="bapo_exp"
)
