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
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from bapo_exp.atomic import write_json_atomic
from bapo_exp.evaluation.suites import SUITES, SuiteContext, mc_format_of

log = logging.getLogger(__name__)

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


def build_tasks(
    data_root: str | Path,
    suites: Sequence[str],
    task_dir: str | Path,
    *,
    num_fewshot: int = 0,
    mmlu_subjects: Sequence[str] | None = None,
    mc_format: str = "auto",
    mmlu_categories: str = "lm_eval",
    data: Any = None,
    cache_dir: str | None = None,
) -> dict[str, dict[str, dict]]:
    """Write lm-eval task/group YAMLs for ``suites`` into ``task_dir``.

    Args:
        data_root: folder with ``mmlu/``, ``scienceqa/``, ``hhh_alignment/`` (see tasks/utils.py).
        suites: names in ``evaluation.suites.SUITES``.
        task_dir: include directory for ``TaskManager(include_path=...)``.
        num_fewshot: MMLU shots from the dev split (0 or 5); other suites are zero-shot.
        mmlu_subjects: restrict MMLU to these subjects (default: every subject found).
        mc_format: MMLU-format scoring: ``letter`` (" A".." D" after the listed options, the
            papers' protocol), ``options`` (each option's text as the continuation, like
            lm-eval's ``mmlu_continuation``) or ``auto`` (each suite's own default).
        mmlu_categories: ``lm_eval`` (lm-eval's subject groups, default) or ``hendrycks``.
        data, cache_dir: the run's data config and cache (for plug-in suites).

    Returns:
        ``{suite: layout}`` (see ``evaluation.suites``).
    """
    ctx = SuiteContext(Path(data_root).expanduser().resolve(), num_fewshot, mmlu_subjects,
                       str(mc_format), str(mmlu_categories), data, cache_dir)  # fmt: skip
    layouts: dict[str, dict[str, dict]] = {}
    for suite in suites:
        files, layout = SUITES.require(suite).build(ctx)
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


BARE_BARS = ("lm_eval.api.task", "lm_eval.api.model")  # request building, "Tokenizing inputs"


@contextmanager
def no_lm_eval_bars() -> Iterator[None]:
    """lm-eval draws an unlabelled progress bar per task while building its requests (24 per
    demo evaluation) and one while tokenizing, with no switch: their modules' ``tqdm`` is
    replaced by a disabled one while a suite runs. The scoring bar (our backend's) stays."""
    import importlib

    def hidden(bar):
        return lambda *args, **kwargs: bar(*args, **{**kwargs, "disable": True})

    modules = [importlib.import_module(name) for name in BARE_BARS]
    saved = [m.tqdm for m in modules]
    for m, bar in zip(modules, saved, strict=True):
        m.tqdm = hidden(bar)
    try:
        yield
    finally:
        for m, bar in zip(modules, saved, strict=True):
            m.tqdm = bar


