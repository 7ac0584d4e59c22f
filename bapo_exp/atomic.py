"""Files and cache folders that a kill never leaves half-written: the project's one writer.

    write_text_atomic(path, text)                      # temporary file, then rename
    write_json_atomic(path, obj)                       # JSON (tensors, paths, NaN handled)
    write_jsonl_atomic(path, rows)                     # one JSON object per line
    append_lines(path, lines)                          # never glued onto a torn last line

Whole folders (caches, checkpoints, saved models) are built and published by
``bapo_exp.folders`` on top of these.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path(path)
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
