"""Stage registry: ``run(cfg, run, tracker) -> dict`` functions, imported lazily.

Stages run in the order of ``cfg.stages``; each writes ``<stage>/summary.json`` then
``<stage>/DONE`` through the entrypoint, so a re-launch skips finished stages.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

STAGE_MODULES = {
    "reference": "bapo_exp.stages.reference",  # base responses + reference log-probs (cached)
    "train": "bapo_exp.stages.train",  # the one training loop for every method
    "eval": "bapo_exp.stages.evaluate",  # lm-eval suites + personalisation metrics
}

StageFn = Callable[..., dict[str, Any]]


def get_stage(name: str) -> StageFn:
    try:
        module = STAGE_MODULES[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; available: {list(STAGE_MODULES)}") from None
    return importlib.import_module(module).run
