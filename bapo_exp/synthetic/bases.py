"""Pretrain every micro base some grids need, several at once, before the grids run (issue 24).

    python -m bapo_exp.synthetic.bases study_bases study_dpo [--processes 2] [-- key=value ...]

Each preset's grid (``hydra.sweeper.params``) is expanded as Hydra's sweeper does; every cell's
model and extra references (MRPO) whose source is ``micro`` are collected, and the bases not yet
in ``<paths.cache_dir>/models`` are pretrained by ``--processes`` portable processes at once
(``pretrain.ensure_micro_bases``: one thread each, the same weights as a cell would pretrain).
The grids then find every base ready. ``make study`` runs it first.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger(__name__)
# overrides that can change a cell's bases (the method's choice: MRPO adds references)
MODEL_KEYS = ("model", "method.references", "data.world", "reference_substitute", "paths")


def _changes_bases(override: str) -> bool:
    key = override.split("=", 1)[0].lstrip("+~")
    return key == "method" or key.startswith(MODEL_KEYS)


def _compose(overrides: list[str], hydra_config: bool = False):
    from hydra import compose, initialize_config_dir

    from bapo_exp.config import CONF_DIR
    from bapo_exp.run.register import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=hydra_config)


def grid(preset: str, extra: list[str]) -> list[list[str]]:
    """The overrides of every cell of ``preset``'s grid that can change its bases."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = _compose([f"experiment={preset}", *extra], hydra_config=True)
    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
            if o.is_sweep_override() else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
            for o in parsed]  # fmt: skip
    cells = {tuple(o for o in c if _changes_bases(o)) for c in itertools.product(*axes)}
    return [[f"experiment={preset}", *extra, *c] for c in sorted(cells)]


def bases_of(overrides: list[str]) -> tuple[list, Path]:
    """The micro bases (``pretrain.Spec``) of one cell, and its models' cache folder."""
    from omegaconf import OmegaConf

    from bapo_exp.stages.common import extra_reference_specs
    from bapo_exp.synthetic.pretrain import micro_spec

    cfg = OmegaConf.to_object(_compose(overrides))
    specs = [cfg.model, *extra_reference_specs(cfg)]
    models = Path(cfg.paths.cache_dir) / "models"
    return [micro_spec(s.tiny, s.micro) for s in specs if str(s.source) == "micro"], models


def main(argv: list[str] | None = None) -> int:
    from bapo_exp.synthetic.pretrain import ensure_micro_bases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="+", help="experiment presets (conf/experiment/)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)  # "-- key=value ...": every grid's
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")
    by_folder: dict[Path, list] = {}
    for preset in args.presets:
        for cell in grid(preset, extra):
            specs, models = bases_of(cell)
            by_folder.setdefault(models, []).extend(s for s in specs if s not in by_folder[models])
    for models, specs in by_folder.items():
        log.info("%d micro bases under %s", len(specs), models)
        ensure_micro_bases(specs, models, processes=args.processes)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
