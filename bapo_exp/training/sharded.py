"""FSDP2: sharding on CPU, sharded resumable checkpoints, and the gathered final model.

The switch is the accelerate config (``accelerate launch --config_file conf/accelerate/fsdp.yaml``,
which sets ``ACCELERATE_USE_FSDP=true`` and ``FSDP_VERSION=2``). On GPUs accelerate applies
``fully_shard`` itself in ``prepare``. On CPU it does not (accelerate 1.15 turns FSDP on only
for accelerator devices and falls back to DDP over gloo), so ``shard_on_cpu`` applies FSDP2's
``fully_shard`` the way accelerate's FSDP2 does: each decoder layer (the model's
``_no_split_modules``, or ``FSDP_TRANSFORMER_CLS_TO_WRAP``) is one unit, then the root.

Checkpoints (``checkpoints/step_<N>/``, either way the model was sharded):

- ``dcp/``: the trainable parameters and the AdamW states, one file per process, written with
  ``torch.distributed.checkpoint`` from ``get_state_dict`` (frozen LoRA base weights are left
  out, as in the unsharded ``state.pt``) and read back with ``set_state_dict``;
- ``state.pt`` (main process): step, scheduler, every process's RNG state, logged metrics. The
  data position is the step (``StepSampler`` is a function of the step).

The folder is assembled under ``.tmp_step_<N>`` and renamed when complete, like ``state.pt``
alone. Resuming reads no pickle beyond plain data: ``state.pt`` with ``weights_only=True``
(``checkpoint.load_state``) and ``dcp/`` through ``safe_dcp``. The final model is gathered on
the main process (``full_state_dict``) and saved with ``save_pretrained``, so the eval stage
loads it like any other.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from bapo_exp.training import checkpoint as ckpt

log = logging.getLogger(__name__)
DCP_DIR = "dcp"


def fsdp_requested() -> bool:
    """The accelerate config asked for FSDP (``distributed_type: FSDP``)."""
    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def is_fsdp2(model: torch.nn.Module) -> bool:
    """The model (or a submodule) was sharded with ``fully_shard`` (by us or by accelerate)."""
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in model.modules())


def layer_classes(model: torch.nn.Module) -> set[str]:
    """Class names of the units to shard: ``FSDP_TRANSFORMER_CLS_TO_WRAP`` or the model's own."""
    names = os.environ.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    if names:
        return {n.strip() for n in names.split(",") if n.strip()}
    found: set[str] = set()
    for module in model.modules():
        found.update(getattr(module, "_no_split_modules", None) or [])
    return found


def shard_on_cpu(model: torch.nn.Module, acc) -> torch.nn.Module:
    """Apply FSDP2 when the accelerate config asks for FSDP and accelerate itself did not.

    Returns the model unchanged unless FSDP was requested, there are several processes and
    accelerate is running DDP on CPU (``MULTI_CPU``).
    """
    from accelerate.utils import DistributedType

    if not fsdp_requested() or acc.distributed_type != DistributedType.MULTI_CPU:
        return model
    if os.environ.get("FSDP_VERSION", "1") != "2":
        raise ValueError(
            "FSDP on CPU is implemented for FSDP2 only: set fsdp_config.fsdp_version to 2 in "
            "the accelerate config (conf/accelerate/fsdp.yaml does)"
        )
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (acc.num_processes,))
    reshard = os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() == "true"
    classes = layer_classes(model)
    units = [m for m in model.modules() if type(m).__name__ in classes]
    for unit in units:
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, reshard_after_forward=reshard)
    log.info("FSDP2 on CPU: %d %s units + the root sharded over %d processes (gloo)",
             len(units), "/".join(sorted(classes)) or "(no layer)", acc.num_processes)  # fmt: skip
    return model


def prepare(acc, model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """``acc.prepare``, except that a model sharded here is not wrapped again (in DDP)."""
    if is_fsdp2(model) and acc.distributed_type.name == "MULTI_CPU":
        return model, acc.prepare(optimizer)
    return acc.prepare(model, optimizer)


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(ignore_frozen_params=True, **kw)


def _raw(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer


def _frozen(model) -> set[str]:
    """Names of frozen parameters, tied ones included (``ignore_frozen_params`` keeps the second
    name of a tied frozen weight, e.g. ``lm_head.weight`` tied to the frozen embeddings)."""
    return {n for n, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad}


def _state(model, optimizer) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, _raw(optimizer), options=_options())
    frozen = _frozen(model)
    return {"model": {k: v for k, v in model_sd.items() if k not in frozen},
            "optimizer": optim_sd}  # fmt: skip


def save_checkpoint(
    root: Path, step: int, model, optimizer, meta: dict[str, Any], keep: int, acc
) -> None:
    """Collective: every process writes its shards; the main process writes ``state.pt``."""
    import torch.distributed.checkpoint as dcp

    tmp = root / f".tmp_step_{step:08d}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    dcp.save(_state(model, optimizer), checkpoint_id=tmp / DCP_DIR)
    if acc.is_main_process:
        payload = {**meta, "sharded": {"format": "dcp", "processes": acc.num_processes}}
        torch.save(payload, tmp / "state.pt")
        ckpt.publish(tmp, root, step, keep)
    acc.wait_for_everyone()


def load_checkpoint(path: Path, model, optimizer) -> None:
    """Collective: read ``path/dcp`` into the sharded model and optimiser (any process count)."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    from bapo_exp.training.safe_dcp import load_dcp

    state = _state(model, optimizer)
    load_dcp(state, path / DCP_DIR)  # dcp.load, refusing anything but plain data
    keys = set_state_dict(
        model,
        _raw(optimizer),
        model_state_dict=state["model"],
        optim_state_dict=state["optimizer"],
        options=_options(strict=False),
    )
    missing = set(keys.missing_keys) - _frozen(model)
    if missing or keys.unexpected_keys:
        raise RuntimeError(f"{path}: trainable parameters missing {sorted(missing)[:5]}, "
                           f"unknown {sorted(keys.unexpected_keys)[:5]}")  # fmt: skip


def full_state_dict(acc, model) -> dict[str, torch.Tensor]:
    """Collective: the whole model's state dict on the main process (gathered under FSDP2)."""
    if not is_fsdp2(model):
        return acc.get_state_dict(model)
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)
