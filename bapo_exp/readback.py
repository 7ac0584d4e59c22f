"""Files the project wrote, read back: checked where they are read (issue 26).

    read_json_file(path, what="stage summary", fix="re-run ...")   # or DamagedFileError
    read_jsonl_file(path, what=..., fix=...)                       # one dict per line
    load_saved_config(path)                                        # a run's .hydra/config.yaml
    write_manifest(folder)            # at publish (folders.replace_folder): size, mtime, sha256
    folder_problems(folder)           # what differs from the manifest ([] when intact)

Two outcomes of damage. What the project can rebuild (cache folders: tiny and micro models,
tokenizers, GGUF conversions, the synthetic world) is rebuilt with a warning
(``folders.is_ready`` finds the damage, ``modeling.load`` after a failed load). What it cannot
(a run's checkpoints, saved config, summaries, metrics) raises :class:`DamagedFileError`: one
line naming the file and what to do, printed without a traceback (``run.launch.user_errors``).

Folders published by ``folders.replace_folder`` (cache folders, checkpoints, saved models) hold
``MANIFEST.json``: every file's size, modification time and sha256, hashed once when written.
On read, sizes are checked every time (stat calls), and contents are hashed again (first use
in a process) when the folder is at most ``BAPO_VERIFY_HASH_MB`` (default 1024) MB, when a
file's modification time differs from the manifest's, or after a load failed. ``0``: hash on
read only then; ``-1``: always. The limit keeps a 7B model (14 GB) from being read in full at
every load (``benchmarks/verify_cost.py`` measures the costs). Folders written before
manifests existed: a cache folder gets one on first use; a run's folder is read unchecked (a
run's files are not rewritten by a read).
Other files are parsed and their shape checked; the JSON-lines caches check each line
themselves and recompute a bad one (``modeling.logp_cache``: checksums; ``modeling.generate``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from bapo_exp.atomic import write_text_atomic  # a reader may look at a manifest meanwhile

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
HASH_MB_ENV = "BAPO_VERIFY_HASH_MB"
DEFAULT_HASH_MB = 1024
_verified: dict[str, tuple] = {}  # folder -> the (name, size, mtime) of files hashed this process


class DamagedFileError(ValueError):
    """A file the project wrote cannot be read back: the message names it and what to do."""


def damaged(path: Path | str, problem: str, fix: str) -> DamagedFileError:
    first = str(problem).strip().splitlines()[0] if str(problem).strip() else "unreadable"
    return DamagedFileError(f"{path}: {first}; {fix}")


def read_json_file(path: Path | str, *, what: str, fix: str, kind: type = dict) -> Any:
    """Parsed JSON of ``path`` (a ``kind``); ``DamagedFileError`` when it cannot be read."""
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise damaged(path, f"damaged {what} (invalid JSON at line {err.lineno}, column "
                            f"{err.colno}: {err.msg})", fix) from None  # fmt: skip
    except (UnicodeDecodeError, OSError) as err:
        raise damaged(path, f"unreadable {what} ({type(err).__name__}: {err})", fix) from None
    if not isinstance(value, kind):
        raise damaged(path, f"damaged {what} (a JSON {type(value).__name__}, expected a "
                            f"{kind.__name__})", fix)  # fmt: skip
    return value


def read_jsonl_file(path: Path | str, *, what: str, fix: str) -> list[dict]:
    """One JSON object per non-empty line; the first bad line is a ``DamagedFileError``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (UnicodeDecodeError, OSError) as err:
        raise damaged(path, f"unreadable {what} ({type(err).__name__}: {err})", fix) from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise damaged(path, f"damaged {what}: line {i} is not JSON ({err.msg})", fix) from None
        if not isinstance(row, dict):
            raise damaged(path, f"damaged {what}: line {i} is not a JSON object", fix)
        rows.append(row)
    return rows


