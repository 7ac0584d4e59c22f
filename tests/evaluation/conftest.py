"""Evaluation-test fixtures.

lm-eval's environment report is skipped: torch ``collect_env`` runs pip and other subprocesses,
about 2.5 s per ``simple_evaluate`` call, and the run directory's env.json records the same.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_lm_eval_env_report(monkeypatch):
    import lm_eval.evaluator

    monkeypatch.setattr(lm_eval.evaluator, "add_env_info", lambda storage: None)
