"""Resumable checkpoints: trainable weights, optimizer, scheduler, RNG states, data position.

``checkpoints/step_<N>/state.pt`` is written to a temporary folder and renamed, so a kill
during a save leaves the previous checkpoint intact; only ``keep`` checkpoints are kept.

``state.pt`` holds only what ``torch.load(weights_only=True)`` accepts (tensors, numbers,
strings, lists, tuples, dicts): numpy's RNG state is stored as a tensor and numbers. It is
never unpickled otherwise, so a ``state.pt`` carrying pickled code (anyone with write access to
a shared run directory could plant one) is refused in one line and runs nothing. Checkpoints of
older versions, whose numpy RNG state is a pickled array, are read with exactly numpy's array
and dtype classes allowed. A checkpoint folder that differs from its ``MANIFEST.json``
(``bapo_exp.readback``), or an unreadable ``state.pt`` (truncated by a kill), is skipped with a
warning: the previous checkpoint is used.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bapo_exp.folders import replace_folder
from bapo_exp.readback import damaged, folder_problems

log = logging.getLogger(__name__)


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": numpy_rng_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def numpy_rng_state() -> dict[str, Any]:
    """``np.random.get_state()`` in types ``weights_only`` loading accepts (the key as int64)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    saved = state["numpy"]
    if isinstance(saved, dict):  # older checkpoints: the tuple of np.random.get_state()
        key = saved["key"].numpy().astype(np.uint32)
        saved = (saved["kind"], key, saved["pos"], saved["has_gauss"], saved["gauss"])
    np.random.set_state(saved)
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
    """The newest intact, readable checkpoint and its folder; a damaged or unreadable one is
    skipped (warning). ``DamagedFileError``: the newest readable one holds pickled code."""
    for path in reversed(list_checkpoints(root)):
        if problems := folder_problems(path):
            name, text = problems[0]
            log.warning("checkpoint %s is damaged (%s: %s); trying an older one", path, name, text)
            continue
        try:
            return path, load_state(path / "state.pt")
        except Exception as err:  # a truncated file from a kill: fall back to the previous one
            if unsafe := _unsafe_globals(path / "state.pt"):
                raise refused(path, unsafe) from None
            log.warning("checkpoint %s is unreadable (%s); trying an older one", path, err)
    return None


def refused(path: Path, unsafe: list[str]):
    names = ", ".join(unsafe[:3])
    return damaged(path / "state.pt", f"holds pickled code or objects ({names}), which are "
                   "never loaded: they could run any program", f"delete {path} (or move it "
                   "away) to resume from the checkpoint before it")  # fmt: skip


# numpy's array of an older checkpoint's RNG state (numpy 1.x pickles name ``numpy.core``)
_reconstruct = (np._core if hasattr(np, "_core") else np.core).multiarray._reconstruct
OLD_NUMPY_STATE = [_reconstruct, np.ndarray, np.dtype, np.dtypes.UInt32DType,
                   (_reconstruct, "numpy.core.multiarray._reconstruct")]  # fmt: skip
OLD_NUMPY_NAMES = {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct",
                   "numpy.ndarray", "numpy.dtype", "numpy.dtypes.UInt32DType"}  # fmt: skip


def _unsafe_globals(file: Path) -> list[str]:
    """The globals of ``file``'s pickle that neither torch nor ``OLD_NUMPY_STATE`` allow
    (none when the file cannot be parsed: it is then only unreadable)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(file)
    except Exception:
        return []
    return [n for n in names if n not in OLD_NUMPY_NAMES]


def load_state(file: Path) -> dict[str, Any]:
    """``torch.load(file, weights_only=True)``; an older checkpoint's numpy RNG state (a
    pickled array) is allowed too, and nothing else."""
    try:
        return torch.load(file, weights_only=True)
    except pickle.UnpicklingError:
        if _unsafe_globals(file):
            raise
    with torch.serialization.safe_globals(OLD_NUMPY_STATE):
        return torch.load(file, weights_only=True)
