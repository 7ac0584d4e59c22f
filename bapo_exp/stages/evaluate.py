"""Eval stage: knowledge and alignment through lm-eval, and personalisation (METHODS §6, §8).

python -m bapo_exp method=none stages=[eval]                       # the untrained baseline
python -m bapo_exp method=bapo stages=[eval] eval.ckpt=runs/.../checkpoints/final

Scores the trained model of this run (``train/summary.json: ckpt_path``), a given checkpoint,
or the base model when nothing was trained. The reference is always the initial model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.losses.metrics import pair_metrics
from bapo_exp.losses.types import PairLogps
from bapo_exp.references import Reference
from bapo_exp.stages.common import load_data, reference_tables
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
    from bapo_exp.stages.train import tokenize_policy

    if not data.heldout:
        return {}
    tok = Reference(cfg.model, cfg.paths.cache_dir, model, tokenizer).tokenization()
    pdata = tokenize_policy(tok, data.heldout, base)
    sums: dict[str, float] = {}
    bs = cfg.eval.batch_size
    for start in range(0, len(data.heldout), bs):
        idx = list(range(start, min(start + bs, len(data.heldout))))
        lp, nt = policy_logps(model, policy_batch(pdata, idx, with_base=True), cfg.reference.reduce)
        b = len(idx)
        pol = PairLogps(lp[:b], lp[b : 2 * b], nt[:b], nt[b : 2 * b])
        ref = table.logps[0][:, idx]
        ref_pair = PairLogps(ref[0], ref[1], table.ntok[0][0, idx], table.ntok[0][1, idx])
        metrics = pair_metrics(pol, ref_pair, cfg.method.beta if cfg.method.name != "none" else 0.1)
        metrics["drift/base"] = lp[2 * b :] - ref[2]
        for k, v in metrics.items():
            sums[k] = sums.get(k, 0.0) + float(v.float().sum())
    return {f"personal/{k}": v / len(data.heldout) for k, v in sums.items()}


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
        )  # fmt: skip
        summary.update(flatten(results))
    if cfg.eval.personalisation and cfg.method.name != "none":
        data = load_data(cfg)
        base, _, heldout_table = reference_tables(cfg, data)
        summary.update(likelihood_personalisation(cfg, model, tokenizer, data, base, heldout_table))
    tracker.log({f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary
