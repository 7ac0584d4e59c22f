"""submitit's Slurm launcher, made to survive a grid's real failures (see ``bapo_exp.run.cluster``).

Differences from ``hydra_submitit_launcher``'s ``SlurmLauncher``:

- cells whose stages are all done are not submitted (``skip_done_cells``);
- without Slurm accounting, job states come from ``squeue`` (no ``sacct`` errors, no hang);
- a job that ends without a result is recorded ``unfinished`` and the other cells are still
  collected (the stock launcher raises on the first one and writes no report);
- ``processes_per_cell > 1`` runs each cell under ``accelerate launch`` inside its job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, filter_overrides
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher
from omegaconf import OmegaConf, open_dict

log = logging.getLogger(__name__)
OWN_KEYS = ("processes_per_cell", "accelerate_config", "skip_done_cells")
INIT_KEYS = ("submitit_folder", "max_num_timeout")  # AutoExecutor(...) rather than parameters


class BapoSlurmLauncher(SlurmLauncher):
    def __init__(self, **params: Any) -> None:
        from bapo_exp.run.cluster.processes import resolve_accelerate_config

        own = {k: params.pop(k) for k in OWN_KEYS if k in params}
        super().__init__(**params)
        self.processes_per_cell = int(own.get("processes_per_cell", 1))
        self.accelerate_config = resolve_accelerate_config(own.get("accelerate_config"))
        self.skip_done_cells = bool(own.get("skip_done_cells", True))
        gpus = self.params.get("gpus_per_node") or 0
        if gpus and self.processes_per_cell not in (1, gpus):
            log.warning("processes_per_cell=%d with gpus_per_node=%d: one process per GPU is "
                        "the usual layout", self.processes_per_cell, gpus)  # fmt: skip

    def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
        """On the node: run the cell's job (several processes if ``processes_per_cell > 1``)."""
        if self.processes_per_cell > 1:
            from bapo_exp.run.cluster.processes import CellProcesses

            self.task_function = CellProcesses(self.processes_per_cell, self.accelerate_config)
        return super().__call__(*args, **kwargs)

    def launch(
        self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> Sequence[JobReturn]:
        from bapo_exp.run.cluster import cells
        from bapo_exp.run.lock import holder

        assert self.config is not None and self.hydra_context is not None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        if "mode" in self.config.hydra.sweep:  # as the stock launcher
            os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
        returns: dict[int, JobReturn] = {}
        todo: list[tuple[int, list[str], dict]] = []
        for num, overrides in enumerate(job_overrides, start=initial_job_idx):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(cfg.hydra.job):  # as __call__ does on the node (a subdir may use it)
                cfg.hydra.job.num = num
            record = cells.cell_record(cfg, num, list(overrides))
            if self.skip_done_cells and cells.is_done(record):
                returns[num] = cells.skip(record, sweep_dir, OmegaConf.select(cfg, "objective"))
            elif (held := holder(Path(record["run_dir"]))) is not None:
                returns[num] = cells.in_use(record, sweep_dir, held)
            else:
                todo.append((num, list(overrides), record))
        if todo:
            for (num, _, record), job in zip(todo, self._submit(todo), strict=True):
                returns[num] = cells.collect(job, record, sweep_dir)
        return [returns[n] for n in sorted(returns)]

    def _submit(self, todo: list[tuple[int, list[str], dict]]) -> list[Any]:
        """One array job for the cells to run (the stock launcher's executor set-up)."""
        import submitit
        from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

        from bapo_exp.run.cluster.job_states import use_squeue_without_accounting

        params = dict(self.params)
        executor = submitit.AutoExecutor(
            cluster="slurm",
            folder=params["submitit_folder"],
            slurm_max_num_timeout=params["max_num_timeout"],
        )
        base = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(
            **{k if k in base else f"slurm_{k}": v for k, v in params.items() if k not in INIT_KEYS}
        )
        assert self.config is not None
        log.info(f"Submitit 'slurm' sweep output dir : {self.config.hydra.sweep.dir}")
        for num, overrides, _ in todo:
            log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
        job_params = [
            (overrides, "hydra.sweep.dir", num, f"job_id_for_{num}", Singleton.get_state())
            for num, overrides, _ in todo
        ]
        jobs = executor.map_array(self, *zip(*job_params, strict=True))
        use_squeue_without_accounting(jobs)
        return jobs
