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
from typing import Any

import numpy as np

from bapo_exp.evaluation.harness import build_tasks, no_lm_eval_bars


def build_requests(
    data_root: str | Path,
    suite: str,
    *,
    limit: int | None,
    num_fewshot: int = 0,
    subjects: Sequence[str] | None = None,
    **task_settings: Any,
) -> tuple[list, dict]:
    """lm-eval ``Instance``s of ``suite`` (``limit`` items per task, None = all) and its leaf
    tasks by name, built from our task files exactly as ``evaluate`` builds them
    (``task_settings``: ``build_tasks``' ``mc_format``, ``mmlu_categories``, ``data``,
    ``cache_dir``)."""
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
                              mmlu_subjects=subjects, **task_settings)  # fmt: skip
        manager = TaskManager(include_path=task_dir, include_defaults=False)
        with no_lm_eval_bars():
            walk(get_task_dict([layouts[suite][suite]["name"]], manager))
    return instances, tasks


def continuation_tokens(instances: list, tokenizer: Any) -> list[int]:
    """Each request's continuation length in tokens, split as lm-eval's ``HFLM`` splits it
    (``TemplateLM._encode_pair``: the context's trailing spaces move to the continuation, the
    whole text is encoded and the context's tokens cut off; an empty context scores the
    continuation alone). Special tokens are left out: a BOS would start both encodings."""

    def encode(text: str) -> list[int]:
        return tokenizer.encode(text, add_special_tokens=False)

    lengths = []
    for inst in instances:
        context, continuation = inst.args
        if not context:
            lengths.append(len(encode(continuation)))
            continue
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        lengths.append(len(encode(context + continuation)) - len(encode(context)))
    return lengths


def _by_item(instances: list, results: list) -> dict[tuple, list]:
    rows: dict[tuple, list] = defaultdict(list)
    for inst, res in zip(instances, results, strict=True):
        rows[(inst.task_name, inst.doc_id)].append((inst.idx, inst.doc, res))
    for item in rows.values():
        item.sort(key=lambda r: r[0])
    return rows


def item_metrics(tasks: dict, instances: list, results: list) -> dict[tuple, dict]:
    """lm-eval's own per-item metrics ``acc`` and ``acc_norm`` from ``(logprob, is_greedy)``
    (the thresholded ones: ``brier_score``'s probabilities follow the log-likelihoods, which
    callers compare within float rounding)."""
    out = {}
    for key, rows in _by_item(instances, results).items():
        metrics = tasks[key[0]].process_results(rows[0][1], [r[2] for r in rows])
        out[key] = {k: v for k, v in metrics.items() if k in ("acc", "acc_norm")}
    return out


def item_picks(tasks: dict, instances: list, results: list) -> dict[tuple, tuple[int, int]]:
    """The choice each item's ``acc`` and ``acc_norm`` pick (lm-eval's rule: arg-max of the
    log-likelihoods, and of them divided by the choice's length in characters)."""
    out = {}
    for key, rows in _by_item(instances, results).items():
        lls = np.array([r[2][0] for r in rows])
        lengths = np.array([float(len(c)) for c in tasks[key[0]].doc_to_choice(rows[0][1])])
        out[key] = (int(np.argmax(lls)), int(np.argmax(lls / lengths)))
    return out
