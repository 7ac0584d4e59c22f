"""Reading an FSDP2 checkpoint (``torch.distributed.checkpoint``, DCP) without running pickles.

    load_dcp(state, step_dir / "dcp")     # dcp.load, but refusing anything but plain data

DCP unpickles its ``.metadata`` with plain ``pickle.load`` and each non-tensor item (the
optimizer's hyper-parameters) with an unrestricted ``torch.load``: a planted file would run
code in the process that resumes. ``check_metadata`` unpickles ``.metadata`` first with only
what DCP writes there allowed (its metadata classes, ``torch.Size``, dtypes, layouts, paths),
and ``SafeLoadPlanner`` loads each item with ``weights_only=True`` before DCP does: a file
naming anything else is refused in one line (``DamagedFileError``) and nothing runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner

from bapo_exp.readback import DamagedFileError, damaged

_DCP_MODULES = ("torch.distributed.checkpoint.metadata", "torch.distributed.checkpoint.filesystem")
_PATHS = ("Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath")
_ALLOWED = {("torch", "Size"), ("torch.serialization", "_get_layout"),
            ("collections", "OrderedDict"), *(("pathlib", n) for n in _PATHS)}  # fmt: skip


def _fix(step_dir: Path) -> str:
    return f"delete {step_dir} (or move it away) to resume from the checkpoint before it"


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        found = super().find_class(module, name) if module in _DCP_MODULES else None
        if isinstance(found, type) or (module, name) in _ALLOWED:
            return found or super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in DCP metadata")


def check_metadata(dcp_dir: Path) -> None:
    """Unpickle every ``*.metadata`` of ``dcp_dir`` with only DCP's own classes allowed."""
    for path in sorted(Path(dcp_dir).glob("*.metadata")):
        try:
            with path.open("rb") as fh:
                _MetadataUnpickler(fh).load()
        except pickle.UnpicklingError as err:
            problem = f"holds pickled code or objects ({err}), which are never loaded"
            raise damaged(path, problem, _fix(dcp_dir.parent)) from None


class SafeLoadPlanner(DefaultLoadPlanner):
    """``DefaultLoadPlanner`` whose non-tensor items must load with ``weights_only=True``."""

    def __init__(self, step_dir: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.step_dir = Path(step_dir)

    def load_bytes(self, read_item, value: io.BytesIO) -> None:
        try:
            torch.load(value, weights_only=True)
        except pickle.UnpicklingError as err:
            fqn = read_item.dest_index.fqn
            raise DamagedFileError(
                f"{self.step_dir}: the item {fqn} holds pickled code or objects, which are never "
                f"loaded ({str(err).splitlines()[0][:200]}); {_fix(self.step_dir)}"
            ) from None
        value.seek(0)
        super().load_bytes(read_item, value)  # the same bytes, now known to be plain data


def load_dcp(state: dict, dcp_dir: Path) -> None:
    """``dcp.load(state, checkpoint_id=dcp_dir)`` after ``check_metadata``, through
    ``SafeLoadPlanner``; its refusal is raised as itself (DCP wraps errors of every rank)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.api import CheckpointException

    check_metadata(dcp_dir)
    try:
        dcp.load(state, checkpoint_id=dcp_dir, planner=SafeLoadPlanner(Path(dcp_dir).parent))
    except CheckpointException as err:
        refused = [e for e, _ in err.failures.values() if isinstance(e, DamagedFileError)]
        if refused:
            raise refused[0] from None
        raise