def _chance(samples: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Per task: ``n`` scored items and the chance rate ``mean(1 / #choices)``."""
    out = {}
    for task, rows in samples.items():
        k = [len(r["arguments"]) for r in rows]
        out[task] = {"n": len(k), "chance": sum(1.0 / x for x in k) / len(k) if k else float("nan")}
    return out


def _prepare(loaded: dict) -> None:
    """What ``simple_evaluate`` does to the loaded tasks before scoring: a task without a
    ``num_fewshot`` gets 0, and every task its few-shot sampler seed (lm-eval's default)."""
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    for task in loaded["tasks"].values():
        if task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=DEFAULT_OTHER_SEED)


def _reuse_requests(task: Any) -> None:
    """Build ``task``'s requests on its first evaluation only; later evaluations score the same
    ``Instance`` objects again with their responses cleared (the requests depend on the task and
    its documents, not on the model)."""
    build = task.build_all_requests
    built: list[bool] = []

    def build_once(**kwargs: Any) -> None:
        if not built:
            build(**kwargs)
            built.append(True)
            return
        for inst in task.instances:
            inst.resps, inst.filtered_resps = [], {}

    task.build_all_requests = build_once


def _run_suite(
    lm: Any, loaded: dict, layout: dict, settings: dict, items: dict | None = None
) -> dict:
    """One suite through lm-eval's ``evaluate`` (what ``simple_evaluate`` runs, without its
    environment report: pip and other subprocesses, seconds per call, none of it kept).

    ``items``: the suite's per-task item counts and chance rates when already known (they do not
    depend on the model); else lm-eval logs its samples to count them (the samples are not kept).
    """
    from lm_eval.evaluator import evaluate as lm_eval_evaluate

    start = time.perf_counter()
    with no_lm_eval_bars():
        out = lm_eval_evaluate(lm=lm, task_dict=loaded, limit=settings["limit"],
                               log_samples=items is None)  # fmt: skip
    record = {k: out[k] for k in KEEP_BLOCKS if k in out}
    record["items"] = _chance(out.get("samples", {})) if items is None else items
    record["layout"] = layout
    record["settings"] = settings
    record["wall_time_s"] = time.perf_counter() - start
    return record


class SuiteSession:
    """The suites' lm-eval tasks and requests, built once; :meth:`run` scores a model on them.

    Evaluating several models (or one model at several training steps) builds the task files,
    loads the documents and renders the requests once; only the scoring is repeated. A run of a
    session returns what :func:`evaluate` returns for the same model.

        with SuiteSession(["hhh"], data_root, limit=None) as session:
            for model in models:
                records = session.run(model, tokenizer, out_dir=...)

    Args: as :func:`evaluate` (``suites`` .. ``cache_dir``: the tasks; ``batch_size``,
    ``backend``, ``token_budget``: the lm-eval model made for each evaluated model).
    """

    def __init__(
        self, suites: Sequence[str], data_root: str | Path, *, limit: int | None,
        batch_size: int = 8, num_fewshot: int = 0, mmlu_subjects: Sequence[str] | None = None,
        mc_format: str = "auto", mmlu_categories: str = "lm_eval", data: Any = None,
        cache_dir: str | None = None, backend: str = "bapo", token_budget: int = 2048,
    ) -> None:  # fmt: skip
        from lm_eval.tasks import TaskManager

        self.suites = list(suites)
        self.lm_args = {"batch_size": batch_size, "backend": backend, "token_budget": token_budget}
        self.settings = {
            "data_root": str(Path(data_root).expanduser().resolve()),
            "limit": limit,
            "num_fewshot": num_fewshot,
            "mmlu_subjects": list(mmlu_subjects) if mmlu_subjects else None,
            "mc_format": {s: mc_format_of(s, mc_format) for s in self.suites},
            "mmlu_categories": str(mmlu_categories),
        }
        _quiet_lm_eval()
        self._dir = tempfile.TemporaryDirectory(prefix="bapo_eval_tasks_")
        self.layouts = build_tasks(
            data_root, self.suites, self._dir.name, num_fewshot=num_fewshot,
            mmlu_subjects=mmlu_subjects, mc_format=mc_format, mmlu_categories=mmlu_categories,
            data=data, cache_dir=cache_dir,
        )  # fmt: skip
        manager = TaskManager(include_path=self._dir.name, include_defaults=False)
        self.loaded: dict[str, dict] = {}
        for suite in self.suites:
            self.loaded[suite] = manager.load([self.layouts[suite][suite]["name"]])
            _prepare(self.loaded[suite])
            for task in self.loaded[suite]["tasks"].values():
                _reuse_requests(task)
        self._items: dict[str, dict] = {}  # suite -> per-task n and chance (model-independent)
        self._lm: tuple[Any, Any] | None = None  # (model, its lm-eval LM), reused for that model

    def lm(self, model: Any, tokenizer: Any = None) -> Any:
        """The lm-eval LM of ``model`` (the same object for the same model: its encodings are
        kept, see ``evaluation.backend``)."""
        if self._lm is None or self._lm[0] is not model:
            self._lm = (model, make_lm(model, tokenizer, **self.lm_args))
        return self._lm[1]

    def run(self, model: Any, tokenizer: Any = None, out_dir: Path | None = None) -> dict:
        """``{suite: record}`` of ``model`` (see :func:`evaluate`); the model's train/eval mode
        is restored."""
        was_training = getattr(model, "training", False) is True  # HFLM switches to eval mode
        lm = self.lm(model, tokenizer)
        settings = {**self.settings, "backend": type(lm).__name__}  # BapoLM, CheckedHFLM, given
        results: dict[str, dict] = {}
        try:
            if was_training:
                model.eval()
            for suite in self.suites:
                results[suite] = _run_suite(lm, self.loaded[suite], self.layouts[suite],
                                            settings, self._items.get(suite))  # fmt: skip
                self._items[suite] = results[suite]["items"]
                log.info("eval %s done in %.1f s", suite, results[suite]["wall_time_s"])
                if out_dir is not None:
                    write_json_atomic(Path(out_dir) / f"{suite}.json", results[suite])
        finally:
            if was_training:
                model.train()
        return results

    def release(self) -> None:
        """Drop the lm-eval LM (and with it the last model scored); the tasks stay."""
        self._lm = None

    def close(self) -> None:
        self._dir.cleanup()
        self._lm = None

    def __enter__(self) -> SuiteSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SHARED: OrderedDict[str, SuiteSession] = OrderedDict()
MAX_SHARED = 4  # sessions a process keeps (a grid's cells share one)


def shared_session(suites: Sequence[str], data_root: str | Path, **kwargs: Any) -> SuiteSession:
    """A :class:`SuiteSession` kept for the life of the process, one per set of arguments: the
    later cells of a grid run by a warm worker (``hydra/launcher=local_joblib`` reuses its
    processes) build no task and render no request. Call ``release()`` when done scoring."""
    from bapo_exp.evaluation.backend import kept

    key = json.dumps([list(suites), str(data_root), kwargs], sort_keys=True, default=str)
    return kept(_SHARED, key, lambda: SuiteSession(suites, data_root, **kwargs), MAX_SHARED,
                drop=SuiteSession.close)  # fmt: skip


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
    mmlu_categories: str = "lm_eval",
    data: Any = None,
    cache_dir: str | None = None,
    backend: str = "bapo",
    token_budget: int = 2048,
) -> dict[str, dict]:
    """Run each suite through lm-eval on the in-memory model (a one-model :class:`SuiteSession`).

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
        mmlu_categories, data, cache_dir: see :func:`build_tasks`.
        backend: ``bapo`` (ours) or ``hf`` (lm-eval's ``HFLM``), see :func:`make_lm`.
        token_budget: distinct tokens per forward of the ``bapo`` scorer.

    Returns:
        ``{suite: record}``: lm-eval's ``results``, ``groups``, ``group_subtasks``,
        ``n-samples``, ``n-shot``, ``versions``, ``higher_is_better``, ``configs`` blocks,
        plus ``items`` (per task ``n`` and chance rate), ``layout`` (see :func:`build_tasks`),
        ``settings`` (data root, limit, shots, subjects) and ``wall_time_s``.
        :func:`bapo_exp.evaluation.summary.flatten` turns it into flat keys.
    """
    with SuiteSession(
        suites, data_root, limit=limit, batch_size=batch_size, num_fewshot=num_fewshot,
        mmlu_subjects=mmlu_subjects, mc_format=mc_format, mmlu_categories=mmlu_categories,
        data=data, cache_dir=cache_dir, backend=backend, token_budget=token_budget,
    ) as session:  # fmt: skip
        return session.run(model, tokenizer, out_dir)
