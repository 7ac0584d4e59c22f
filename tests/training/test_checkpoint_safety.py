"""Checkpoints are read back without running pickled code, and damaged ones are never used
(issue 26): ``state.pt`` loads with ``weights_only=True``; a planted pickled callable is refused
and runs nothing; a checkpoint that differs from its manifest falls back to the one before; an
older checkpoint (numpy RNG state as a pickled array) still resumes, bitwise."""

from __future__ import annotations

import logging
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from bapo_exp.readback import MANIFEST, DamagedFileError, write_manifest
from bapo_exp.training import checkpoint as ckpt


class Planted:
    """What an attacker adds to a ``state.pt``: unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def payload(step: int) -> dict:
    return {"step": step, "model": {"w": torch.full((20000,), float(step))},
            "rng": [ckpt.rng_state()], "history": [{"step": step, "loss": 0.5}]}  # fmt: skip


def test_the_state_of_a_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    path = ckpt.save_checkpoint(tmp_path, 2, payload(2), keep=2)
    state = torch.load(path / "state.pt", weights_only=True)  # raises on anything but data
    assert state["step"] == 2 and isinstance(state["rng"][0]["numpy"]["key"], torch.Tensor)


def test_a_pickled_callable_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    """The manifest matches (the attacker wrote it too): the load itself refuses, in one line."""
    marker = tmp_path / "ran"
    ckpt.save_checkpoint(tmp_path / "ckpts", 2, payload(2), keep=3)
    planted = ckpt.save_checkpoint(tmp_path / "ckpts", 4, {**payload(4), "x": Planted(marker)}, 3)
    with pytest.raises(DamagedFileError) as err:
        ckpt.latest(tmp_path / "ckpts")
    message = str(err.value)
    assert str(planted / "state.pt") in message and "system" in message and "delete" in message
    assert "\n" not in message
    assert not marker.exists()


def test_a_planted_state_pt_without_its_manifest_is_skipped(tmp_path: Path, caplog) -> None:
    marker = tmp_path / "ran"
    ckpt.save_checkpoint(tmp_path, 2, payload(2), keep=3)
    newest = ckpt.save_checkpoint(tmp_path, 4, payload(4), keep=3)
    torch.save({**payload(4), "x": Planted(marker)}, newest / "state.pt")
    with caplog.at_level(logging.WARNING):
        path, state = ckpt.latest(tmp_path)
    assert state["step"] == 2 and path.name == "step_00000002"
    assert "step_00000004 is damaged (state.pt" in caplog.text
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage) -> None:
    ckpt.save_checkpoint(tmp_path, 2, payload(2), keep=3)
    newest = ckpt.save_checkpoint(tmp_path, 4, payload(4), keep=3)
    data = bytearray((newest / "state.pt").read_bytes())
    if damage == "flip":  # same size: only the checksum sees it (torch.load would not)
        data[len(data) // 2] ^= 0xFF
    else:
        data = data[: len(data) // 2]
    (newest / "state.pt").write_bytes(bytes(data))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    path, state = ckpt.latest(tmp_path)
    assert state["step"] == 2 and torch.equal(state["model"]["w"], torch.full((20000,), 2.0))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing deleted


def test_an_older_checkpoint_with_a_numpy_array_state_resumes_bitwise(tmp_path: Path) -> None:
    """Written before this format: numpy's state as the pickled tuple, no manifest."""
    random.seed(1)
    np.random.seed(1)
    old_rng = {"python": random.getstate(), "numpy": np.random.get_state(),
               "torch": torch.get_rng_state(), "cuda": None}  # fmt: skip
    expected = np.random.rand(4), random.random()
    folder = tmp_path / "step_00000002"
    folder.mkdir()
    torch.save({**payload(2), "rng": [old_rng]}, folder / "state.pt")
    assert not (folder / MANIFEST).exists()
    np.random.seed(7)
    _, state = ckpt.latest(tmp_path)
    ckpt.set_rng_state(state["rng"][0])
    assert np.array_equal(np.random.rand(4), expected[0]) and random.random() == expected[1]


def test_the_numpy_state_round_trips_bitwise() -> None:
    np.random.seed(3)
    np.random.standard_normal()  # a cached gaussian in the state
    saved = ckpt.rng_state()
    a = np.random.rand(5), np.random.standard_normal()
    ckpt.set_rng_state(saved)
    assert np.array_equal(np.random.rand(5), a[0]) and np.random.standard_normal() == a[1]


# ---- FSDP2's DCP folder: .metadata and non-tensor items are pickles too ----------------------


def dcp_checkpoint(folder: Path, extra: dict | None = None) -> dict:
    import torch.distributed.checkpoint as dcp

    state = {"w": torch.arange(4.0), "lr": 0.01, **(extra or {})}
    dcp.save(state, checkpoint_id=folder)
    return state


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_dcp_items_load_through_the_safe_planner(tmp_path: Path) -> None:
    from bapo_exp.training.safe_dcp import load_dcp

    dcp_checkpoint(tmp_path / "dcp")
    into = {"w": torch.zeros(4), "lr": 0.0}
    load_dcp(into, tmp_path / "dcp")
    assert torch.equal(into["w"], torch.arange(4.0)) and into["lr"] == 0.01


@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_a_planted_dcp_item_or_metadata_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    from bapo_exp.training.safe_dcp import load_dcp

    marker = tmp_path / "ran"
    dcp_checkpoint(tmp_path / "dcp", {"x": Planted(marker)})  # an item is the pickle
    into = {"w": torch.zeros(4), "lr": 0.0, "x": None}
    with pytest.raises(DamagedFileError, match=r"the item x holds pickled code"):
        load_dcp(into, tmp_path / "dcp")
    (tmp_path / "dcp" / ".metadata").write_bytes(pickle.dumps(Planted(marker)))
    with pytest.raises(DamagedFileError, match=r"\.metadata: holds pickled code .*system"):
        load_dcp(into, tmp_path / "dcp")
    assert not marker.exists()


def test_a_manifest_names_every_file_with_its_checksum(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.bin").write_bytes(b"abc")
    write_manifest(tmp_path)
    import hashlib
    import json

    files = json.loads((tmp_path / MANIFEST).read_text())["files"]
    assert files["sub/a.bin"]["sha256"] == hashlib.sha256(b"abc").hexdigest()
    assert files["sub/a.bin"]["size"] == 3 and list(files) == ["sub/a.bin"]


def test_the_package_unpickles_nothing_but_plain_data() -> None:
    """No ``weights_only=False``, no ``torch.load`` without ``weights_only=True``, no
    ``pickle.load``/``joblib.load``/``allow_pickle=True`` anywhere in ``bapo_exp``."""
    import re

    import bapo_exp

    for path in sorted(Path(bapo_exp.__file__).parent.rglob("*.py")):
        text = path.read_text()
        for banned in ("weights_only=False", "pickle.load(", "joblib.load", "allow_pickle=True"):
            assert banned not in text, f"{path}: {banned}"
        for call in re.finditer(r"torch\.load\(([^)]*)\)", text):
            assert "weights_only=True" in call.group(1), f"{path}: {call.group(0)}"