def load_saved_config(path: Path | str):
    """A run's saved ``.hydra/config.yaml`` as a ``DictConfig``; damage is a one-line error."""
    import yaml
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    fix = ("it records what this run ran and cannot be rebuilt from the run's other files: "
           f"restore it from a copy, or write it again from {path.parent / 'overrides.yaml'} "
           f"(`bapo-exp <those overrides> --cfg job > {path}`)")  # fmt: skip
    try:
        cfg = OmegaConf.load(path)
    except (yaml.YAMLError, UnicodeDecodeError, OmegaConfBaseException, ValueError) as err:
        raise damaged(path, f"damaged saved config ({type(err).__name__}: "
                            f"{' '.join(str(err).split())})", fix) from None  # fmt: skip
    if not isinstance(cfg, DictConfig) or "method" not in cfg.keys():
        raise damaged(path, "damaged saved config (not a run's config: no `method`)", fix)
    return cfg


# ---- folders: a manifest written at publish, checked on read ---------------------------------


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def _signature(folder: Path, names: list[str]) -> tuple:
    out = []
    for name in names:
        try:
            st = (folder / name).stat()
        except OSError:
            return ()
        out.append((name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def write_manifest(folder: Path) -> None:
    """Record every file of ``folder``: size, modification time and sha256."""
    files = {}
    for p in _files(folder):
        st = p.stat()
        files[p.relative_to(folder).as_posix()] = {
            "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(p)
        }  # fmt: skip
    text = json.dumps({"version": 1, "files": files}, indent=1, sort_keys=True) + "\n"
    write_text_atomic(folder / MANIFEST, text)


def remember(folder: Path) -> None:
    """This process has just written or hashed ``folder``: no need to hash it again."""
    entries = manifest_files(folder)
    if isinstance(entries, dict):
        _verified[str(folder.resolve())] = _signature(folder, sorted(entries))


def manifest_files(folder: Path) -> dict | str | None:
    """The manifest's ``files`` (None: no manifest; a string: why it is unreadable)."""
    path = folder / MANIFEST
    if not path.exists():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        ok = isinstance(files, dict) and all(
            isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"),
            str) for e in files.values())  # fmt: skip
    except (ValueError, KeyError, TypeError, OSError):
        ok = False
    return files if ok else "unreadable"


def hash_limit_bytes() -> float:
    """``BAPO_VERIFY_HASH_MB`` in bytes (-1: no limit)."""
    raw = os.environ.get(HASH_MB_ENV, str(DEFAULT_HASH_MB))
    try:
        mb = float(raw)
    except ValueError:
        raise ValueError(f"{HASH_MB_ENV}={raw!r}: expected a number of MB (-1: always hash, "
                         f"0: only when needed; default {DEFAULT_HASH_MB})") from None  # fmt: skip
    return float("inf") if mb < 0 else mb * 2**20


def folder_problems(folder: Path, *, full: bool = False) -> list[tuple[str, str]]:
    """``(file, problem)`` for what differs from ``folder``'s manifest: missing files, sizes,
    contents; [] when intact or when there is no manifest. ``full``: hash every file (else the
    module's policy)."""
    folder = Path(folder)
    entries = manifest_files(folder)
    if entries is None:
        return []
    if isinstance(entries, str):
        return [(MANIFEST, entries)]
    problems, to_hash = [], []
    for name, entry in sorted(entries.items()):
        try:
            st = (folder / name).stat()
        except OSError:
            problems.append((name, "missing"))
            continue
        if st.st_size != entry["size"]:
            problems.append((name, f"{st.st_size} bytes, {entry['size']} when written"))
        elif full or st.st_mtime_ns != entry.get("mtime_ns"):
            to_hash.append(name)
    if problems:
        return problems
    key, signature = str(folder.resolve()), _signature(folder, sorted(entries))
    if not full and _verified.get(key) == signature:
        return []  # hashed (or written) by this process, unchanged since
    if sum(e["size"] for e in entries.values()) <= hash_limit_bytes():
        to_hash = sorted(entries)
    problems = [(name, "contents differ from when it was written (sha256)") for name in to_hash
                if file_sha256(folder / name) != entries[name]["sha256"]]  # fmt: skip
    if not problems and to_hash:
        _verified[key] = signature
    return problems


def describe_problems(problems: list[tuple[str, str]]) -> str:
    return "; ".join(f"{name}: {text}" for name, text in problems[:3])


def require_intact(folder: Path, *, what: str, fix: str, full: bool = False) -> None:
    """Raise ``DamagedFileError`` when a run's ``folder`` differs from its manifest."""
    problems = folder_problems(folder, full=full)
    if problems:
        name, text = problems[0]
        raise damaged(Path(folder) / name, f"damaged {what} ({text})", fix)
