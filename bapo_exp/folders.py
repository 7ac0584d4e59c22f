"""Folders built once and published whole, never half-written: caches (tiny and micro models,
tokenizers, GGUF conversions, the synthetic world), checkpoints and saved models.

    build_folder(out, lambda tmp: ..., stamp=key)      # build once into tmp, then publish
    is_ready(out)                                      # a finished, intact cache folder
    replace_folder(tmp, out)                           # publish a finished folder (a rename)
    rebuild_after_failed_load(folder, what=, fix=)     # after a load failed: damaged?

A cache folder is finished when it holds ``READY`` (written last, inside the temporary folder);
a folder without it is never trusted and is replaced. Every published folder also holds
``MANIFEST.json`` (sizes and sha256 of its files, ``bapo_exp.readback``): a finished cache
folder whose files no longer match it is damaged, and is rebuilt (with a warning).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bapo_exp.atomic import tmp_path, write_json_atomic
from bapo_exp.readback import (
    MANIFEST,
    describe_problems,
    folder_problems,
    manifest_files,
    remember,
    require_intact,
    write_manifest,
)

log = logging.getLogger(__name__)
READY = "READY"


def is_ready(out: Path, stamp: str | None = None) -> bool:
    """``out`` is a finished, intact folder (and, if ``stamp`` is given, holds that stamp).
    A damaged one loses its ``READY`` (a warning says so), so that it is built again."""
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
    tmp = tmp_path(out)
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


def _restamp(folder: Path) -> None:
    """Record the files' present modification times (after their contents were checked), so a
    copied cache folder (new mtimes) is hashed once, not at every use."""
    entries = manifest_files(folder)
    if not isinstance(entries, dict):
        return
    now = {name: (folder / name).stat().st_mtime_ns for name in entries}
    if all(entries[n].get("mtime_ns") == m for n, m in now.items()):
        return
    for name, mtime in now.items():
        entries[name]["mtime_ns"] = mtime
    write_json_atomic(folder / MANIFEST, {"version": 1, "files": entries})


def cache_intact(folder: Path) -> bool:
    """A finished cache folder is intact (else a warning names the damage: it is rebuilt).
    One without a manifest (written before manifests existed) gets one now."""
    if manifest_files(folder) is None:
        log.info("%s: recording the checksums of this cache folder (%s)", folder, MANIFEST)
        write_manifest(folder)
        remember(folder)
        return True
    problems = folder_problems(folder)
    if problems:
        log.warning("cache folder %s is damaged (%s); it is rebuilt", folder,
                    describe_problems(problems))  # fmt: skip
        return False
    _restamp(folder)
    return True


def rebuild_after_failed_load(folder: Path, *, what: str, fix: str) -> bool:
    """After ``folder`` failed to load: hash it in full. A damaged cache folder (``READY``) is
    unmarked (True: build it again); a damaged run folder is a ``DamagedFileError``; an
    intact folder, or one without a manifest, gives False (the load error stands)."""
    folder = Path(folder)
    if not folder.is_dir():
        return False
    problems = folder_problems(folder, full=True)
    if not problems:
        return False
    if (folder / READY).exists():
        log.warning("cache folder %s failed to load and is damaged (%s); it is rebuilt", folder,
                    describe_problems(problems))  # fmt: skip
        (folder / READY).unlink(missing_ok=True)
        return True
    require_intact(folder, what=what, fix=fix, full=True)
    return False
