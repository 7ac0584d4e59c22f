"""lm-eval on the in-memory model: MMLU, ScienceQA (text-only) and HHH from local files.

    from bapo_exp.evaluation.harness import evaluate
    raw = evaluate(model, tokenizer, suites=["mmlu", "scienceqa", "hhh"],
                   data_root="../shared/data", limit=None, batch_size=8, out_dir=run.path("eval"))

The task templates ship in ``bapo_exp/evaluation/tasks`` (lm-eval's YAML dialect). At run time
:func:`build_tasks` discovers subjects, categories and subsets under ``data_root`` and writes
one small YAML per task into a temporary include directory; each includes a shipped template
and carries the absolute data paths in ``dataset_kwargs`` (read by ``custom_dataset``
functions in ``tasks/utils.py``, so nothing touches the hub). ``model`` is a Hugging Face
``PreTrainedModel`` (a peft-wrapped model works as is, no merge) or any ``lm_eval`` ``LM``.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bapo_exp.evaluation.tasks import utils as task_utils

log = logging.getLogger(__name__)

SUITES = ("mmlu", "scienceqa", "hhh", "synthetic_knowledge", "synthetic_alignment")
MC_FORMATS = ("auto", "letter", "options")
# eval.mc_format=auto (design): the papers' letter format for the real MMLU, option text for the
# synthetic world (a micro model knows its facts but cannot read letters; issue #9).
AUTO_FORMAT = {"mmlu": "letter", "synthetic_knowledge": "options"}
# Option scoring of real MMLU = lm-eval's mmlu_continuation: "Question: ...\nAnswer:" + " option".
MMLU_OPTIONS = {
    "doc_to_text": "Question: {{question.strip()}}\nAnswer:",
    "doc_to_choice": "choices",
}
# The synthetic world's own prompt: the framework's plain template "{prompt}\n", the answer
# directly after it (no delimiter), exactly as in the micro base's pretraining corpus.
PLAIN_PROMPT = {"doc_to_text": "{{question.strip()}}\n", "target_delimiter": ""}
TEMPLATES_DIR = Path(__file__).resolve().parent / "tasks"
KEEP_BLOCKS = (
    "results",
    "configs",
    "groups",
    "group_subtasks",
    "n-samples",
    "n-shot",
    "versions",
    "higher_is_better",
)
MC_METRICS = ("acc", "acc_norm")


def _aggregate(weight_by_size: bool) -> list[dict[str, Any]]:
    return [{"metric": m, "weight_by_size": weight_by_size} for m in MC_METRICS]


def _group(name: str, tasks: list[str], weight_by_size: bool, **extra: Any) -> dict[str, Any]:
    """An lm-eval group file: ``tasks`` (task names or tags) aggregated into ``name``."""
    return {
        "group": name,
        **extra,
        "task": tasks,
        "aggregate_metric_list": _aggregate(weight_by_size),
        "metadata": {"version": 1.0},
    }


def _entry(name: str, tasks: list[str], weighting: str = "size") -> dict[str, Any]:
    """Where a flat summary prefix finds its numbers: lm-eval name, leaf tasks, weighting."""
    return {"name": name, "tasks": tasks, "weighting": weighting}


def mc_format_of(suite: str, mc_format: str) -> str:
    """The multiple-choice format a suite is scored in (``letter`` or ``options``)."""
    if mc_format not in MC_FORMATS:
        raise ValueError(f"eval.mc_format={mc_format!r}; choose one of {list(MC_FORMATS)}")
    return AUTO_FORMAT.get(suite, "letter") if mc_format == "auto" else mc_format


def _mmlu_prompt(subject: str, fmt: str, synthetic: bool) -> dict[str, Any]:
    """Template overrides of one MMLU-format subject task (description, prompt, choices)."""
    topic = subject.replace("_", " ")
    if fmt == "letter":
        head = f"The following are multiple choice questions (with answers) about {topic}.\n\n"
        return {"description": head}
    if synthetic:
        return {"description": "", **PLAIN_PROMPT, "doc_to_choice": "choices"}
    return {"description": f"The following are questions (with answers) about {topic}.\n\n",
            **MMLU_OPTIONS}  # fmt: skip


def _mmlu_configs(
    data_root: Path,
    num_fewshot: int,
    subjects: Sequence[str] | None,
    fmt: str = "letter",
    suite: str = "mmlu",
) -> tuple[dict[str, dict], dict[str, dict]]:
    """MMLU-format tasks: one per subject, one group per category, one for the suite.

    ``suite="synthetic_knowledge"`` names everything after the suite (categories are the
    answer wordings: ``world_facts`` = neutral, ``world_facts_<style>``) and uses the plain
    prompt in ``options`` format.
    """
    synthetic = suite != "mmlu"
    available = task_utils.mmlu_subjects(data_root)
    chosen = list(subjects) if subjects else available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(
            f"unknown MMLU subjects {unknown}; available under {data_root}: {available}"
        )
    category = task_utils.mmlu_categories(data_root, chosen)
    cats = sorted(set(category.values()))
    clash = sorted(set(chosen) & set(cats))
    if clash:
        raise ValueError(f"MMLU subject names equal category names: {clash}; rename one of them")
    files: dict[str, dict] = {}
    layout: dict[str, dict] = {}
    for subject in chosen:
        name = f"{suite}_{subject}"
        files[name] = {
            "include": str(TEMPLATES_DIR / "mmlu_template.yaml"),
            "task": name,
            "task_alias": subject,
            "tag": f"{suite}_{category[subject]}_tasks",
            "num_fewshot": num_fewshot,
            **_mmlu_prompt(subject, fmt, synthetic),
            "dataset_kwargs": {"mmlu_dir": str(data_root / "mmlu" / "data"), "subject": subject},
        }
        layout[f"{suite}/subject/{subject}"] = _entry(name, [name])
    for cat in cats:
        members = [f"{suite}_{s}" for s in chosen if category[s] == cat]
        files[f"_{suite}_{cat}"] = _group(
            f"{suite}_{cat}", [f"{suite}_{cat}_tasks"], True, group_alias=cat
        )
        layout[f"{suite}/{_wording(cat) if synthetic else cat}"] = _entry(f"{suite}_{cat}", members)
    files[f"_{suite}"] = _group(suite, [f"{suite}_{cat}" for cat in cats], True)
    layout[suite] = _entry(suite, [f"{suite}_{s}" for s in chosen])
    return files, layout


def _wording(category: str) -> str:
    """Synthetic category -> summary key: ``world_facts`` -> ``neutral``, ``world_facts_poetic``
    -> ``poetic`` (bapo_exp.synthetic.evalsets.CATEGORY)."""
    rest = category.removeprefix("world_facts").lstrip("_")
    return rest or "neutral"


def _scienceqa_configs(data_root: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    files = {
        "scienceqa": {
            "include": str(TEMPLATES_DIR / "scienceqa_template.yaml"),
            "task": "scienceqa",
            "num_fewshot": 0,
            "dataset_kwargs": {"problems_file": str(task_utils.scienceqa_file(data_root))},
        }
    }
    return files, {"scienceqa": _entry("scienceqa", ["scienceqa"])}


def _hhh_configs(data_root: Path, suite: str = "hhh") -> tuple[dict[str, dict], dict[str, dict]]:
    """HHH-format tasks per subset and their mean. ``synthetic_alignment``: the world's files,
    whose prompt is the plain ``"{input}\\n"``, answered with no delimiter (as in pretraining)."""
    base = data_root / "hhh_alignment" / "bigbench"
    subsets = task_utils.hhh_subsets(data_root)
    extra = {"target_delimiter": ""} if suite != "hhh" else {}
    files: dict[str, dict] = {}
    layout: dict[str, dict] = {}
    for subset in subsets:
        name = f"{suite}_{subset}"
        files[name] = {
            "include": str(TEMPLATES_DIR / "hhh_template.yaml"),
            "task": name,
            "task_alias": subset,
            "num_fewshot": 0,
            **extra,
            "dataset_kwargs": {"task_file": str(base / subset / "task.json")},
        }
        layout[f"{suite}/{subset}"] = _entry(name, [name])
    # mean of the subsets, as BIG-bench reports
    files[f"_{suite}"] = _group(suite, [f"{suite}_{s}" for s in subsets], False)
    layout[suite] = _entry(suite, [f"{suite}_{s}" for s in subsets], weighting="mean")
    return files, layout


def _suite_configs(
    suite: str, root: Path, num_fewshot: int, subjects: Sequence[str] | None, mc_format: str
) -> tuple[dict[str, dict], dict[str, dict]]:
    fmt = mc_format_of(suite, mc_format)
    if suite == "mmlu":
        return _mmlu_configs(root, num_fewshot, subjects, fmt)
    if suite == "synthetic_knowledge":
        _require_world(root, suite)
        return _mmlu_configs(root, num_fewshot, None, fmt, suite)
    if suite == "scienceqa":
        return _scienceqa_configs(root)
    if suite == "synthetic_alignment":
        _require_world(root, suite)
        return _hhh_configs(root, suite)
    return _hhh_configs(root)


def _require_world(root: Path, suite: str) -> None:
    if not (root / "world.json").exists():
        raise FileNotFoundError(
            f"eval suite {suite} needs a synthetic world as data root, but {root} has no "
            "world.json: run with data=synthetic paths=synthetic (data_root = the world folder)"
        )


def build_tasks(
    data_root: str | Path,
    suites: Sequence[str],
    task_dir: str | Path,
    *,
    num_fewshot: int = 0,
    mmlu_subjects: Sequence[str] | None = None,
    mc_format: str = "auto",
) -> dict[str, dict[str, dict]]:
    """Write lm-eval task/group YAMLs for ``suites`` into ``task_dir``.

    Args:
        data_root: folder with ``mmlu/``, ``scienceqa/``, ``hhh_alignment/`` (see tasks/utils.py).
        suites: subset of :data:`SUITES`.
        task_dir: include directory for ``TaskManager(include_path=...)``.
        num_fewshot: MMLU shots from the dev split (0 or 5); other suites are zero-shot.
        mmlu_subjects: restrict MMLU to these subjects (default: every subject found).
        mc_format: MMLU-format scoring: ``letter`` (" A".." D" after the listed options, the
            papers' protocol), ``options`` (each option's text as the continuation, like
            lm-eval's ``mmlu_continuation``) or ``auto`` (letter for ``mmlu``, options for
            ``synthetic_knowledge``).

    Returns:
        ``{suite: layout}``; a layout maps each flat-summary prefix (``mmlu/humanities``) to
        ``{"name": lm-eval task/group, "tasks": leaf tasks, "weighting": "size"|"mean"}``.
    """
    root = Path(data_root).expanduser().resolve()
    unknown = [s for s in suites if s not in SUITES]
    if unknown:
        raise ValueError(f"unknown eval suites {unknown}; available: {list(SUITES)}")
    layouts: dict[str, dict[str, dict]] = {}
    for suite in suites:
        files, layout = _suite_configs(suite, root, num_fewshot, mmlu_subjects, mc_format)
        out = Path(task_dir) / suite
        out.mkdir(parents=True, exist_ok=True)
        for stem, cfg in files.items():
            (out / f"{stem}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        layouts[suite] = layout
    return layouts


def make_lm(
    model: Any, tokenizer: Any = None, batch_size: int = 8, backend: str = "bapo",
    token_budget: int = 2048,
):  # fmt: skip
    """An ``lm_eval`` LM for ``model``: returned as is if it already is one, else ``backend``'s
    (``bapo``: ours, ``hf``: lm-eval's ``HFLM``; see ``evaluation.backend``)."""
    from lm_eval.api.model import LM

    if isinstance(model, LM):
        return model
    from bapo_exp.evaluation.backend import make_backend

    if tokenizer is None:
        raise ValueError("a tokenizer is required to evaluate a Hugging Face model")
    return make_backend(backend, model, tokenizer, batch_size=batch_size,
                        token_budget=token_budget)  # fmt: skip


class _DropCustomKwargsHint(logging.Filter):
    """lm-eval warns once per task that uses ``custom_dataset`` (57 times for MMLU)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Custom kwargs can be passed" not in record.getMessage()


def _quiet_lm_eval() -> None:
    task_log = logging.getLogger("lm_eval.api.task")
    if not any(isinstance(f, _DropCustomKwargsHint) for f in task_log.filters):
        task_log.addFilter(_DropCustomKwargsHint())


def _chance(samples: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per task: ``n`` scored items and the chance rate ``mean(1 / #choices)``."""
    out = {}
    for task, rows in samples.items():
        k = [len(r["arguments"]) for r in rows]
        out[task] = {"n": len(k), "chance": sum(1.0 / x for x in k) / len(k) if k else float("nan")}
    return out


def _run_suite(lm: Any, manager: Any, suite: str, layout: dict, settings: dict) -> dict:
    from lm_eval.evaluator import simple_evaluate

    top = layout[suite]["name"]
    start = time.perf_counter()
    out = simple_evaluate(
        model=lm,
        tasks=[top],
        task_manager=manager,
        limit=settings["limit"],
        log_samples=True,  # per-item #choices for the chance rate; not kept
        random_seed=None,  # scoring is deterministic: leave the caller's RNG state alone
        numpy_random_seed=None,
        torch_random_seed=None,
    )
    record = {k: out[k] for k in KEEP_BLOCKS if k in out}
    record["items"] = _chance(out.get("samples", {}))
    record["layout"] = layout
    record["settings"] = settings
    record["wall_time_s"] = time.perf_counter() - start
    return record


def evaluate(
    model: Any,
    tokenizer: Any = None,
    *,
    suites: Sequence[str],
    data_root: str | Path,
    limit: int | None,
    batch_size: int,
    num_fewshot: int = 0,
    mmlu_subjects: Sequence[str] | None = None,
    out_dir: Path | None = None,
    mc_format: str = "auto",
    backend: str = "bapo",
    token_budget: int = 2048,
) -> dict[str, dict]:
    """Run each suite through ``lm_eval.simple_evaluate`` on the in-memory model.

    Args:
        model: ``transformers`` causal LM (plain or peft-wrapped) or an ``lm_eval`` ``LM``.
        tokenizer: its tokenizer (unused for an ``LM``).
        suites: subset of :data:`SUITES`, run in that order.
        data_root: local data folder (the shared data or a synthetic world's root).
        limit: items per task (per MMLU subject, per HHH subset); ``None`` = all.
        batch_size: forward batch size for ``HFLM`` (and the ``bapo`` backend's generation).
        num_fewshot: MMLU shots (0 default, 5 from the dev split).
        mmlu_subjects: MMLU subjects to run (default: all found under ``data_root``).
        out_dir: if given, ``<out_dir>/<suite>.json`` receives each suite's record.
        mc_format: ``auto`` | ``letter`` | ``options`` (see :func:`build_tasks`).
        backend: ``bapo`` (ours) or ``hf`` (lm-eval's ``HFLM``), see :func:`make_lm`.
        token_budget: distinct tokens per forward of the ``bapo`` scorer.

    Returns:
        ``{suite: record}``: lm-eval's ``results``, ``groups``, ``group_subtasks``,
        ``n-samples``, ``n-shot``, ``versions``, ``higher_is_better``, ``configs`` blocks,
        plus ``items`` (per task ``n`` and chance rate), ``layout`` (see :func:`build_tasks`),
        ``settings`` (data root, limit, shots, subjects) and ``wall_time_s``.
        :func:`bapo_exp.evaluation.summary.flatten` turns it into flat keys.
    """
    from lm_eval.tasks import TaskManager

    settings = {
        "data_root": str(Path(data_root).expanduser().resolve()),
        "limit": limit,
        "num_fewshot": num_fewshot,
        "mmlu_subjects": list(mmlu_subjects) if mmlu_subjects else None,
        "mc_format": {s: mc_format_of(s, mc_format) for s in suites},
    }
    was_training = getattr(model, "training", False) is True  # HFLM switches to eval mode
    lm = make_lm(model, tokenizer, batch_size, backend, token_budget)
    settings["backend"] = type(lm).__name__  # BapoLM (ours), CheckedHFLM (lm-eval's) or given
    _quiet_lm_eval()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="bapo_eval_tasks_") as task_dir:
            layouts = build_tasks(
                data_root, suites, task_dir, num_fewshot=num_fewshot,
                mmlu_subjects=mmlu_subjects, mc_format=mc_format,
            )  # fmt: skip
            manager = TaskManager(include_path=task_dir, include_defaults=False)
            for suite in suites:
                results[suite] = _run_suite(lm, manager, suite, layouts[suite], settings)
                log.info("eval %s done in %.1f s", suite, results[suite]["wall_time_s"])
                if out_dir is not None:
                    _write_json(Path(out_dir) / f"{suite}.json", results[suite])
    finally:
        if was_training:
            model.train()
    return results


def _write_json(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))  # configs hold function objects
    tmp.replace(path)
