"""Run one configuration's stages (reference, train, eval) into one run directory.

python -m bapo_exp method=bapo data.preferences=[academy]
python -m bapo_exp -m experiment=demo                       # a grid: one folder per cell
python -m bapo_exp debug=tiny method=dpo                    # CPU smoke run in seconds
bapo-exp eval runs/adhoc/<stamp> eval.limit=50              # re-evaluate a finished run
python -m bapo_exp method=dpo hydra.run.dir=runs/adhoc/<x>  # resume; finished stages skip
"""

from __future__ import annotations

import logging
import random
import time
from contextlib import nullcontext
from typing import NoReturn

import hydra
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import CONF_DIR, Config
from bapo_exp.run.launch import (
    checked_config,
    launch_config,
    redo,
    restore_interrupted,
    user_errors,
)
from bapo_exp.run.lock import RunInUse, run_lock
from bapo_exp.run.register import register_configs
from bapo_exp.stages import STAGES
from bapo_exp.tracking.env import env_snapshot
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import make_tracker
from bapo_exp.tracking.workers import is_worker, process_view

log = logging.getLogger("bapo_exp")
register_configs()  # with the plug-ins (they may add methods, datasets, suites, options)


def seed_everything(seed: int, threads: int | None) -> None:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_stages(cfg: Config, run: RunDir, config_dict: dict) -> None:
    with make_tracker(cfg, run, config_dict) as tracker:
        for name in cfg.stages:
            spec = STAGES[name]
            restore_interrupted(run, name, spec.outputs)
            if run.is_done(name) and not cfg.force:
                log.info("skip stage %s: done (%s); force=true redoes it", name,
                         run.done_marker(name))  # fmt: skip
                continue
            log.info("stage %s: start", name)
            start = time.perf_counter()
            try:
                with redo(run, name, spec.outputs) if run.is_done(name) else nullcontext():
                    summary = spec.load()(cfg, run, tracker)
                    run.mark_done(name, summary, seconds=round(time.perf_counter() - start, 2))
            except BaseException as err:
                if isinstance(err, user_errors()):  # one line (main.log too), no traceback
                    log.error("stage %s failed: %s", name, err)
                else:
                    log.exception("stage %s failed; the earlier stages' outputs are kept", name)
                raise
            tracker.summary({f"{name}/{k}": v for k, v in summary.items()})
            log.info("stage %s: done -> %s", name, run.root / name / "summary.json")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(dcfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    run = RunDir.from_hydra()
    overrides = list(HydraConfig.get().overrides.task)
    cfg, changes = None, None
    try:
        dcfg, changes = launch_config(dcfg, run, overrides)  # changes: None for a new run
        if not is_worker():  # accelerate launch: the main process checks, the others follow it
            cfg = checked_config(dcfg, run, changes)
    except Exception as err:
        if isinstance(err, user_errors()):
            user_error(err)
        raise
    cfg, run = process_view(cfg, run)  # a worker reads only and runs only the train stage
    if all(run.is_done(s) for s in cfg.stages) and not cfg.force:
        log.info("nothing to do: every stage of %s is done in %s", cfg.stages, run.root)
        return run.objective(cfg.objective)
    try:  # one launch at a time per run directory; accelerate's workers follow the main process
        with nullcontext() if is_worker() else run_lock(run.root):
            return execute(cfg, run, dcfg, changes, overrides)
    except Exception as err:  # e.g. a damaged run file found by a stage (bapo_exp.readback)
        if isinstance(err, (RunInUse, *user_errors())):
            user_error(err)
        raise


def user_error(err: Exception) -> NoReturn:
    """A mistake in the command or its inputs: one clear line and no traceback for a single
    run; in a multirun the cell fails, the others run, and the multirun report names it."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise err
    raise SystemExit(f"bapo-exp: error: {err}") from None


def execute(
    cfg: Config, run: RunDir, dcfg: DictConfig, changes: list[str] | None, overrides: list[str]
) -> float | None:
    """This launch's stages, and for a re-launch its record (``.hydra/relaunches.jsonl``)."""
    from bapo_exp.logs import quiet_libraries

    env = env_snapshot()
    if not run.exists("env.json"):
        run.write_json("env.json", env)
    quiet_libraries()
    seed_everything(cfg.seed, cfg.model.threads)
    run_stages(cfg, run, OmegaConf.to_container(dcfg, resolve=True, enum_to_str=True))
    if changes is not None:  # a re-launch that succeeded: its settings and its record
        from bapo_exp.run.relaunch import SAVED, config_to_save

        run.save_config(OmegaConf.to_yaml(config_to_save(dcfg, OmegaConf.load(run.root / SAVED))))
        run.append_jsonl(".hydra/relaunches.jsonl", {"overrides": overrides, "changes": changes,
                                                      **env})  # fmt: skip
    from bapo_exp.run.report import run_table

    log.info("results of %s\n%s", run.root, run_table(run))
    return run.objective(cfg.objective)


if __name__ == "__main__":
    main()
