"""One evaluation of a model, its parts built once (``Evaluation``): the eval stage makes one per
checkpoint, the train stage one per run for the points of ``eval.in_training``
(``stages.eval_points``), so new metrics appear on both paths.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bapo_exp.config import Config
from bapo_exp.stages.personal import personalisation, prepare_personalisation


def load_evaluated(cfg: Config, ckpt: str | None):
    """The model to score: base model, plus the trained adapter or full weights from ``ckpt``."""
    from bapo_exp.modeling.load import load_model

    if ckpt and not (Path(ckpt) / "adapter_config.json").exists():
        full = dataclasses.replace(cfg.model, source="hf", pretrained=ckpt)
        return load_model(full, cfg.paths.cache_dir)
    model, tokenizer = load_model(cfg.model, cfg.paths.cache_dir)
    if ckpt:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, ckpt)
    model.eval()
    return model, tokenizer


class Evaluation:
    """The run's evaluation of a model, its parts built once: the suites' lm-eval tasks and
    requests (``harness.SuiteSession``) and the personalisation parts. Calling it scores a model
    (the one given, or the same model after training steps) into a folder.

    Args:
        ckpt: what is evaluated (None: the base model; decides the main reference and whether
            the model's generations are y_b).
        model, tokenizer: the evaluated model (a fresh LoRA policy is its own main reference).
        shared: take the suites' session from the process (``harness.shared_session``): a warm
            worker's next cell with the same eval settings reuses its tasks and requests.
    """

    def __init__(self, cfg: Config, ckpt: str | None, model, tokenizer, shared: bool = False):
        from bapo_exp.evaluation.harness import SuiteSession, shared_session

        self.cfg = cfg
        self.shared = shared
        e = cfg.eval
        self.suites = None
        if e.suites:
            self.suites = (shared_session if shared else SuiteSession)(
                e.suites, cfg.paths.data_root, limit=e.limit, batch_size=e.batch_size,
                num_fewshot=e.num_fewshot, mmlu_subjects=e.mmlu_subjects, mc_format=e.mc_format,
                mmlu_categories=e.mmlu_categories, data=cfg.data, cache_dir=cfg.paths.cache_dir,
                backend=e.backend, token_budget=e.token_budget,
            )  # fmt: skip
        self.personal = None
        if e.personalisation:
            self.personal = prepare_personalisation(cfg, ckpt, model, tokenizer)

    def __call__(self, model, tokenizer, out: Path, final: bool = True) -> dict:
        """Suite and personalisation metrics of ``model``; their files go into ``out``
        (``final``: the run's last point, see ``stages.personal.personalisation``)."""
        from bapo_exp.evaluation.summary import flatten

        summary: dict = {}
        out.mkdir(parents=True, exist_ok=True)
        if self.suites is not None:
            summary.update(flatten(self.suites.run(model, tokenizer, out_dir=out)))
        if self.personal is not None:
            summary.update(personalisation(self.cfg, self.personal, out, model, tokenizer, final))
        return summary

    def close(self) -> None:
        if self.suites is not None:
            (self.suites.release if self.shared else self.suites.close)()

    def __enter__(self) -> Evaluation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_checkpoint(cfg: Config, ckpt: str | None, out: Path, final: bool = True) -> dict:
    """Suites and personalisation of one model (``ckpt``; None: the base), files into ``out``
    (``final``: the run's last point, not one of ``eval.at_steps``)."""
    model, tokenizer = load_evaluated(cfg, ckpt)
    with Evaluation(cfg, ckpt, model, tokenizer) as evaluation:
        return {"ckpt_path": ckpt or "base", **evaluation(model, tokenizer, out, final)}
