"""Evaluation suites: the ``SUITES`` registry, and the lm-eval task files each suite writes.

    spec = SUITES.require("mmlu")
    spec.check(ctx)                      # validate every file the suite will read (preflight)
    files, layout = spec.build(ctx)      # lm-eval task/group YAMLs + the flat-summary layout

Built in: ``mmlu`` (57 subjects in MMLU's CSV format), ``scienceqa`` (text-only test problems)
and ``hhh`` (BIG-bench HHH). Plug-ins register more (the synthetic world's
``synthetic_knowledge`` and ``synthetic_alignment`` reuse :func:`mmlu_format` and
:func:`hhh_format` on the world's own files). A layout maps each flat-summary prefix
(``mmlu/humanities``) to ``{"name": lm-eval task/group or None, "tasks": leaf tasks,
"weighting": "size"|"mean"}`` (``name`` None: the summary averages the leaf tasks itself).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bapo_exp.evaluation.summary import GROUP_METRICS
from bapo_exp.evaluation.tasks import utils as task_utils
from bapo_exp.registry import Registry

TEMPLATES_DIR = Path(__file__).resolve().parent / "tasks"
# Option scoring of real MMLU = lm-eval's mmlu_continuation: "Question: ...\nAnswer:" + " option".
MMLU_OPTIONS = {
    "doc_to_text": "Question: {{question.strip()}}\nAnswer:",
    "doc_to_choice": "choices",
}
# A plain prompt: the framework's template "{prompt}\n", the answer right after it (no delimiter).
PLAIN_PROMPT = {"doc_to_text": "{{question.strip()}}\n", "target_delimiter": ""}
Files = dict[str, dict[str, Any]]
Layout = dict[str, dict[str, Any]]


@dataclass(frozen=True)
class SuiteContext:
    """What a suite needs to find and format its files.

    Attributes:
        data_root: ``paths.data_root`` (the real datasets).
        num_fewshot: MMLU-format shots from the dev split.
        mmlu_subjects: restrict MMLU to these subjects (None: all found).
        mc_format: ``letter`` | ``options`` | ``auto`` (each suite's own default).
        mmlu_categories: ``lm_eval`` (lm-eval's subject groups) | ``hendrycks`` (the file's).
        data: the run's ``DataConfig`` (a plug-in suite may read its files from it).
        cache_dir: ``paths.cache_dir``.
    """

    data_root: Path
    num_fewshot: int = 0
    mmlu_subjects: Sequence[str] | None = None
    mc_format: str = "auto"
    mmlu_categories: str = "lm_eval"
    data: Any = None
    cache_dir: str | None = None


@dataclass(frozen=True)
class SuiteSpec:
    """A suite: ``build(ctx) -> (files, layout)``, ``check(ctx)`` (raise on a bad file), and
    the multiple-choice format ``mc_format=auto`` means for it."""

    build: Callable[[SuiteContext], tuple[Files, Layout]]
    check: Callable[[SuiteContext], None]
    auto_format: str = "letter"


SUITES: Registry[SuiteSpec] = Registry("eval suite", config_key="eval.suites")


def mc_format_of(suite: str, mc_format: str) -> str:
    """The multiple-choice format ``suite`` is scored in (``letter`` or ``options``)."""
    if str(mc_format) not in ("auto", "letter", "options"):
        raise ValueError(f"eval.mc_format={mc_format!r}; choose one of auto, letter, options")
    return SUITES.require(suite).auto_format if str(mc_format) == "auto" else str(mc_format)


def group(name: str, tasks: list[str], weight_by_size: bool, **extra: Any) -> dict[str, Any]:
    """An lm-eval group file: ``tasks`` (task names or tags) aggregated into ``name``."""
    aggregate = [{"metric": m, "weight_by_size": weight_by_size} for m in GROUP_METRICS]
    return {"group": name, **extra, "task": tasks, "aggregate_metric_list": aggregate,
            "metadata": {"version": 1.0}}  # fmt: skip


def entry(name: str | None, tasks: list[str], weighting: str = "size") -> dict[str, Any]:
    """Where a flat summary prefix finds its numbers: lm-eval name, leaf tasks, weighting."""
    return {"name": name, "tasks": tasks, "weighting": weighting}


def leaf_task(suite: str, item: str, template: str, **fields: Any) -> dict[str, Any]:
    """An lm-eval task ``<suite>_<item>`` (alias ``item``) including a shipped template."""
    return {"include": str(TEMPLATES_DIR / template), "task": f"{suite}_{item}",
            "task_alias": item, **fields}  # fmt: skip


# --------------------------------------------------------------------------------- MMLU format
def _mmlu_prompt(subject: str, fmt: str, plain: bool) -> dict[str, Any]:
    """Template overrides of one MMLU-format subject task (description, prompt, choices)."""
    topic = subject.replace("_", " ")
    if fmt == "letter":
        head = f"The following are multiple choice questions (with answers) about {topic}.\n\n"
        return {"description": head}
    if plain:
        return {"description": "", **PLAIN_PROMPT, "doc_to_choice": "choices"}
    return {"description": f"The following are questions (with answers) about {topic}.\n\n",
            **MMLU_OPTIONS}  # fmt: skip


def chosen_subjects(root: Path, wanted: Sequence[str] | None) -> list[str]:
    """``eval.mmlu_subjects`` among the MMLU-format subjects under ``root`` (default: all)."""
    available = task_utils.mmlu_subjects(root)
    chosen = list(wanted) if wanted else available
    unknown = sorted(set(chosen) - set(available))
    if unknown:
        raise ValueError(f"unknown MMLU subjects {unknown} (eval.mmlu_subjects); available "
                         f"under {root}: {available}")  # fmt: skip
    return chosen


def mmlu_format(
    root: Path, suite: str, ctx: SuiteContext, *, categories: dict[str, str],
    plain: bool = False, summary_key: Callable[[str], str] = str,
) -> tuple[Files, Layout]:  # fmt: skip
    """MMLU-format tasks under ``root``: one per subject, one group per category, one for all.

    Args:
        categories: subject -> category slug (the groups).
        plain: the plain prompt (``PLAIN_PROMPT``) in ``options`` format.
        summary_key: category -> its summary prefix under ``<suite>/``.
    """
    fmt = mc_format_of(suite, ctx.mc_format)
    chosen = list(categories)
    cats = sorted(set(categories.values()))
    if clash := sorted(set(chosen) & set(cats)):
        raise ValueError(f"MMLU subject names equal category names: {clash}; rename one of them")
    files: Files = {}
    layout: Layout = {}
    for subject in chosen:
        name = f"{suite}_{subject}"
        files[name] = leaf_task(
            suite, subject, "mmlu_template.yaml", tag=f"{suite}_{categories[subject]}_tasks",
            num_fewshot=ctx.num_fewshot, **_mmlu_prompt(subject, fmt, plain),
            dataset_kwargs={"mmlu_dir": str(root / "mmlu" / "data"), "subject": subject},
        )  # fmt: skip
        layout[f"{suite}/subject/{subject}"] = entry(name, [name])
    for cat in cats:
        members = [f"{suite}_{s}" for s in chosen if categories[s] == cat]
        files[f"_{suite}_{cat}"] = group(f"{suite}_{cat}", [f"{suite}_{cat}_tasks"], True,
                                         group_alias=cat)  # fmt: skip
        layout[f"{suite}/{summary_key(cat)}"] = entry(f"{suite}_{cat}", members)
    files[f"_{suite}"] = group(suite, [f"{suite}_{cat}" for cat in cats], True)
    layout[suite] = entry(suite, [f"{suite}_{s}" for s in chosen])
    return files, layout


def check_mmlu_format(root: Path, subjects: Sequence[str] | None) -> None:
    """Read every test and dev CSV of ``subjects`` (each error names file, line, column)."""
    base = root / "mmlu" / "data"
    for subject in chosen_subjects(root, subjects):
        for split in ("test", "dev"):
            path = base / split / f"{subject}_{split}.csv"
            if split == "test" or path.exists():
                task_utils.read_mmlu_csv(path)


def _mmlu(ctx: SuiteContext) -> tuple[Files, Layout]:
    subjects = chosen_subjects(ctx.data_root, ctx.mmlu_subjects)
    if ctx.mmlu_categories == "lm_eval":
        categories = task_utils.lm_eval_mmlu_categories(subjects)
    else:
        categories = task_utils.mmlu_categories(ctx.data_root, subjects)
    return mmlu_format(ctx.data_root, "mmlu", ctx, categories=categories)


# --------------------------------------------------------------------------------- HHH format
def hhh_format(root: Path, suite: str, *, plain: bool = False) -> tuple[Files, Layout]:
    """HHH-format tasks per subset under ``root``. ``<suite>/acc`` pools every item (as lm-eval's
    ``bigbench_hhh_alignment``); ``<suite>/subset_mean/acc`` is the mean of the subsets (as
    BIG-bench reports). ``plain``: answers follow ``"{input}\\n"`` with no delimiter."""
    base = root / "hhh_alignment" / "bigbench"
    subsets = task_utils.hhh_subsets(root)
    extra = {"target_delimiter": ""} if plain else {}
    files: Files = {}
    layout: Layout = {}
    for subset in subsets:
        name = f"{suite}_{subset}"
        files[name] = leaf_task(
            suite, subset, "hhh_template.yaml", num_fewshot=0, **extra,
            dataset_kwargs={"task_file": str(base / subset / "task.json")},
        )  # fmt: skip
        layout[f"{suite}/{subset}"] = entry(name, [name])
    leaves = [f"{suite}_{s}" for s in subsets]
    files[f"_{suite}"] = group(suite, leaves, True)
    layout[suite] = entry(suite, leaves)
    layout[f"{suite}/subset_mean"] = entry(None, leaves, weighting="mean")
    return files, layout


def check_hhh_format(root: Path) -> None:
    for subset in task_utils.hhh_subsets(root):
        task_utils.read_hhh(root / "hhh_alignment" / "bigbench" / subset / "task.json")


# --------------------------------------------------------------------------------- ScienceQA
def _scienceqa(ctx: SuiteContext) -> tuple[Files, Layout]:
    files = {"scienceqa": {
        "include": str(TEMPLATES_DIR / "scienceqa_template.yaml"), "task": "scienceqa",
        "num_fewshot": 0,
        "dataset_kwargs": {"problems_file": str(task_utils.scienceqa_file(ctx.data_root))},
    }}  # fmt: skip
    return files, {"scienceqa": entry("scienceqa", ["scienceqa"])}


SUITES.register("mmlu", SuiteSpec(_mmlu, lambda c: check_mmlu_format(c.data_root, c.mmlu_subjects)))
SUITES.register(
    "scienceqa",
    SuiteSpec(
        _scienceqa, lambda c: task_utils.read_scienceqa(task_utils.scienceqa_file(c.data_root))
    ),
)
SUITES.register("hhh", SuiteSpec(lambda c: hhh_format(c.data_root, "hhh"),
                                 lambda c: check_hhh_format(c.data_root)))  # fmt: skip
