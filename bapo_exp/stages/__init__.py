"""Stage registry: ``run(cfg, run, tracker) -> dict`` functions, imported lazily.

Stages run in the order of ``cfg.stages``; each writes ``<stage>/summary.json`` then
``<stage>/DONE`` through the entrypoint, so a re-launch skips finished stages. ``outputs`` are
the run-directory entries a stage owns: a forced re-run moves them aside and puts them back if
it fails (``bapo_exp.run.launch.redo``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

StageFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class StageSpec:
    module: str
    outputs: tuple[str, ...]

    def load(self) -> StageFn:
        return importlib.import_module(self.module).run


STAGES = {
    # base responses + reference log-probs (cached, shared across runs)
    "reference": StageSpec("bapo_exp.stages.reference", ("reference", "data")),
    # the one training loop for every method
    "train": StageSpec("bapo_exp.stages.train", ("train", "checkpoints")),
    # lm-eval suites + personalisation metrics
    "eval": StageSpec("bapo_exp.stages.evaluate", ("eval",)),
}
