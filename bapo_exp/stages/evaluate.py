"""Eval stage: knowledge and alignment through lm-eval, and personalisation (METHODS §6, §8).

bapo-exp eval runs/adhoc/<stamp> eval.limit=50              # re-evaluate a finished run
python -m bapo_exp method=none stages=[eval]                # the untrained baseline

Scores the trained model of this run (``train/summary.json: ckpt_path``), a given checkpoint
(``eval.ckpt``), or the base model when nothing was trained. The reference is always the
initial model (PITFALLS #5).

Personalisation (``eval.personalisation``): likelihood metrics ``personal/*`` on the held-out
pairs (trained models), and for every model, the base included (the frontier's baseline),
generated personalisation ``gen/*`` with ``eval/generations.jsonl``
(``evaluation.personalisation``). ``personal/likelihood_only`` is true when the likelihood
margins moved (``pref_acc > 0.5 + z se``) but the generations did not.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.losses import get_loss
from bapo_exp.losses.metrics import pair_metrics
from bapo_exp.losses.types import PairLogps
from bapo_exp.modeling.reference import Reference
from bapo_exp.references import RefTable, score_examples
from bapo_exp.stages.common import base_responses_of, load_data, named_model
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker
from bapo_exp.training.forward import blocks, policy_batch, policy_logps

log = logging.getLogger(__name__)


class MissingCheckpointError(FileNotFoundError):
    """The run's trained model is not where its train summary says."""


def checkpoint_of(cfg: Config, run: RunDir) -> str | None:
    """The checkpoint to score: ``eval.ckpt``, else the run's own (None: the base model).

    The train summary's ``ckpt_path`` is relative to the run directory (absolute when the
    checkpoints live under ``paths.ckpt_root``)."""
    ckpt = cfg.eval.ckpt
    if ckpt is None and (trained := (run.summary("train") or {}).get("ckpt_path")):
        ckpt = str(run.root / trained) if not Path(trained).is_absolute() else trained
    if ckpt and not Path(ckpt).is_dir():
        source = "eval.ckpt" if cfg.eval.ckpt else f"{run.root / 'train' / 'summary.json'}"
        raise MissingCheckpointError(
            f"the trained model to evaluate is missing: {ckpt} (from {source}). Retrain it with "
            f"`python -m bapo_exp stages=[train,eval] force=true hydra.run.dir={run.root}`, or "
            "pass eval.ckpt=<checkpoint folder>"
        )
    return ckpt


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


@torch.no_grad()
def likelihood_personalisation(cfg: Config, model, tokenizer, data, base, table) -> dict:
    """pref_acc, reward margin and drifts on held-out pairs, against the main reference."""
    from bapo_exp.evaluation.personalisation import put
    from bapo_exp.modeling.tokenize import Tokenization
    from bapo_exp.stages.train import tokenize_policy

    pdata = tokenize_policy(Tokenization.from_config(tokenizer, cfg.model), data.heldout, base)
    values: dict[str, list[float]] = {}
    bs = cfg.eval.batch_size
    for start in range(0, len(data.heldout), bs):
        idx = list(range(start, min(start + bs, len(data.heldout))))
        lp, nt = policy_logps(model, policy_batch(pdata, idx, with_base=True), cfg.reference.reduce)
        chosen, rejected, base_lp = blocks(lp, len(idx))
        n_chosen, n_rejected, _ = blocks(nt, len(idx))
        ref = table.select(idx)
        metrics = pair_metrics(PairLogps(chosen, rejected, n_chosen, n_rejected), ref.pair(),
                               cfg.method.beta)  # fmt: skip
        metrics["drift/base"] = base_lp - ref.role("base")
        for k, v in metrics.items():
            values.setdefault(k, []).extend(v.float().tolist())
    out: dict = {}
    for k, v in values.items():
        put(out, f"personal/{k}", v)
    return out


def main_reference(cfg: Config, ckpt: str | None, model, tokenizer) -> Reference:
    """The untrained base model: the evaluated model itself when it is the base or a fresh LoRA
    policy (adapter disabled while scoring), else loaded on first use."""
    if ckpt is None or (hasattr(model, "disable_adapter") and not cfg.train.init_adapter):
        return Reference(cfg.model, cfg.paths.cache_dir, model, tokenizer)
    return Reference(cfg.model, cfg.paths.cache_dir)


def make_judge(cfg: Config, main: Reference, exact_check: bool):
    """The implicit judge, or the reason there is none: ``eval.judge=none``, or an exact style
    check with no judge model named (the judge could only add weaker evidence)."""
    from bapo_exp.evaluation.judge import ImplicitJudge

    if cfg.eval.judge == "none":
        return "eval.judge=none"
    if exact_check and cfg.eval.judge is None:
        return "the data defines an exact style check (set eval.judge=<model> to run one too)"
    ref = main if cfg.eval.judge is None else Reference(named_model(cfg.eval.judge),
                                                        cfg.paths.cache_dir)  # fmt: skip
    name = cfg.eval.judge or f"{cfg.model.name} (main reference)"
    return ImplicitJudge(ref, cfg.reference.cache_dir, template=cfg.eval.judge_template,
                         batch_size=cfg.eval.batch_size, name=name)  # fmt: skip


