"""Flatten the harness records into ``{"mmlu/humanities/acc": 0.26, ...}`` (eval/summary.json).

    from bapo_exp.evaluation.summary import flatten
    summary = flatten(evaluate(model, tokenizer, suites=["hhh"], ...))

For every prefix P in a record's layout (``mmlu``, ``mmlu/<category>``, ``mmlu/subject/<s>``,
``scienceqa``, ``hhh``, ``hhh/<subset>``) the summary has ``P/acc``, ``P/acc_stderr``,
``P/acc_norm``, ``P/acc_norm_stderr``, ``P/n``, ``P/chance``, ``P/at_chance`` and
``P/at_chance_norm``; ``P/brier`` where the suite scores it (MMLU format and HHH format: lm-eval's
``brier_score``); and ``<suite>/wall_time_s`` per suite.

- ``acc`` sums the log-likelihood of each choice, ``acc_norm`` divides it by the choice's length
  in bytes (lm-eval). ``mmlu*``, ``scienceqa`` and ``hhh`` weight items equally (``hhh`` pools
  its 221 items, as lm-eval's ``bigbench_hhh_alignment``); ``hhh/subset_mean`` is the unweighted
  mean of the subsets (as BIG-bench reports), ``n`` its total items.
- ``_stderr`` is lm-eval's (sample standard error; pooled for groups) and, where lm-eval gives
  none, the binomial ``sqrt(p (1 - p) / n)`` (for a mean of subsets: ``sqrt(sum se_i^2) / k``).
- ``brier`` is the mean over items of ``sum_c (p_c - [c = gold])^2``, ``p`` the softmax of the
  choices' summed log-likelihoods: a continuous measure beside ``acc`` (0 for a model sure of
  every right answer; it moves before an answer flips, so it has no ceiling where ``acc`` does).
  Groups weight it by items like ``acc``; lm-eval gives it no standard error.
- ``chance`` is the mean over items of ``1 / #choices`` (a mean of subsets: of the subsets').
- ``at_chance`` is 1.0 when ``|acc - chance| <= 2 * max(se, se0)``, ``se`` the stderr above and
  ``se0 = sqrt(chance (1 - chance) / n)`` the stderr of a model at chance (so a perfect or a
  zero score on a handful of items does not count as evidence). A base model at chance has
  nothing to forget: read its deltas as noise (METHODS.md section 8).
"""

from __future__ import annotations

import math
from typing import Any

MC_METRICS = ("acc", "acc_norm")
CONTINUOUS = ("brier_score",)  # lm-eval name; summary key ``brier``
GROUP_METRICS = MC_METRICS + CONTINUOUS


