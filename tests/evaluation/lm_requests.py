"""lm-eval requests of our suites and per-item metrics: backends compared request by request."""

from __future__ import annotations

import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from bapo_exp.evaluation.harness import build_tasks

MMLU_SUBJECTS = ["abstract_algebra", "high_school_biology", "philosophy", "world_religions"]


def build_requests(
    data_root: Path, suite: str, *, limit: int | None, num_fewshot: int = 0, subjects=None
) -> tuple[list, dict]:
    """lm-eval ``Instance``s of ``suite`` (``limit`` items per task) and the tasks by name."""
    from lm_eval.tasks import TaskManager, get_task_dict

    instances: list = []
    tasks: dict = {}

    def walk(node: dict) -> None:
        for value in node.values():
            if isinstance(value, dict):
                walk(value)
            else:
                value.build_all_requests(limit=limit)
                instances.extend(value.instances)
                tasks[value.config.task] = value

    with tempfile.TemporaryDirectory() as task_dir:
        layouts = build_tasks(data_root, [suite], task_dir, num_fewshot=num_fewshot,
                              mmlu_subjects=subjects)  # fmt: skip
        manager = TaskManager(include_path=task_dir, include_defaults=False)
        walk(get_task_dict([layouts[suite][suite]["name"]], manager))
    return instances, tasks


def item_metrics(tasks: dict, instances: list, results: list) -> dict[tuple, dict]:
    """lm-eval's own per-item metrics (acc, acc_norm) from per-request ``(logprob, greedy)``."""
    by_item: dict[tuple, list] = defaultdict(list)
    for inst, res in zip(instances, results, strict=True):
        by_item[(inst.task_name, inst.doc_id)].append((inst.idx, inst.doc, res))
    out = {}
    for (task, doc_id), rows in by_item.items():
        rows.sort(key=lambda r: r[0])
        out[(task, doc_id)] = tasks[task].process_results(rows[0][1], [r[2] for r in rows])
    return out


def tolerance(reference: float) -> float:
    """1e-4, or 2 float32 ulps of the value when that is larger (|logprob| > ~420: a sum of
    hundreds of float32 token log-probs cannot be closer than its own rounding)."""
    return max(1e-4, 2 * float(np.spacing(np.float32(abs(reference)))))


def compare(ours: list, reference: list) -> dict:
    """Largest deviation, requests outside ``tolerance``, is_greedy mismatches and greedy count."""
    diffs = [abs(a[0] - b[0]) for a, b in zip(ours, reference, strict=True)]
    outside = [i for i, (a, b) in enumerate(zip(ours, reference, strict=True))
               if abs(a[0] - b[0]) > tolerance(b[0])]  # fmt: skip
    return {
        "max_abs_diff": max(diffs, default=0.0),
        "outside": outside,
        "greedy_mismatch": [
            i for i, (a, b) in enumerate(zip(ours, reference, strict=True)) if a[1] != b[1]
        ],  # fmt: skip
        "n_greedy": sum(b[1] for b in reference),
    }
