"""Checks run before any model is loaded: the settings, the data and every file a run reads.

    validate(cfg)      # ConfigError naming the key (and the closest valid name), or DataError
                       # naming the file, the record and the field

The entrypoint runs it before any stage; a new run directory whose checks fail is removed
again, so a typo never leaves an empty ``runs/<name>/<stamp>`` behind. Choices fixed by the
schema (Enums) are already checked at composition; this module checks what the schema cannot:
registry names (methods, model sources, datasets, eval suites, style checks), settings that
contradict each other, and the input files.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bapo_exp.config import Config, ConfigError


def _require(registry, name: str, key: str):
    try:
        return registry.require(name)
    except KeyError as err:
        raise ConfigError(f"{key}: {err.args[0]}") from None


def check_settings(cfg: Config) -> None:
    """Settings only (no file is read)."""
    from bapo_exp.evaluation.personalisation import STYLE_CHECKS
    from bapo_exp.evaluation.suites import SUITES
    from bapo_exp.losses import LOSSES
    from bapo_exp.modeling.sources import MODEL_SOURCES
    from bapo_exp.stages import STAGES

    for stage in cfg.stages:
        if stage not in STAGES:
            raise ConfigError(f"stages: unknown stage {stage!r}; available: {list(STAGES)}")
    spec = _require(LOSSES, cfg.method.name, "method")
    if cfg.reference_substitute is not None:
        from bapo_exp.run.usage import group_options

        if cfg.reference_substitute not in group_options("model"):
            raise ConfigError(f"reference_substitute={cfg.reference_substitute!r} is not a "
                              f"conf/model/ name: {group_options('model')}")  # fmt: skip
    for i, ref in enumerate([cfg.model, *cfg.method.reference_models()]):
        _require(MODEL_SOURCES, ref.source, "model.source" if i == 0 else
                 f"method.references[{i - 1}].source")  # fmt: skip
    refs = 1 + len(cfg.method.reference_models())
    if spec.trains and refs < spec.min_references:
        raise ConfigError(
            f"method={cfg.method.name} needs K >= {spec.min_references} references: the "
            "policy's initial model plus at least one entry in method.references (see "
            "conf/method/mrpo.yaml)"
        )
    if problems := cfg.method.problems():
        raise ConfigError("; ".join(problems))
    divisions = cfg.method.length_divisions() + (
        [f"method={cfg.method.name} (length-normalised loss)"] if spec.length_normalised else []
    )
    if cfg.reference.reduce == "mean" and divisions:
        raise ConfigError(
            "reference.reduce=mean already makes every log-prob a per-token mean, and "
            f"{', '.join(divisions)} divides by length again (METHODS §2-3: normalise once). "
            "Use reference.reduce=sum with it, or drop the second normalisation."
        )
    check_steps(cfg)
    for suite in cfg.eval.suites:
        _require(SUITES, suite, "eval.suites")
    if cfg.eval.style_check is not None:
        _require(STYLE_CHECKS, cfg.eval.style_check, "eval.style_check")


def check_steps(cfg: Config) -> None:
    if cfg.train.steps is None and cfg.train.epochs <= 0:
        raise ConfigError("train.steps is null, so train.epochs must be > 0")
    if bad := [s for s in cfg.eval.at_steps if s < 1 or (cfg.train.steps and s > cfg.train.steps)]:
        raise ConfigError(f"eval.at_steps={list(cfg.eval.at_steps)}: {bad} not in 1..train.steps "
                          f"({cfg.train.steps})")  # fmt: skip


def input_checks(cfg: Config) -> list[tuple[str, Callable[[], Any]]]:
    """The checks of every file the run will read (the preference data, the anchor prompts,
    the eval files), each with a key naming what it reads: a grid runs each distinct one once."""
    from bapo_exp.data import check_dataset
    from bapo_exp.data.io import read_prompts
    from bapo_exp.evaluation.suites import SUITES

    def key(*parts: Any) -> str:
        return json.dumps(parts, sort_keys=True, default=str)

    paths = (cfg.paths.data_root, cfg.paths.cache_dir)
    checks = [(key("data", dataclasses.asdict(cfg.data), paths), lambda: check_dataset(
        cfg.data, data_root=cfg.paths.data_root, cache_dir=cfg.paths.cache_dir))]  # fmt: skip
    if prompt_file := cfg.method.anchor_prompt_file():
        checks.append((key("prompts", prompt_file), lambda: read_prompts(prompt_file)))
    if cfg.eval.suites and "eval" in cfg.stages:
        ctx = eval_context(cfg)
        for suite in cfg.eval.suites:
            checks.append((key("suite", suite, dataclasses.asdict(ctx)),
                           lambda s=suite: SUITES.require(s).check(ctx)))  # fmt: skip
    return checks


def check_inputs(cfg: Config) -> None:
    """Every file the run will read: the preference data, the anchor prompts, the eval files."""
    for _, check in input_checks(cfg):
        check()


def eval_context(cfg: Config):
    """The eval suites' ``SuiteContext`` of this run."""
    from bapo_exp.evaluation.suites import SuiteContext

    return SuiteContext(
        data_root=Path(cfg.paths.data_root).expanduser().resolve(),
        num_fewshot=cfg.eval.num_fewshot, mmlu_subjects=cfg.eval.mmlu_subjects,
        mc_format=str(cfg.eval.mc_format), mmlu_categories=str(cfg.eval.mmlu_categories),
        data=cfg.data, cache_dir=cfg.paths.cache_dir,
    )  # fmt: skip


def validate(cfg: Config) -> None:
    """Raise on the first bad setting or input (see the module docstring)."""
    check_settings(cfg)
    check_inputs(cfg)
