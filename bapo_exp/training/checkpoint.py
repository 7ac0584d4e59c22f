"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, data position.

``checkpoints/step_<N>/state.pt`` is written to a temporary folder and renamed, so a kill
during a save leaves the previous checkpoint intact; only ``keep`` checkpoints are kept.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bapo_exp.atomic import replace_folder

log = logging.getLogger(__name__)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(root: Path, step: int, payload: dict[str, Any], keep: int) -> Path:
    """Atomically write ``root/step_<step>/state.pt`` and drop the oldest beyond ``keep``."""
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(payload, tmp / "state.pt")
    return publish(tmp, root, step, keep)


def publish(tmp: Path, root: Path, step: int, keep: int) -> Path:
    """Rename a complete checkpoint folder ``tmp`` to ``root/step_<step>``; keep the newest."""
    final = root / f"step_{step:08d}"
    replace_folder(tmp, final)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint step %d -> %s", step, final)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    if not root.exists():
        return []
    return sorted(p for p in root.glob("step_*") if (p / "state.pt").exists())


def latest(root: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest readable checkpoint and its folder; an unreadable one is skipped (warning)."""
    for path in reversed(list_checkpoints(root)):
        try:
            return path, torch.load(path / "state.pt", weights_only=False)
        except Exception as err:  # a truncated file from a kill: fall back to the previous one
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, err)
    return None


def load_latest(root: Path) -> dict[str, Any] | None:
    """The newest readable checkpoint's ``state.pt``, or None."""
    found = latest(root)
    return found[1] if found else None