def binomial_stderr(p: float, n: int) -> float:
    """``sqrt(p (1 - p) / n)``; NaN for ``n == 0``."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else float("nan")


def mean_stderr(ses: list[float]) -> float:
    """The standard error of an unweighted mean of independent estimates: ``sqrt(sum se_i^2) / k``
    (NaN for none)."""
    return math.sqrt(sum(se * se for se in ses)) / len(ses) if ses else float("nan")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _task_n(record: dict, task: str) -> int:
    n_samples = record.get("n-samples", {}).get(task)
    if n_samples is not None:
        return int(n_samples["effective"])
    return int(record.get("items", {}).get(task, {}).get("n", 0))


def _chance(record: dict, tasks: list[str], weighting: str) -> float:
    items = record.get("items", {})
    rates = [(items[t]["chance"], _task_n(record, t)) for t in tasks if t in items]
    if not rates:
        return float("nan")
    if weighting == "mean":
        return sum(c for c, _ in rates) / len(rates)
    total = sum(n for _, n in rates)
    return sum(c * n for c, n in rates) / total if total else float("nan")


def _fallback_stderr(
    record: dict, tasks: list[str], weighting: str, metric: str, p: float
) -> float:
    """Binomial stderr when lm-eval reports none (``N/A``, missing or non-finite)."""
    if weighting != "mean" or len(tasks) == 1:
        return binomial_stderr(p, sum(_task_n(record, t) for t in tasks))
    ses = []
    for t in tasks:
        pt = _number(record["results"].get(t, {}).get(f"{metric},none"))
        ses.append(binomial_stderr(pt if pt is not None else float("nan"), _task_n(record, t)))
    return mean_stderr(ses)


def _null_stderr(chance: float, record: dict, tasks: list[str], weighting: str) -> float:
    """Standard error of the accuracy of a model that guesses (at the chance rate)."""
    if weighting != "mean" or len(tasks) == 1:
        return binomial_stderr(chance, sum(_task_n(record, t) for t in tasks))
    items = record.get("items", {})
    ses = [binomial_stderr(items[t]["chance"], _task_n(record, t)) for t in tasks if t in items]
    return mean_stderr(ses)


def _mean_of(record: dict, tasks: list[str]) -> dict[str, float] | None:
    """The unweighted mean of the leaf tasks' metrics (an entry without an lm-eval group)."""
    found = [record["results"][t] for t in tasks if t in record["results"]]
    if not found:
        return None
    out = {}
    for metric in GROUP_METRICS:
        values = [_number(r.get(f"{metric},none")) for r in found]
        if all(v is not None for v in values):
            out[f"{metric},none"] = sum(values) / len(values)
        ses = [_number(r.get(f"{metric}_stderr,none")) for r in found]
        if all(se is not None for se in ses):  # the subsets' own (lm-eval) standard errors
            out[f"{metric}_stderr,none"] = mean_stderr(ses)
    return out


def at_chance(acc: float, stderr: float, chance: float, null_stderr: float) -> float:
    """1.0 when ``acc`` is within two standard errors of ``chance`` (see module docstring)."""
    if any(math.isnan(x) for x in (acc, chance)):
        return float("nan")
    se = max(s for s in (stderr, null_stderr, 0.0) if not math.isnan(s))
    return 1.0 if abs(acc - chance) <= 2.0 * se + 1e-12 else 0.0


def flatten_entry(record: dict, prefix: str, entry: dict) -> dict[str, float]:
    """Flat keys for one layout entry ``{"name", "tasks", "weighting"}`` of a suite record."""
    tasks, weighting = entry["tasks"], entry.get("weighting", "size")
    res = record["results"].get(entry["name"]) if entry["name"] else _mean_of(record, tasks)
    if res is None:
        return {}
    n = sum(_task_n(record, t) for t in tasks)
    chance = _chance(record, tasks, weighting)
    se0 = _null_stderr(chance, record, tasks, weighting)
    out: dict[str, float] = {f"{prefix}/n": float(n), f"{prefix}/chance": chance}
    for metric in MC_METRICS:
        p = _number(res.get(f"{metric},none"))
        if p is None:
            continue
        se = _number(res.get(f"{metric}_stderr,none"))
        if se is None:
            se = _fallback_stderr(record, tasks, weighting, metric, p)
        out[f"{prefix}/{metric}"] = p
        out[f"{prefix}/{metric}_stderr"] = se
        flag = "at_chance" if metric == "acc" else f"at_chance_{metric.removeprefix('acc_')}"
        out[f"{prefix}/{flag}"] = at_chance(p, se, chance, se0)
    brier = _number(res.get("brier_score,none"))
    if brier is not None:
        out[f"{prefix}/brier"] = brier
    return out


def flatten(results: dict[str, dict]) -> dict[str, float]:
    """``{suite: record}`` from :func:`bapo_exp.evaluation.harness.evaluate` -> flat floats."""
    out: dict[str, float] = {}
    for suite, record in results.items():
        for prefix, entry in record.get("layout", {}).items():
            out.update(flatten_entry(record, prefix, entry))
        if "wall_time_s" in record:
            out[f"{suite}/wall_time_s"] = float(record["wall_time_s"])
    return out
