"""Experiment trackers: W&B mirrors the run directory; the run directory stays the truth."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from bapo_exp.config import Config
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int | None = None) -> None: ...

    def summary(self, metrics: dict[str, Any]) -> None: ...


class NullTracker:
    """Does nothing (``logger=none``, tests)."""

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        pass

    def summary(self, metrics: dict[str, Any]) -> None:
        pass


class WandbTracker:
    def __init__(self, wandb_run: Any) -> None:
        self._run = wandb_run

    def log(self, metrics: dict[str, float], step: int | None = None) -> None:
        self._run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        self._run.summary.update(metrics)


def wandb_mode(requested: str) -> str:
    """``auto`` is online when an API key is configured, offline otherwise."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    has_key = bool(os.environ.get("WANDB_API_KEY")) or os.path.exists(
        os.path.expanduser("~/.netrc")
    )
    return "online" if has_key else "offline"


@contextmanager
def make_tracker(cfg: Config, run: RunDir, config_dict: dict) -> Iterator[Tracker]:
    """One tracker per job; W&B is always finished, also when a stage fails."""
    if cfg.logger.name == "none":
        yield NullTracker()
        return
    if cfg.logger.name != "wandb":
        raise ValueError(f"unknown logger {cfg.logger.name!r}; available: ['none', 'wandb']")
    import wandb

    mode = wandb_mode(cfg.logger.mode)
    wb = wandb.init(
        project=cfg.logger.project,
        entity=cfg.logger.entity,
        group=cfg.name,
        name=f"{cfg.name}/{run.root.name}",
        dir=str(run.root),
        config=config_dict,
        tags=[cfg.method.name, cfg.data.name, f"seed{cfg.seed}", *cfg.logger.tags],
        mode=mode,
        resume="allow",
        id=_stable_id(run),
    )
    if mode == "offline":
        wandb_bin = Path(sys.executable).with_name("wandb")
        log.info("W&B is offline; upload later with `make wandb-sync` (or %s sync --yes "
                 "%s/wandb/offline-run-*)", wandb_bin if wandb_bin.exists() else "wandb",
                 run.root)  # fmt: skip
    try:
        yield WandbTracker(wb)
    finally:
        wb.finish()


def _stable_id(run: RunDir) -> str:
    """The same run directory maps to the same W&B run, so a resumed run continues it."""
    import hashlib

    return hashlib.sha1(str(run.root.resolve()).encode()).hexdigest()[:12]
