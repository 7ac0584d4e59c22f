"""AdamW with warmup then cosine, linear or constant decay (pure schedule functions)."""

from __future__ import annotations

import math

import torch

from bapo_exp.config import TrainConfig


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate at optimizer step ``step`` (0-based).

    Linear warmup over ``warmup`` steps, then ``cosine`` or ``linear`` decay to 0 at ``total``,
    or ``constant``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return 1.0 - progress
    raise ValueError(f"unknown schedule {schedule!r}; choose cosine, linear or constant")


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig, total_steps: int):
    """AdamW over the trainable parameters, and its LambdaLR scheduler."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the policy has no trainable parameters (is the LoRA adapter active?)")
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: lr_factor(s, total=total_steps, warmup=cfg.warmup_steps, schedule=cfg.schedule),
    )
    return opt, sched
