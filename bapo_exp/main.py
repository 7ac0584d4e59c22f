"""Run one configuration's stages (reference, train, eval) into one run directory.

python -m bapo_exp method=bapo data.preferences=[academy]
python -m bapo_exp -m experiment=fig2_retention hydra/launcher=slurm
python -m bapo_exp debug=tiny method=dpo            # CPU smoke run in seconds
python -m bapo_exp method=dpo hydra.run.dir=runs/adhoc/<existing>   # resume / skip finished
"""

from __future__ import annotations

import logging
import random

import hydra
from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import CONF_DIR, Config, register_configs
from bapo_exp.multirun import register_resolvers
from bapo_exp.stages import get_stage
from bapo_exp.tracking.env import env_snapshot
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import make_tracker
from bapo_exp.validate import validate

log = logging.getLogger("bapo_exp")
register_configs()
register_resolvers()  # ${cell_dir:...}: deterministic multirun cell folders (conf/hydra)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_stages(cfg: Config, run: RunDir, config_dict: dict) -> None:
    stages = {name: get_stage(name) for name in cfg.stages}  # unknown names fail before work
    with make_tracker(cfg, run, config_dict) as tracker:
        for name, stage in stages.items():
            if run.is_done(name) and not cfg.force:
                log.info(
                    "skip stage %s: %s exists (force=true redoes it)", name, run.done_marker(name)
                )
                continue
            run.clear_done(name)
            log.info("stage %s: start", name)
            try:
                summary = stage(cfg, run, tracker)
            except BaseException:
                log.exception("stage %s failed; earlier stages' outputs are kept", name)
                raise
            run.mark_done(name, summary)
            tracker.summary({f"{name}/{k}": v for k, v in summary.items()})
            log.info("stage %s: done -> %s", name, run.root / name / "summary.json")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(dcfg: DictConfig) -> float | None:
    if missing := OmegaConf.missing_keys(dcfg):
        raise ValueError(f"missing config values: {sorted(missing)}")
    cfg: Config = OmegaConf.to_object(dcfg)
    validate(cfg)
    from bapo_exp.stages.common import process_view  # lazy (torch); accelerate launch: rank>0

    cfg, run = process_view(cfg, RunDir.from_hydra())  # reads only, runs only the train stage
    if all(run.is_done(s) for s in cfg.stages) and not cfg.force:
        log.info("nothing to do: every stage of %s is done in %s", cfg.stages, run.root)
        return run.objective(cfg.objective)
    run.write_json("env.json", env_snapshot())
    seed_everything(cfg.seed)
    run_stages(cfg, run, OmegaConf.to_container(dcfg, resolve=True))
    return run.objective(cfg.objective)


if __name__ == "__main__":
    main()
