"""Re-launching an existing run directory: its own saved config, run-independent overrides only.

    bapo-exp eval runs/adhoc/<stamp> eval.limit=50        # re-evaluate a finished run
    python -m bapo_exp method=dpo hydra.run.dir=runs/x    # resume a killed run

Hydra writes ``.hydra/`` only into a new run directory (``${fresh_run_subdir:}``), so a
re-launch never rewrites a run's saved config. ``main`` then calls :func:`merge_saved`:

- the saved ``.hydra/config.yaml`` is the config of this launch (what ran stays what runs);
- the keys this launch's overrides set (``key=value``, ``group=option`` and every key a
  ``debug``/``experiment`` preset file sets) are applied when they are run-independent
  (``RUN_INDEPENDENT``: stages, force, eval, logger, paths, name, objective) and must otherwise
  equal the saved values: a conflict is a ``RelaunchConflict`` before any work, naming the key,
  the saved and the requested value. Values are compared as the run's identity sees them
  (``bapo_exp.run.identity.identity_config``: resolved, with the fields a schema no longer holds
  at their old defaults), so a run saved before a schema change is re-launched by the command
  that made it (every finished cell of a grid is then skipped, not refused);
- ``force`` and ``stages`` (what to do now) are this launch's, never carried over; nor are they
  written back (:func:`config_to_save`): after ``bapo-exp eval`` the saved config still lists
  the run's stages and ``force: false``, so a later plain re-launch changes nothing.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import CONF_DIR, RUN_INDEPENDENT, run_independent
from bapo_exp.run.identity import identity_config
from bapo_exp.tracking.workers import is_worker

SAVED = Path(".hydra") / "config.yaml"
PER_LAUNCH = ("force", "stages")  # what this launch does: never taken from the saved config


class RelaunchConflict(ValueError):
    """An override would change what an existing run computes."""


_FIRST: dict[str, str | None] = {}  # run dir -> this launch's answer (the first one counts)


def fresh_run_subdir(*, _root_: DictConfig) -> str | None:
    """``hydra.output_subdir``: ``.hydra`` for a new run directory, None (Hydra writes nothing)
    when the directory already holds a saved config. The first answer for a directory holds
    until :func:`is_new_run` consumes it (after Hydra wrote the files, the test would flip).

    Under ``accelerate launch`` only the main process writes ``.hydra/``: a worker that wrote it
    first would make the main process see a half-written "existing run" and refuse its own
    overrides as conflicts (workers take the main process's config, ``launch_config``)."""
    out = str(Path(str(_root_.hydra.runtime.output_dir)).resolve())
    if out not in _FIRST:
        new = not is_worker() and not (Path(out) / SAVED).exists()
        _FIRST[out] = ".hydra" if new else None
    return _FIRST[out]


def is_new_run(run_dir: Path) -> bool:
    """Whether this launch created ``run_dir``'s saved config (consumes the record)."""
    answer = _FIRST.pop(str(Path(run_dir).resolve()), None)
    return answer is not None


def _preset_keys(group: str, option: str, seen: set[str] | None = None) -> list[str]:
    """Dotted keys (and group packages) a ``@package _global_`` preset file sets."""
    path = CONF_DIR / group / f"{option}.yaml"
    if not path.exists():
        return []
    seen = seen or set()
    raw = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    keys: list[str] = []
    for entry in raw.pop("defaults", []) or []:
        if isinstance(entry, str) and entry not in ("_self_",) and entry not in seen:
            seen.add(entry)
            keys += _preset_keys(group, entry, seen)  # a preset extending another one
        elif isinstance(entry, dict):
            for k in entry:
                keys.append(k.replace("override ", "").strip().lstrip("/").split("@")[0])
    raw.pop("hydra", None)
    return keys + _leaves(raw)


def _leaves(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [k for key, v in node.items() for k in _leaves(v, f"{prefix}{key}.")]
    return [prefix.rstrip(".")]


def _is_global(group: str) -> bool:
    files = sorted((CONF_DIR / group).glob("*.yaml"))
    return bool(files) and "@package _global_" in files[0].read_text()


def set_keys(overrides: list[str]) -> list[str]:
    """The config keys (dotted, or a group's package) that ``overrides`` set."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    keys: list[str] = []
    for ov in OverridesParser.create().parse_overrides(overrides):
        key = ov.key_or_group
        if (CONF_DIR / key).is_dir() and _is_global(key):
            value = ov.value()
            keys += _preset_keys(key, value) if isinstance(value, str) else []
        else:
            keys.append(key)
    return keys


def _get(cfg: DictConfig, key: str) -> Any:
    node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    return node.value if isinstance(node, Enum) else node  # a choice: its text, as in a command


def _pick(node: Any, key: str) -> Any:
    """The value of dotted ``key`` in plain nested dicts (None where absent)."""
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _differences(key: str, old: Any, new: Any) -> list[tuple[str, Any, Any]]:
    """The differing leaves of two values (dicts compared key by key), at most 8."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [d for k in sorted(set(old) | set(new), key=str)
               for d in _differences(f"{key}.{k}", old.get(k), new.get(k))]  # fmt: skip
        return out[:8]
    return [] if old == new else [(key, old, new)]


def config_to_save(merged: DictConfig, saved: DictConfig) -> DictConfig:
    """What a successful re-launch writes to ``.hydra/config.yaml``: its merged config, with the
    run's stages (the saved ones, then any this launch added) and the saved ``force``."""
    out = OmegaConf.create(OmegaConf.to_container(merged, resolve=False))
    stages = list(OmegaConf.select(saved, "stages", default=[]) or [])
    stages += [s for s in OmegaConf.select(merged, "stages", default=[]) or [] if s not in stages]
    OmegaConf.update(out, "stages", stages, force_add=True)
    OmegaConf.update(out, "force", OmegaConf.select(saved, "force", default=False), force_add=True)
    return out


def merge_saved(
    saved: DictConfig, composed: DictConfig, overrides: list[str], run_dir: Path
) -> tuple[DictConfig, list[str]]:
    """The config of a re-launch of ``run_dir`` (see the module docstring).

    Returns:
        ``(config, changes)``: the saved config with this launch's run-independent settings,
        and ``key: saved -> new`` lines for what changed.
    Raises:
        RelaunchConflict: an override that changes a run-dependent key.
    """
    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=False))
    changes, conflicts = [], []
    as_identity = identity_config(saved), identity_config(composed)  # see the module docstring
    for key in dict.fromkeys([*set_keys(overrides), *PER_LAUNCH]):
        old, new = _get(saved, key), _get(composed, key)
        if old == new:
            continue
        if run_independent(key):
            OmegaConf.update(merged, key, OmegaConf.select(composed, key), force_add=True)
            changes.append(f"{key}: {old!r} -> {new!r}")
        elif _pick(as_identity[0], key) != _pick(as_identity[1], key):
            conflicts += [f"  {k}: this run has {a!r}, the command asks {b!r}"
                          for k, a, b in _differences(key, old, new)]  # fmt: skip
    if conflicts:
        raise RelaunchConflict(
            f"{run_dir} is an existing run; a re-launch takes its saved config "
            f"({run_dir / SAVED}) and may change only {list(RUN_INDEPENDENT)}. "
            "These overrides conflict with it:\n" + "\n".join(conflicts) + "\nRemove them "
            "(e.g. `bapo-exp eval <run_dir> [eval.* overrides]` re-evaluates), or start a new "
            "run directory."
        )
    return merged, changes
