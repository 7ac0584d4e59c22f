"""The lm-eval requests of our suites, and lm-eval's per-item verdicts from their results.

    instances, tasks = build_requests(data_root, "hhh", limit=None)
    results = lm.loglikelihood(instances)                   # [(logprob, is_greedy), ...]
    metrics = item_metrics(tasks, instances, results)       # {(task, doc_id): {"acc", "acc_norm"}}
    picks = item_picks(tasks, instances, results)           # {(task, doc_id): (pred, pred_norm)}

For comparing backends request by request (tests/evaluation/test_backend*.py,
benchmarks/eval_throughput.py) without running ``simple_evaluate`` twice.
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bapo_exp.evaluation.harness import build_tasks


def build_requests(
    data_root: str | Path,
    suite: str,
    *,
    limit: int | None,
    num_fewshot: int = 0,
    subjects: Sequence[str] | None = None,
) -> tuple[list, dict]:
    """lm-eval ``Instance``s of ``suite`` (``limit`` items per task, None = all) and its leaf
    tasks by name, built from our task files exactly as ``evaluate`` builds them."""
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


def _by_item(instances: list, results: list) -> dict[tuple, list]:
    rows: dict[tuple, list] = defaultdict(list)
    for inst, res in zip(instances, results, strict=True):
        rows[(inst.task_name, inst.doc_id)].append((inst.idx, inst.doc, res))
    for item in rows.values():
        item.sort(key=lambda r: r[0])
    return rows


def item_metrics(tasks: dict, instances: list, results: list) -> dict[tuple, dict]:
    """lm-eval's own per-item metrics (``acc``, ``acc_norm``) from ``(logprob, is_greedy)``."""
    return {
        key: tasks[key[0]].process_results(rows[0][1], [r[2] for r in rows])
        for key, rows in _by_item(instances, results).items()
    }


def item_picks(tasks: dict, instances: list, results: list) -> dict[tuple, tuple[int, int]]:
    """The choice each item's ``acc`` and ``acc_norm`` pick (lm-eval's rule: arg-max of the
    log-likelihoods, and of them divided by the choice's length in characters)."""
    out = {}
    for key, rows in _by_item(instances, results).items():
        lls = np.array([r[2][0] for r in rows])
        lengths = np.array([float(len(c)) for c in tasks[key[0]].doc_to_choice(rows[0][1])])
        out[key] = (int(np.argmax(lls)), int(np.argmax(lls / lengths)))
    return out
