"""Reading data files (JSON lists with record-level errors).

from bapo_exp.data.io import read_records, read_prompts
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bapo_exp.data.validation import DataError, record_error, require_mapping, require_str


def resolve_path(path: str | None, data_root: str | Path, default: str, hint: str = "") -> Path:
    """``path`` (``data.path``) if given, else ``<data_root>/<default>``; a missing file is a
    ``DataError`` naming the config key to change (and ``hint``)."""
    resolved = Path(path) if path else Path(data_root) / default
    if not resolved.exists():
        key = "data.path" if path else f"paths.data_root (now {data_root}) or data.path"
        raise DataError(f"{resolved}: file not found; set {key} (default <data_root>/{default})"
                        + (f"; {hint}" if hint else ""))  # fmt: skip
    return resolved


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _failing_record(text: str) -> int | None:
    """Index of the list element where JSON decoding fails (None if not a list file)."""
    start = _skip_ws(text, 0)
    if start >= len(text) or text[start] != "[":
        return None
    decoder = json.JSONDecoder()
    i, n = start + 1, 0
    while True:
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == "]" and n == 0:
            return None
        try:
            _, i = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            return n
        n += 1
        i = _skip_ws(text, i)
        if i < len(text) and text[i] == ",":
            i += 1
            continue
        return None if i < len(text) and text[i] == "]" else n


def read_json(path: str | Path, *, hint: str = "") -> Any:
    """Parse a JSON file; a syntax error names the file, the failing record and the position."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found{'; ' + hint if hint else ''}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        rec = _failing_record(text)
        where = f"record {rec}, " if rec is not None else ""
        raise DataError(
            f"{path}: {where}invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None


def read_records(path: str | Path, *, hint: str = "") -> list:
    """A JSON file holding a list of records."""
    data = read_json(path, hint=hint)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    return data


def read_prompts(path: str | Path) -> list[tuple[str, str]]:
    """Prompt file -> [(id, prompt)]: a list of ``{"id", "prompt"}`` (Koala schema) or strings."""
    out: list[tuple[str, str]] = []
    for i, rec in enumerate(read_records(path)):
        if isinstance(rec, str):
            rec = {"prompt": rec}
        rec = require_mapping(rec, path=path, index=i, field="<record>")
        prompt = require_str(rec, "prompt", path=path, index=i)
        rid = rec.get("id", str(i))
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise record_error(path, i, "id", f"expected a string, got {type(rid).__name__}")
        out.append((str(rid), prompt))
    ids = [rid for rid, _ in out]
    if len(set(ids)) != len(ids):
        raise DataError(f"{path}: repeated prompt ids")
    return out
