"""The run directory: the interface between stages, notebooks and W&B (STYLE §17).

Its files are read back checked (``bapo_exp.readback``): an unreadable summary or other JSON
file of the run is a one-line ``DamagedFileError`` naming it and what to do.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bapo_exp.atomic import append_lines, json_line, write_json_atomic, write_text_atomic
from bapo_exp.readback import read_json_file


@dataclass(frozen=True)
class RunDir:
    """Paths and file conventions of one run directory."""

    root: Path

    @classmethod
    def from_hydra(cls) -> RunDir:
        from hydra.core.hydra_config import HydraConfig

        return cls(Path(HydraConfig.get().runtime.output_dir))

    def path(self, *parts: str) -> Path:
        """A path inside the run directory; its parent folder is created."""
        p = self.root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, rel: str, obj: Any) -> Path:
        p = self.path(rel)
        write_json_atomic(p, obj)
        return p

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def save_config(self, yaml_text: str) -> None:
        """Replace ``.hydra/config.yaml`` (after a successful re-launch changed its settings)."""
        write_text_atomic(self.root / ".hydra" / "config.yaml", yaml_text)

    def read_json(self, rel: str, what: str = "run file") -> Any:
        """A JSON file of this run, checked (``DamagedFileError``: one line naming it)."""
        fix = "it is written by this run and cannot be rebuilt from its other files: restore it"
        return read_json_file(self.root / rel, what=what, fix=f"{fix} from a copy")

    def append_jsonl(self, rel: str, obj: dict) -> None:
        """Append one JSON line (never joined to a torn last line: ``atomic.append_lines``)."""
        append_lines(self.path(rel), [json_line(obj)])

    def done_marker(self, stage: str) -> Path:
        return self.root / stage / "DONE"

    def is_done(self, stage: str) -> bool:
        return self.done_marker(stage).exists()

    def mark_done(self, stage: str, summary: dict[str, Any], seconds: float | None = None) -> None:
        """Write ``<stage>/summary.json``, then ``<stage>/DONE`` (in that order); ``DONE`` holds
        the stage's wall seconds and finish time (its existence is what marks the stage done)."""
        self.write_json(f"{stage}/summary.json", summary)
        record = {"seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self.write_json(f"{stage}/DONE", record)

    def stage_seconds(self, stage: str) -> float | None:
        """The wall seconds ``DONE`` recorded for a stage (None: not done, an older run, or an
        unreadable marker: its existence alone marks the stage done)."""
        try:
            record = json.loads(self.done_marker(stage).read_text() or "{}")
        except (OSError, ValueError):
            return None
        seconds = record.get("seconds") if isinstance(record, dict) else None
        return seconds if isinstance(seconds, int | float) else None

    def summary(self, stage: str) -> dict[str, Any] | None:
        """``<stage>/summary.json`` (None if absent); ``DamagedFileError`` if unreadable."""
        p = self.root / stage / "summary.json"
        if not p.exists():
            return None
        redo = f"python -m bapo_exp stages=[{stage}] force=true hydra.run.dir={self.root}"
        return read_json_file(p, what="stage summary", fix=f"re-run that stage: `{redo}`")

    def objective(self, key: str | None) -> float | None:
        """The metric a sweeper optimises, read from a stage summary: ``eval/mmlu/acc``."""
        if key is None:
            return None
        stage, _, metric = key.partition("/")
        value = (self.summary(stage) or {}).get(metric)
        return float(value) if value is not None else None
