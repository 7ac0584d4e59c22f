"""Checks that the schema cannot express, run before any model or data is loaded."""

from __future__ import annotations

from bapo_exp.config import Config
from bapo_exp.stages import STAGE_MODULES

CHOICES: dict[str, tuple[str, ...]] = {
    "model.source": ("hf", "tiny", "gguf", "micro"),
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.finetune": ("lora", "full"),
    "train.schedule": ("cosine", "linear", "constant"),
    "train.precision": ("auto", "fp32", "bf16"),
    "reference.reduce": ("sum", "mean"),
    "eval.mc_format": ("auto", "letter", "options"),
    "logger.name": ("none", "wandb"),
    "logger.mode": ("auto", "offline", "online", "disabled"),
}


def _get(cfg: Config, dotted: str) -> object:
    obj: object = cfg
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def validate(cfg: Config) -> None:
    """Raise ``ValueError`` naming the key and the valid values on the first bad setting."""
    for key, allowed in CHOICES.items():
        if (value := _get(cfg, key)) not in allowed:
            raise ValueError(f"{key}={value!r} is not valid; choose one of {list(allowed)}")
    for stage in cfg.stages:
        if stage not in STAGE_MODULES:
            raise ValueError(f"unknown stage {stage!r} in stages; available: {list(STAGE_MODULES)}")
    from bapo_exp.losses import LOSSES  # torch-only import

    if cfg.method.name != "none" and cfg.method.name not in LOSSES:
        raise ValueError(f"unknown method {cfg.method.name!r}; available: {['none', *LOSSES]}")
    if cfg.method.name == "mrpo" and len(getattr(cfg.method, "references", [])) < 1:
        raise ValueError(
            "method=mrpo needs K >= 2 references: the policy's initial model plus at least one "
            "entry in method.references (see conf/method/mrpo.yaml)"
        )
    if cfg.train.steps is None and cfg.train.epochs <= 0:
        raise ValueError("train.steps is null, so train.epochs must be > 0")
