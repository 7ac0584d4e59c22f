"""Damaged cache folders are rebuilt with a warning (issue 26): tiny models, micro bases and
their tokenizer, GGUF conversions, the synthetic world, the base-weight fingerprint memo.

Each test builds a folder, damages one file (bytes flipped at the same size, truncated,
invalid JSON) and checks that the next use warns, builds it again and gets what a fresh build
gives; and that an intact folder is never rebuilt."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from bapo_exp.config import ModelConfig, TinyConfig
from bapo_exp.folders import READY, is_ready
from bapo_exp.readback import HASH_MB_ENV, MANIFEST, folder_problems

SMALL = {"vocab_size": 256, "hidden_size": 16, "intermediate_size": 32, "num_layers": 1,
         "num_heads": 2}  # fmt: skip


def flip(path: Path, at: float = 0.5) -> None:
    """Flip one byte at ``at`` of the file (its size stays the same)."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def weights(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(autouse=True)
def _fresh_memo(monkeypatch):
    """Each test starts as a new process would: nothing hashed yet."""
    from bapo_exp import readback

    monkeypatch.setattr(readback, "_verified", {})


def tiny_spec() -> ModelConfig:
    return ModelConfig(name="tiny", source="tiny", pretrained="tiny", tiny=TinyConfig(**SMALL))


@pytest.mark.parametrize("damage", ["flip", "truncate", "tokenizer"])
def test_a_damaged_tiny_model_is_rebuilt_with_a_warning(tmp_path, caplog, damage) -> None:
    from bapo_exp.modeling.load import load_model

    expected = weights(load_model(tiny_spec(), tmp_path)[0])  # copies: the file is mmapped
    (folder,) = (tmp_path / "models").glob("tiny-*")
    if damage == "tokenizer":
        (folder / "tokenizer.json").write_text("{not json")
    else:
        (flip if damage == "flip" else truncate)(folder / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        model, tok = load_model(tiny_spec(), tmp_path)
    assert f"cache folder {folder} is damaged" in caplog.text and "it is rebuilt" in caplog.text
    assert all(torch.equal(v, expected[k]) for k, v in weights(model).items())
    assert tok("hello")["input_ids"] and folder_problems(folder, full=True) == []


def test_damage_the_size_check_misses_is_found_when_the_load_fails(tmp_path, caplog, monkeypatch):
    """``BAPO_VERIFY_HASH_MB=0``: no hashing on read unless a file's time changed; a byte of
    the header flipped in place (same size and time: bit rot) breaks the load, which hashes
    the folder, finds the damage and rebuilds it."""
    import os

    from bapo_exp.modeling.load import load_model

    monkeypatch.setenv(HASH_MB_ENV, "0")
    expected = weights(load_model(tiny_spec(), tmp_path)[0])
    (folder,) = (tmp_path / "models").glob("tiny-*")
    st = (folder / "model.safetensors").stat()
    flip(folder / "model.safetensors", at=0.0)  # the header's length: unreadable
    os.utime(folder / "model.safetensors", ns=(st.st_atime_ns, st.st_mtime_ns))
    from bapo_exp import readback

    monkeypatch.setattr(readback, "_verified", {})
    with caplog.at_level(logging.WARNING):
        model, _ = load_model(tiny_spec(), tmp_path)
    assert "failed to load and is damaged (model.safetensors: contents differ" in caplog.text
    assert all(torch.equal(v, expected[k]) for k, v in weights(model).items())


def test_an_intact_folder_is_not_rebuilt_and_an_old_one_gets_a_manifest(tmp_path) -> None:
    from bapo_exp.modeling.tiny import ensure_tiny

    folder = ensure_tiny(TinyConfig(**SMALL), tmp_path)
    written = (folder / "model.safetensors").stat().st_mtime_ns
    (folder / MANIFEST).unlink()  # as written before manifests existed
    assert ensure_tiny(TinyConfig(**SMALL), tmp_path) == folder
    assert (folder / MANIFEST).exists() and (folder / READY).exists()
    assert (folder / "model.safetensors").stat().st_mtime_ns == written  # not rebuilt
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert {"model.safetensors", "tokenizer.json", READY} <= set(files)


def test_a_damaged_manifest_makes_the_folder_rebuilt(tmp_path, caplog) -> None:
    from bapo_exp.modeling.tiny import ensure_tiny

    folder = ensure_tiny(TinyConfig(**SMALL), tmp_path)
    (folder / MANIFEST).write_text('{"files": {"model.safetensors": {"size": "')
    with caplog.at_level(logging.WARNING):
        assert ensure_tiny(TinyConfig(**SMALL), tmp_path) == folder
    assert "is damaged (MANIFEST.json: unreadable)" in caplog.text
    assert folder_problems(folder, full=True) == []


def test_a_copied_cache_folder_is_hashed_once_then_trusted_by_its_new_times(tmp_path) -> None:
    import os

    from bapo_exp.modeling.tiny import ensure_tiny

    folder = ensure_tiny(TinyConfig(**SMALL), tmp_path)
    os.utime(folder / "model.safetensors", ns=(1, 1))  # e.g. `cp -r`: new modification times
    assert is_ready(folder)  # hashed: same contents; the manifest now holds the new time
    files = json.loads((folder / MANIFEST).read_text())["files"]
    assert files["model.safetensors"]["mtime_ns"] == 1


def test_a_damaged_gguf_conversion_is_converted_again(tmp_path, monkeypatch, caplog) -> None:
    from bapo_exp.modeling import gguf

    source = tmp_path / "model.gguf"
    source.write_bytes(b"GGUF" + bytes(64))
    calls = []

    def convert(path: Path, out: Path) -> None:  # the real one de-quantises (~30 s)
        calls.append(path)
        (out / "model.safetensors").write_bytes(bytes(range(256)) * 64)

    monkeypatch.setattr(gguf, "convert_gguf", convert)
    folder = gguf.ensure_gguf_folder(str(source), tmp_path / "models")
    assert gguf.ensure_gguf_folder(str(source), tmp_path / "models") == folder and len(calls) == 1
    flip(folder / "model.safetensors")
    with caplog.at_level(logging.WARNING):
        assert gguf.ensure_gguf_folder(str(source), tmp_path / "models") == folder
    assert len(calls) == 2 and "is damaged (model.safetensors: contents differ" in caplog.text
    assert (folder / "model.safetensors").read_bytes() == bytes(range(256)) * 64


def test_a_damaged_micro_base_and_its_tokenizer_are_pretrained_again(tmp_path, caplog) -> None:
    from bapo_exp.synthetic import MicroTrainConfig, ensure_micro_base, micro_model_config
    from tests.synthetic.conftest import small_config

    model_cfg = micro_model_config(vocab_size=300, hidden_size=32, num_layers=1,
                                   intermediate_size=64)  # fmt: skip
    train_cfg = MicroTrainConfig(steps=2, batch_size=4, warmup_steps=1, progress=False,
                                 kernels="native")  # fmt: skip
    args = (small_config(), model_cfg, train_cfg, tmp_path)
    folder = ensure_micro_base(*args)
    first = (folder / "model.safetensors").read_bytes()
    (tok_dir,) = tmp_path.glob("microtok-*")
    truncate(tok_dir / "tokenizer.json")
    flip(folder / "model.safetensors", at=0.9)
    with caplog.at_level(logging.WARNING):
        assert ensure_micro_base(*args) == folder
    assert f"cache folder {tok_dir} is damaged" in caplog.text
    assert f"cache folder {folder} is damaged" in caplog.text
    assert (folder / "model.safetensors").read_bytes() == first  # deterministic pretraining


def test_a_damaged_synthetic_world_is_written_again(tmp_path, caplog) -> None:
    from bapo_exp.synthetic import write_world
    from tests.synthetic.conftest import small_config

    root = write_world(small_config(), tmp_path / "world")
    pairs = (root / "pairs.jsonl").read_text()
    (root / "pairs.jsonl").write_text(pairs[: len(pairs) // 3] + "{broken")
    with caplog.at_level(logging.WARNING):
        assert write_world(small_config(), tmp_path / "world") == root
    assert "is damaged (pairs.jsonl:" in caplog.text
    assert (root / "pairs.jsonl").read_text() == pairs


def test_a_damaged_fingerprint_memo_is_computed_again(tmp_path, caplog) -> None:
    from bapo_exp.modeling.fingerprint import base_fingerprint

    digest = base_fingerprint(tiny_spec(), tmp_path)
    (memo,) = (tmp_path / "fingerprints").glob("*.txt")
    memo.write_text("sha256:00\x00garbage")
    with caplog.at_level(logging.WARNING):
        assert base_fingerprint(tiny_spec(), tmp_path) == digest
    assert "damaged fingerprint memo" in caplog.text and memo.read_text().strip() == digest
