"""Evaluation: lm-eval suites on the in-memory model (harness) and their flat summary."""

from bapo_exp.evaluation.harness import build_tasks, evaluate, make_lm
from bapo_exp.evaluation.suites import SUITES
from bapo_exp.evaluation.summary import flatten

__all__ = ["SUITES", "build_tasks", "evaluate", "flatten", "make_lm"]
