"""P-Soups persona preference pairs (Jang et al. 2023, arXiv 2310.11564), official pair schema.

Rows are ``{"user_input": "<instruction> [<input>] <persona prompt>", "completion_a": preferred,
"completion_b": rejected, ...}`` (other columns are ignored). ``data.path`` is either the
official ``rm_training/`` folder with one ``<P>.json`` per persona (persona = file stem), or one
JSON file whose rows carry a ``persona`` column or, failing that, are attributed by the persona
prompt found in ``user_input``. Persona ids and prompts come from
``<data_root>/psoups/personas.json``. Splits are by prompt (persona prompt removed).

    python -m bapo_exp method=dpo data=psoups data.path=/data/psoups/rm_training
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bapo_exp.config import DataConfig
from bapo_exp.data.heterogeneity import SplitPools, split_groups, split_note
from bapo_exp.data.io import read_json, read_records, resolve_path
from bapo_exp.data.types import PreferenceExample
from bapo_exp.data.validation import (
    DataError,
    check_preferences,
    record_error,
    require_known,
    require_mapping,
    require_str,
)

log = logging.getLogger(__name__)

DEFAULT_PATH = "psoups/rm_training"
PERSONAS_FILE = "psoups/personas.json"
MISSING_HINT = (
    "the P-Soups pairs (data.zip: rm_training/<P>.json) are not part of the shared data; "
    "download them as described in psoups/SOURCE.md and set data.path"
)


@dataclass(frozen=True)
class Row:
    """One validated P-Soups row."""

    path: Path
    index: int
    persona: str
    user_input: str
    chosen: str
    rejected: str


def load_persona_prompts(path: Path) -> dict[str, list[str]]:
    """persona id -> its prompt strings (data and policy variants), longest first."""
    data = read_json(path)
    personas = data.get("personas") if isinstance(data, dict) else None
    if not isinstance(personas, dict) or not personas:
        raise DataError(f"{path}: expected an object with a non-empty 'personas' mapping")
    out: dict[str, list[str]] = {}
    for pid, entry in personas.items():
        entry = entry if isinstance(entry, dict) else {}
        texts = {
            entry[k]
            for k in ("rm_training_prompt", "policy_prompt")
            if isinstance(entry.get(k), str)
        }
        texts = {t for t in texts if t.strip()}
        if not texts:
            raise DataError(
                f"{path}: persona {pid!r}, field 'rm_training_prompt': missing or empty"
            )
        out[pid] = sorted(texts, key=len, reverse=True)
    return out


def strip_persona(text: str, prompts: list[str]) -> tuple[str, bool]:
    """Remove the (last occurrence of the) persona prompt; returns (text, found)."""
    for p in prompts:
        if p in text:
            head, _, tail = text.rpartition(p)
            return " ".join(s for s in (head.strip(), tail.strip()) if s), True
    return text.strip(), False


def _row_persona(rec: dict, user: str, prompts: dict[str, list[str]], path: Path, i: int) -> str:
    if "persona" in rec:
        pid = require_str(rec, "persona", path=path, index=i)
        return require_known(pid, prompts, path=path, index=i, field="persona", kind="persona")
    found = [pid for pid, ps in prompts.items() if any(p in user for p in ps)]
    if len(found) != 1:
        problem = "no known persona prompt" if not found else f"prompts of several personas {found}"
        raise record_error(
            path,
            i,
            "user_input",
            f"{problem}; add a 'persona' field or use the rm_training/<P>.json layout",
        )
    return found[0]


def read_rows(
    path: Path, prompts: dict[str, list[str]], *, persona: str | None, allow_empty: bool
) -> list[Row]:
    """Validate one pairs file; ``persona`` fixes the persona (folder layout)."""
    rows = []
    for i, rec in enumerate(read_records(path, hint=MISSING_HINT)):
        rec = require_mapping(rec, path=path, index=i, field="<record>")
        user = require_str(rec, "user_input", path=path, index=i)
        a = require_str(rec, "completion_a", path=path, index=i, allow_empty=allow_empty)
        b = require_str(rec, "completion_b", path=path, index=i, allow_empty=allow_empty)
        pid = persona or _row_persona(rec, user, prompts, path, i)
        rows.append(Row(path, i, pid, user, a, b))
    return rows


def _read_all(
    path: Path, prefs: list[str], prompts: dict[str, list[str]], allow_empty: bool
) -> list[Row]:
    if path.is_dir():
        rows: list[Row] = []
        for pid in prefs:
            rows += read_rows(path / f"{pid}.json", prompts, persona=pid, allow_empty=allow_empty)
        return rows
    if not path.exists():
        raise DataError(f"{path}: not found; {MISSING_HINT}")
    return [
        r
        for r in read_rows(path, prompts, persona=None, allow_empty=allow_empty)
        if r.persona in prefs
    ]


def _example(row: Row, prompt: str) -> PreferenceExample:
    return PreferenceExample(
        id=f"psoups/{row.persona}/r{row.index:06d}",
        prompt=prompt,
        chosen=row.chosen,
        rejected=row.rejected,
        preference=row.persona,
        source={"dataset": "psoups", "file": str(row.path), "record_index": str(row.index)},
    )


def build(cfg: DataConfig, *, data_root: str, cache_dir: str, load_writer=None) -> SplitPools:
    """P-Soups pairs for ``cfg.preferences`` (empty = every persona in personas.json)."""
    del cache_dir, load_writer
    personas_path = Path(data_root) / PERSONAS_FILE
    prompts = load_persona_prompts(personas_path)
    prefs = check_preferences(
        cfg.preferences, prompts, kind="persona", defined_in=str(personas_path)
    )
    policy = cfg.empty_responses
    if policy not in ("error", "drop"):
        raise DataError(f"data.empty_responses must be 'error' or 'drop', got {policy!r}")
    path = resolve_path(cfg.path, data_root, DEFAULT_PATH, hint=MISSING_HINT)
    rows = _read_all(path, prefs, prompts, allow_empty=policy == "drop")
    stripped = [strip_persona(r.user_input, prompts[r.persona]) for r in rows]
    held = split_groups(
        [s for s, _ in stripped], heldout_frac=cfg.heldout_frac, seed=cfg.split_seed
    )
    pools = SplitPools(train={p: [] for p in prefs}, heldout={p: [] for p in prefs})
    for row, (plain, _) in zip(rows, stripped, strict=True):
        prompt = plain if cfg.strip_persona_prompt else row.user_input.strip()
        side = pools.heldout if plain in held else pools.train
        side[row.persona].append(_example(row, prompt))
    missing = sum(1 for _, found in stripped if not found)
    if missing:
        log.warning("P-Soups: %d rows lack their persona prompt in user_input", missing)
    pools.report = {
        "dataset": "psoups",
        "files": sorted({str(r.path) for r in rows}) or [str(path)],
        "personas_file": str(personas_path),
        "preferences": prefs,
        "strip_persona_prompt": cfg.strip_persona_prompt,
        "n_rows": {p: sum(1 for r in rows if r.persona == p) for p in prefs},
        "persona_prompt_not_found": missing,
        "split": split_note(
            [s for s, _ in stripped], held, heldout_frac=cfg.heldout_frac, seed=cfg.split_seed
        ),
    }
    return pools
