"""Eval stage: knowledge and alignment through lm-eval, and personalisation (METHODS §6, §8).

python -m bapo_exp method=none stages=[eval]                       # the untrained baseline
python -m bapo_exp method=bapo stages=[eval] eval.ckpt=runs/.../checkpoints/final

Scores the trained model of this run (``train/summary.json: ckpt_path``), a given checkpoint,
or the base model when nothing was trained. The reference is always the initial model.

Personalisation (``eval.personalisation``): likelihood metrics ``personal/*`` on the held-out
pairs (trained models), and for every model, the base included (the frontier's baseline),
generated personalisation ``gen/*`` with ``eval/generations.jsonl``
(``evaluation.personalisation``). ``personal/likelihood_only`` is true when the likelihood
margins moved (``pref_acc > 0.5 + z se``) but the generations did not.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.losses.metrics import pair_metrics
from bapo_exp.losses.types import PairLogps
from bapo_exp.references import Reference, base_responses, score_examples
from bapo_exp.stages.common import load_data, named_model
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker
from bapo_exp.training.forward import policy_batch, policy_logps

log = logging.getLogger(__name__)


def checkpoint_of(cfg: Config, run: RunDir) -> str | None:
    if cfg.eval.ckpt:
        return cfg.eval.ckpt
    train = run.summary("train") or {}
    return train.get("ckpt_path")


def load_evaluated(cfg: Config, ckpt: str | None):
    """The model to score: base model, plus the trained adapter or full weights from ``ckpt``."""
    from bapo_exp.modeling.load import load_model

    if ckpt and not (Path(ckpt) / "adapter_config.json").exists():
        full = type(cfg.model)(**{**cfg.model.__dict__, "source": "hf", "pretrained": ckpt})
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
    from bapo_exp.stages.train import tokenize_policy

    if not data.heldout:
        return {}
    tok = Reference(cfg.model, cfg.paths.cache_dir, model, tokenizer).tokenization()
    pdata = tokenize_policy(tok, data.heldout, base)
    values: dict[str, list[float]] = {}
    bs = cfg.eval.batch_size
    for start in range(0, len(data.heldout), bs):
        idx = list(range(start, min(start + bs, len(data.heldout))))
        lp, nt = policy_logps(model, policy_batch(pdata, idx, with_base=True), cfg.reference.reduce)
        b = len(idx)
        pol = PairLogps(lp[:b], lp[b : 2 * b], nt[:b], nt[b : 2 * b])
        ref = table.logps[0][:, idx]
        ref_pair = PairLogps(ref[0], ref[1], table.ntok[0][0, idx], table.ntok[0][1, idx])
        metrics = pair_metrics(pol, ref_pair, cfg.method.beta)  # only trained runs get here
        metrics["drift/base"] = lp[2 * b :] - ref[2]
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


def make_judge(cfg: Config, main: Reference):
    """The implicit judge (main reference unless ``eval.judge`` names a model), or why not."""
    from bapo_exp.evaluation.judge import ImplicitJudge

    if cfg.eval.judge == "none":
        return "eval.judge=none"
    ref = main if cfg.eval.judge is None else Reference(named_model(cfg.eval.judge),
                                                        cfg.paths.cache_dir)  # fmt: skip
    name = cfg.eval.judge or f"{cfg.model.name} (main reference)"
    return ImplicitJudge(ref, cfg.reference.cache_dir, template=cfg.eval.judge_template,
                         batch_size=cfg.eval.batch_size, name=name)  # fmt: skip


def personalisation(cfg: Config, run: RunDir, ckpt: str | None, model, tokenizer) -> dict:
    """Likelihood (trained models) and generated personalisation (every model), and verdicts."""
    from bapo_exp.evaluation.personalisation import clears, run_generated, select_items

    data = load_data(cfg)
    main = main_reference(cfg, ckpt, model, tokenizer)
    trained = cfg.method.name != "none"
    held = data.heldout if trained else select_items(data.heldout, cfg.eval.gen_prompts)
    base = base_responses(cfg, main, [e.prompt for e in held])  # y_b of the prompts used
    out: dict = {}
    if trained:
        table = score_examples(cfg, [main], data.heldout, base)
        out.update(likelihood_personalisation(cfg, model, tokenizer, data, base, table))
    path = run.path("eval", "generations.jsonl")
    out.update(run_generated(cfg, path, (model, tokenizer), data, base, is_base=ckpt is None,
                             judge=lambda: make_judge(cfg, main)))  # fmt: skip
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


def run(cfg: Config, run: RunDir, tracker: Tracker) -> dict:
    from bapo_exp.evaluation.harness import evaluate
    from bapo_exp.evaluation.summary import flatten

    ckpt = checkpoint_of(cfg, run)
    model, tokenizer = load_evaluated(cfg, ckpt)
    summary: dict = {"ckpt_path": ckpt or "base"}
    if cfg.eval.suites:
        results = evaluate(
            model, tokenizer, suites=cfg.eval.suites, data_root=cfg.paths.data_root,
            limit=cfg.eval.limit, batch_size=cfg.eval.batch_size, num_fewshot=cfg.eval.num_fewshot,
            mmlu_subjects=cfg.eval.mmlu_subjects, out_dir=run.root / "eval",
            mc_format=cfg.eval.mc_format, backend=cfg.eval.backend,
            token_budget=cfg.eval.token_budget,
        )  # fmt: skip
        summary.update(flatten(results))
    if cfg.eval.personalisation:
        summary.update(personalisation(cfg, run, ckpt, model, tokenizer))
    tracker.log({f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary
