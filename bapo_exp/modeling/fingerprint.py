"""The exact identity of a base model's weights, recorded in every run (issue 17).

    base_fingerprint(cfg.model, cache_dir)   # "sha256:3f2a..." of the weight files, or None

The same code and seed can give a different micro base on a different machine (CPU-dependent
kernels: torch's vectorised softmax and MKL's matrix multiply round differently, and 800
pretraining steps grow a 1e-8 difference into another model; docs/REPRODUCIBILITY.md), so every
eval summary records this digest: two machines compare their bases by it. It hashes every tensor
of the weight files (``*.safetensors``) as (name, dtype, shape, bytes) in name order, so it does
not depend on how the file was written, and it equals the digest of the same weights in memory
(``tensors_digest(model.named_parameters())``: tied weights count once). The digest
is cached, keyed by the files' names, sizes and modification times, so a 7B model is read once
(a memo that is not a digest is recomputed, with a warning).
A hub id that is not in the local Hugging Face cache, or ``.bin`` weights, give None.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

from bapo_exp.atomic import write_text_atomic
from bapo_exp.config import ModelSpec

log = logging.getLogger(__name__)


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def _local_folder(spec: ModelSpec, cache_dir: str | Path) -> Path | None:
    from bapo_exp.modeling.sources import resolve_model_path

    path = Path(resolve_model_path(spec, cache_dir))
    if path.is_dir():
        return path
    try:  # a hub id: its snapshot, only if already downloaded
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(spec.pretrained), local_files_only=True))
    except Exception:
        return None


def tensors_digest(named) -> str:
    """sha256 over (name, dtype, shape, raw bytes) of ``(name, tensor)`` pairs, in name order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(named, key=lambda kv: kv[0]):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return "sha256:" + h.hexdigest()


def files_digest(files: list[Path]) -> str:
    """:func:`tensors_digest` of the tensors in these safetensors files (read one at a time)."""
    from safetensors import safe_open

    def tensors():
        for path in files:
            with safe_open(str(path), framework="pt") as fh:
                for name in fh.keys():  # noqa: SIM118 (safe_open has no __iter__)
                    yield name, fh.get_tensor(name)

    return tensors_digest(tensors())


def base_fingerprint(spec: ModelSpec, cache_dir: str | Path) -> str | None:
    """The digest of the weight files of the model ``spec`` loads (see the module)."""
    folder = _local_folder(spec, cache_dir)
    files = _weight_files(folder) if folder is not None else []
    if not files:
        return None
    stamp = json.dumps([[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files])
    key = hashlib.sha256(f"{folder.resolve()}|{stamp}".encode()).hexdigest()[:24]
    memo = Path(cache_dir) / "fingerprints" / f"{key}.txt"
    if memo.exists():
        found = memo.read_text(errors="replace").strip()
        if re.fullmatch(r"sha256:[0-9a-f]{64}", found):
            return found
        log.warning("%s: damaged fingerprint memo; the weights are hashed again", memo)
    digest = files_digest(files)
    write_text_atomic(memo, digest + "\n")
    return digest
