"""Files and cache folders that a kill never leaves half-written: the project's one writer.

    write_text_atomic(path, text)                      # temporary file, then rename
    write_json_atomic(path, obj)                       # JSON (tensors, paths, NaN handled)
    write_jsonl_atomic(path, rows)                     # one JSON object per line
    append_lines(path, lines)                          # never glued onto a torn last line
    build_folder(out, lambda tmp: ..., stamp=key)      # build once into tmp, then publish

A cache folder is finished when it holds ``READY`` (written last, inside the temporary folder);
a folder without it is never trusted and is replaced. Every published folder also holds
``MANIFEST.json`` (sizes and sha256 of its files, ``bapo_exp.readback``): a finished cache
folder whose files no longer match it is damaged, and is rebuilt (with a warning).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

READY = "READY"


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(path)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def jsonable(obj: Any) -> Any:
    """``json.dumps(default=...)``: tensors and numpy scalars as numbers, non-finite floats and
    paths as strings; anything else (a function in an lm-eval config) as its ``str``."""
    if hasattr(obj, "item") and callable(obj.item):  # tensors and numpy scalars
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, (int, float, str, bool)) or obj is None:
        return obj
    return str(obj)


def json_line(obj: Any) -> str:
    """One JSON object on one line (keys sorted, non-ASCII kept)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, default=jsonable)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write JSON (indented, keys sorted) through a temporary file and a rename."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=jsonable) + "\n")


def write_jsonl_atomic(path: Path, rows: Iterable[Any]) -> None:
    """Write one JSON object per line through a temporary file and a rename."""
    write_text_atomic(path, "".join(json_line(r) + "\n" for r in rows))


def append_lines(path: Path, lines: list[str]) -> None:
    """Append ``lines`` in one ``write``; a torn last line (a kill mid-write) is ended first, so
    that a new line never joins it."""
    with Path(path).open("a+b") as f:
        f.seek(0, os.SEEK_END)
        lead = b""
        if f.tell() > 0:
            f.seek(-1, os.SEEK_END)
            lead = b"" if f.read(1) == b"\n" else b"\n"
        f.write(lead + ("\n".join(lines) + "\n").encode())


def is_ready(out: Path, stamp: str | None = None) -> bool:
    """``out`` is a finished, intact folder (and, if ``stamp`` is given, holds that stamp).
    A damaged one loses its ``READY`` (a warning says so), so that it is built again."""
    from bapo_exp.readback import cache_intact

    marker = out / READY
    try:
        found = marker.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return False
    if stamp is not None and found != stamp:
        return False
    if cache_intact(out):
        return True
    marker.unlink(missing_ok=True)
    return False


def replace_folder(tmp: Path, out: Path) -> None:
    """Put the finished folder ``tmp`` at ``out``, replacing what was there (a rename); its
    ``MANIFEST.json`` (size, mtime and sha256 of every file) is written first."""
    from bapo_exp.readback import remember, write_manifest

    write_manifest(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    remember(out)


def build_folder(
    out: Path, build: Callable[[Path], None], stamp: str, match_stamp: bool = False
) -> Path:
    """Return ``out``, building it first with ``build(tmp)`` unless it is already finished.

    ``build`` fills a fresh temporary folder beside ``out``; ``READY`` (holding ``stamp``) is
    written after it, then the folder is renamed into place. When another process finished
    ``out`` in the meantime, its folder is kept. ``match_stamp``: a finished folder counts only
    if its ``READY`` holds ``stamp`` (otherwise it is rebuilt).
    """
    expected = stamp if match_stamp else None
    if is_ready(out, expected):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        build(tmp)
        (tmp / READY).write_text(stamp + "\n")
        if not is_ready(out, expected):  # else another process won the race: keep its folder
            replace_folder(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