def gen_settings(cfg: Config, is_base: bool):
    """``GenSettings`` of this run (``evaluation.personalisation``)."""
    from bapo_exp.evaluation.personalisation import GenSettings, instructions_of, style_checker

    base_budget = cfg.reference.max_new_tokens or cfg.model.max_response_tokens
    budget = cfg.eval.gen_max_new_tokens or base_budget
    return GenSettings(
        n_prompts=cfg.eval.gen_prompts, max_new_tokens=budget,
        batch_size=cfg.eval.gen_batch_size or cfg.eval.batch_size,
        z=cfg.eval.significance_z, cache_dir=cfg.paths.cache_dir,
        reuse_base=is_base and not cfg.reference.do_sample and budget == base_budget,
        style_check=style_checker(cfg.data.name, cfg.eval.style_check),
        instructions=instructions_of(cfg.data),
    )  # fmt: skip


def personalisation(cfg: Config, folder: Path, ckpt: str | None, model, tokenizer) -> dict:
    """Likelihood (trained models) and generated personalisation (every model), and verdicts."""
    from bapo_exp.evaluation.personalisation import clears, run_generated, select_items

    data = load_data(cfg)
    main = main_reference(cfg, ckpt, model, tokenizer)
    trained = get_loss(cfg.method.name).trains
    settings = gen_settings(cfg, is_base=ckpt is None)
    items = select_items(data.heldout, settings.n_prompts)
    held = data.heldout if trained else [p for it in items for p in it.pairs]
    base = base_responses_of(cfg, main, [e.prompt for e in held])  # y_b of the prompts used
    out: dict = {}
    if trained and data.heldout:
        table: RefTable = score_examples([main], data.heldout, base, cfg.reference)
        out.update(likelihood_personalisation(cfg, model, tokenizer, data, base, table))
    out.update(run_generated(
        settings, folder / "generations.jsonl", (model, tokenizer, cfg.model), items,
        base, judge=lambda: make_judge(cfg, main, settings.style_check is not None),
    ))  # fmt: skip
    if "personal/pref_acc" in out:
        z = cfg.eval.significance_z
        moved = clears(out["personal/pref_acc"], out["personal/pref_acc_stderr"], 0.5, z)
        out["personal/likelihood_personalised"] = moved
        out["personal/likelihood_only"] = bool(
            moved and out.get("personal/generated_personalised") is False
        )
        if out["personal/likelihood_only"]:
            log.warning("likelihood margins moved (pref_acc %.3f) but generations did not: not "
                        "personalised in what a user sees", out["personal/pref_acc"])  # fmt: skip
    return out


def evaluate_checkpoint(cfg: Config, ckpt: str | None, out: Path) -> dict:
    """Suites and personalisation of one model (``ckpt``; None: the base), files into ``out``."""
    from bapo_exp.evaluation.harness import evaluate
    from bapo_exp.evaluation.summary import flatten

    model, tokenizer = load_evaluated(cfg, ckpt)
    summary: dict = {"ckpt_path": ckpt or "base"}
    out.mkdir(parents=True, exist_ok=True)
    if cfg.eval.suites:
        results = evaluate(
            model, tokenizer, suites=cfg.eval.suites, data_root=cfg.paths.data_root,
            limit=cfg.eval.limit, batch_size=cfg.eval.batch_size, num_fewshot=cfg.eval.num_fewshot,
            mmlu_subjects=cfg.eval.mmlu_subjects, out_dir=out, mc_format=cfg.eval.mc_format,
            mmlu_categories=cfg.eval.mmlu_categories, data=cfg.data, cache_dir=cfg.paths.cache_dir,
            backend=cfg.eval.backend, token_budget=cfg.eval.token_budget,
        )  # fmt: skip
        summary.update(flatten(results))
    if cfg.eval.personalisation:
        summary.update(personalisation(cfg, out, ckpt, model, tokenizer))
    return summary


def at_step_checkpoints(cfg: Config, run: RunDir) -> dict[int, str]:
    """``eval.at_steps`` -> the checkpoint the train stage kept for each (steps before the last)."""
    from bapo_exp.stages.train import at_step_dir, checkpoints_dir

    total = (run.summary("train") or {}).get("total_steps")
    if not cfg.eval.at_steps or cfg.eval.ckpt or total is None:
        return {}
    out = {}
    for step in sorted(s for s in set(cfg.eval.at_steps) if s < total):
        path = at_step_dir(checkpoints_dir(cfg, run), step)
        if not path.is_dir():
            raise MissingCheckpointError(
                f"eval.at_steps asks for step {step}, but the train stage kept no model there "
                f"({path}); retrain with the same eval.at_steps: `python -m bapo_exp "
                f"stages=[train,eval] force=true hydra.run.dir={run.root}`"
            )
        out[step] = str(path)
    return out


def run(cfg: Config, run: RunDir, tracker: Tracker) -> dict:
    from bapo_exp.modeling.fingerprint import base_fingerprint
    from bapo_exp.validate import check_window

    check_window(cfg, at_start=False)  # sources whose tokenizer was not at hand at the start
    ckpt = checkpoint_of(cfg, run)
    curve = at_step_checkpoints(cfg, run)
    summary = evaluate_checkpoint(cfg, ckpt, run.root / "eval")
    # which base model this run started from, exactly (compare machines by this string)
    summary["base_fingerprint"] = base_fingerprint(cfg.model, cfg.paths.cache_dir)
    for step, path in curve.items():  # the final model is the last point of the curve
        log.info("eval at step %d: %s", step, path)
        point = evaluate_checkpoint(cfg, path, run.root / "eval" / "at_step" / str(step))
        run.write_json(f"eval/at_step/{step}/summary.json", point)
    if curve:
        summary["at_steps"] = sorted(curve)
    tracker.log({f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary
