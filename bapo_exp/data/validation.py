"""Validation of preference data before any training.

Malformed input raises ``DataError`` with one message format,
``<file>: record <i>, field '<name>': <problem>`` (record indices are 0-based positions in the
file's JSON list), so a user can open the file and find the record. Data that is well formed
but questionable (duplicate pairs, chosen == rejected, over-length pairs, empty responses that
the config allows) is counted by ``clean_pairs`` and reported, never dropped silently.

    python -m pytest tests/data/test_validation.py
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any

from bapo_exp.data.types import PreferenceExample

CLEANING_KEYS = ("empty", "identical", "duplicates", "over_length")


class DataError(ValueError):
    """Malformed or inconsistent preference data; the message names file, record and field."""


def record_error(path: str | Path, index: int, field: str, problem: str) -> DataError:
    """The one error format for a bad record."""
    return DataError(f"{path}: record {index}, field {field!r}: {problem}")


def require_mapping(value: Any, *, path: str | Path, index: int, field: str) -> Mapping:
    """``value`` must be a JSON object."""
    if not isinstance(value, Mapping):
        raise record_error(path, index, field, f"expected an object, got {type(value).__name__}")
    return value


def require_str(
    record: Mapping,
    key: str,
    *,
    path: str | Path,
    index: int,
    field: str | None = None,
    allow_empty: bool = False,
) -> str:
    """``record[key]`` must exist and be a string, non-blank unless ``allow_empty``.

    Args:
        record: the JSON object (or a nested object such as DSP's ``responses``).
        key: key inside ``record``.
        path, index: file and 0-based record index, for the message.
        field: dotted name shown in the message (default ``key``), e.g. ``responses.academy``.
        allow_empty: accept a blank string (the caller then counts and drops it).
    """
    name = field or key
    if key not in record:
        raise record_error(path, index, name, "missing")
    value = record[key]
    if not isinstance(value, str):
        raise record_error(path, index, name, f"expected a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise record_error(path, index, name, "empty string")
    return value


def require_known(
    value: str, known: Collection[str], *, path: str | Path, index: int, field: str, kind: str
) -> str:
    """``value`` must be one of ``known`` (a DSP domain, a persona id)."""
    if value not in known:
        raise record_error(path, index, field, f"unknown {kind} {value!r}; known: {sorted(known)}")
    return value


def check_preferences(
    requested: Iterable[str], known: Collection[str], *, kind: str, defined_in: str
) -> list[str]:
    """Validate ``data.preferences`` against the ids the source defines; empty means all."""
    requested = list(requested)
    unknown = [p for p in requested if p not in known]
    if unknown:
        from bapo_exp.registry import did_you_mean

        raise DataError(
            f"data.preferences: unknown {kind} {unknown}{did_you_mean(unknown[0], list(known))}; "
            f"valid: {sorted(known)} (defined in {defined_in})"
        )
    if len(set(requested)) != len(requested):
        raise DataError(f"data.preferences: repeated entries in {requested}")
    return requested or sorted(known)


def _too_long(ex: PreferenceExample, max_chars: int | None) -> bool:
    if max_chars is None:
        return False
    return len(ex.prompt) + max(len(ex.chosen), len(ex.rejected)) > max_chars


def clean_pairs(
    examples: Iterable[PreferenceExample],
    *,
    drop_duplicates: bool = True,
    drop_identical: bool = True,
    max_chars: int | None = None,
) -> tuple[list[PreferenceExample], dict[str, int]]:
    """Count (and by default drop) degenerate pairs; returns kept examples and the counts.

    Args:
        examples: pairs of one preference (duplicates are judged within it).
        drop_duplicates: drop repeats of an identical (prompt, chosen, rejected) triple.
        drop_identical: drop pairs with chosen == rejected (no preference signal; a tie in
            held-out accuracy).
        max_chars: drop pairs whose prompt plus longer response exceed this many characters.
    Returns:
        (kept, counts) with counts for ``empty`` (blank prompt/chosen/rejected: always dropped;
        only reaches here when the config allows it), ``identical``, ``duplicates``,
        ``over_length`` (how many were found, dropped or not).
    """
    counts = dict.fromkeys(CLEANING_KEYS, 0)
    seen: set[tuple[str, str, str]] = set()
    kept: list[PreferenceExample] = []
    for ex in examples:
        if not (ex.prompt.strip() and ex.chosen.strip() and ex.rejected.strip()):
            counts["empty"] += 1
            continue
        if ex.chosen == ex.rejected:
            counts["identical"] += 1
            if drop_identical:
                continue
        key = (ex.prompt, ex.chosen, ex.rejected)
        if key in seen:
            counts["duplicates"] += 1
            if drop_duplicates:
                continue
        seen.add(key)
        if _too_long(ex, max_chars):
            counts["over_length"] += 1
            continue
        kept.append(ex)
    return kept, counts
