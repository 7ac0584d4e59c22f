"""What a run *is*: its identity, and the folder of each multirun cell (design).

    run_identity(task_cfg)  # sha256 of the resolved config that changes results
    ${cell_dir:}            # hydra.sweep.subdir: the cell's folder, found by its identity

A run's identity is its config with the run-independent keys left out (``RUN_INDEPENDENT``:
stages, force, eval, logger, paths, name, objective), resolved, in canonical JSON. Because the
composed config holds every key, a key set to its default names the same run as the key left
out, and ``seed=0`` names the same cell as a grid that never mentioned the seed. ``paths.*`` are
replaced by placeholders before resolving, so nothing machine-specific enters the identity.
The data fields every source shared before per-source schemas (``LEGACY_DATA_FIELDS``) enter it
at their old defaults where the source's schema lacks them, and so does the micro source's
``micro`` on every model spec whose source lacks it (``LEGACY_MODEL_FIELDS``: the policy and each
reference, the references first filled with their schema's defaults, as the typed list held
them): cells finished before those changes keep their identity, and nothing is recomputed.

A multirun cell's folder is looked up by identity in ``<sweep dir>/.cells/<identity>`` (one
small file per cell, created atomically, naming the folder). A new cell gets a readable name
from its own command-line overrides (``method=bapo,seed=1``, %-escaped), suffixed with the
identity where that name is taken by another cell. Model lists are named by their models'
names (``method.references=[{name: mistral_7b_instruct, ...}]`` -> ``refs=mistral_7b_instruct``,
``@tiny`` appended where ``reference_substitute`` replaces them): the name is for people, the
identity (the resolved config) is what finds the cell. Folders of grids launched before the index
existed are indexed on first use, from their ``.hydra/config.yaml``. Extending a grid by a seed
or re-typing a default therefore reuses the finished cells: nothing is recomputed or counted
twice (``bapo_exp.analysis.load_runs`` also refuses runs with equal identities).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import urllib.parse
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import (
    LEGACY_FIELDS,
    LEGACY_MODEL_FIELDS,
    REFERENCES,
    RUN_INDEPENDENT,
    RUN_INDEPENDENT_KEYS,
    run_independent,
    spec_container,
)

log = logging.getLogger(__name__)
INDEX = ".cells"
MAX_DIRNAME = 160  # characters of one path component kept readable (filesystems allow 255 bytes)
SAFE = "=,[]{}:._-+@"  # kept as typed; everything else ('/', spaces, quotes, '%') is %-escaped
NOT_IN_NAME = ("experiment",)  # the sweep folder already says it
SHORT_KEYS = {"method.references": "refs"}  # long values named by their models (see module)


def _placeholders(node: Any, prefix: str) -> Any:
    if isinstance(node, dict):
        return {k: _placeholders(v, f"{prefix}.{k}") for k, v in node.items()}
    return f"<{prefix}>"


def _as_before(resolved: dict[str, Any]) -> None:
    """Fill in, in place, what the schemas held before per-source schemas (module docstring)."""
    for group, legacy in LEGACY_FIELDS.items():  # data: the shared fields; model: micro
        if isinstance(resolved.get(group), dict):
            resolved[group] = {**legacy, **resolved[group]}
    method = resolved.get("method")
    if isinstance(method, dict) and isinstance(method.get("references"), list):
        method["references"] = [{**LEGACY_MODEL_FIELDS, **spec_container(r, f"{REFERENCES}[{i}]")}
                                for i, r in enumerate(method["references"])]  # fmt: skip


def identity_config(task_cfg: DictConfig | dict) -> dict[str, Any]:
    """The resolved config that changes results (run-independent keys removed)."""
    plain = (
        OmegaConf.to_container(task_cfg, resolve=False, enum_to_str=True)
        if OmegaConf.is_config(task_cfg)
        else dict(task_cfg)
    )
    plain.pop("hydra", None)
    if isinstance(plain.get("paths"), dict):  # interpolations into paths resolve to placeholders
        plain["paths"] = _placeholders(plain["paths"], "paths")
    resolved = OmegaConf.to_container(OmegaConf.create(plain), resolve=True, enum_to_str=True)
    for key in RUN_INDEPENDENT_KEYS:
        head, _, leaf = key.rpartition(".")
        resolved.get(head, {}).pop(leaf, None)
    _as_before(resolved)
    return {k: v for k, v in resolved.items() if k not in RUN_INDEPENDENT}


def run_identity(task_cfg: DictConfig | dict) -> str:
    """16 hex digits of the sha256 of :func:`identity_config` in canonical JSON."""
    text = json.dumps(identity_config(task_cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _named(item: str, substitute: str | None) -> str:
    """``key=value``, or for a list of models (``SHORT_KEYS``) ``refs=<name>+<name>``."""
    key, _, value = item.partition("=")
    if key.lstrip("+~") not in SHORT_KEYS:
        return item
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_override(item).value()
    models = parsed if isinstance(parsed, list) else [parsed]
    names = [str(m.get("name", "?")) if isinstance(m, dict) else str(m) for m in models]
    suffix = f"@{substitute}" if substitute else ""
    return f"{SHORT_KEYS[key.lstrip('+~')]}={'+'.join(names) or 'none'}{suffix}"


def readable_name(overrides: list[str], substitute: str | None = None) -> str:
    """A folder name from the cell's own overrides: sorted ``key=value``, %-escaped into one path
    component; run-independent keys are left out, model lists named by their models (module
    docstring; ``substitute``: the config's ``reference_substitute``). No overrides -> ``cell``."""
    keep = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if not run_independent(key.split("/", 1)[0]) and key not in NOT_IN_NAME:
            keep.append(_named(item, substitute))
    text = ",".join(sorted(keep))
    return urllib.parse.quote(text, safe=SAFE)[:MAX_DIRNAME] if text else "cell"


def quoted(value: str) -> str:
    """A Hydra override value in quotes: a cell folder's name holds '=' and ','
    (``hydra.run.dir=<cell folder>`` is otherwise a parse error)."""
    return "'" + value.replace("'", "\\'") + "'"


def saved_identity(run_dir: Path) -> str:
    """The identity of an existing run from its ``.hydra/config.yaml``."""
    from bapo_exp.readback import load_saved_config

    return run_identity(load_saved_config(run_dir / ".hydra" / "config.yaml"))


def _claim(index: Path, name: str) -> str:
    """Create ``index`` naming ``name``; if another process got there first, its name wins."""
    index.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(index, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return index.read_text().strip() or name
    with os.fdopen(fd, "w") as fh:
        fh.write(name + "\n")
    return name


def index_existing(sweep: Path) -> dict[str, str]:
    """``identity -> folder`` of every cell under ``sweep``, indexing folders not yet indexed.

    Two folders with one identity (grids launched before cell identities existed) are
    reported; the first, in name order, keeps the identity.
    """
    folder = sweep / INDEX
    known = {p.name: p.read_text().strip() for p in folder.glob("*")} if folder.is_dir() else {}
    indexed = set(known.values())
    for cfg in sorted(sweep.glob("*/.hydra/config.yaml")):
        run = cfg.parent.parent
        if run.name in indexed:
            continue
        ident = saved_identity(run)
        if ident in known and known[ident] != run.name:
            log.warning("%s and %s are the same cell (identity %s): the analysis refuses such "
                        "duplicates; delete one", sweep / known[ident], run, ident)  # fmt: skip
            continue
        known[ident] = _claim(folder / ident, run.name)
    return known


def cell_dir(*, _root_: DictConfig) -> str:
    """``${cell_dir:}``: the folder of this job's cell under ``hydra.sweep.dir`` (see module)."""
    sweep = Path(str(_root_.hydra.sweep.dir))
    ident = run_identity(_root_)
    index = sweep / INDEX / ident
    if index.exists():
        return index.read_text().strip()
    known = index_existing(sweep) if sweep.is_dir() else {}
    if ident in known:
        return known[ident]
    substitute = OmegaConf.select(_root_, "reference_substitute", default=None)
    name = readable_name(list(_root_.hydra.overrides.task), substitute)
    if name == "cell":  # nothing on the command line (experiment=base_model): name its model
        name = f"model={OmegaConf.select(_root_, 'model.name', default='cell')}"
    if name in known.values() or (sweep / name).exists():
        name = f"{name[: MAX_DIRNAME - 18]}~{ident}"
    return _claim(index, name)
