"""Eval stage: knowledge and alignment through lm-eval, and personalisation (METHODS §6, §8).

bapo-exp eval runs/adhoc/<stamp> eval.limit=50              # re-evaluate a finished run
python -m bapo_exp method=none stages=[eval]                # the untrained baseline

Scores the trained model of this run (``train/summary.json: ckpt_path``), a given checkpoint
(``eval.ckpt``), or the base model when nothing was trained. The reference is always the
initial model (PITFALLS #5).

Personalisation (``eval.personalisation``): likelihood metrics ``personal/*`` on the held-out
pairs (trained models), and for every model, the base included (the frontier's baseline),
generated personalisation ``gen/*`` with ``eval/generations.jsonl`` (``stages.personal``,
``evaluation.personalisation``). ``personal/likelihood_only`` is true when the likelihood
margins moved (``pref_acc > 0.5 + z se``) but the generations did not.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bapo_exp.config import Config
from bapo_exp.stages.evaluator import evaluate_checkpoint
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker

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
    return intact_model(ckpt, run) if ckpt else ckpt


def intact_model(path: str, run: RunDir) -> str:
    """``path``, a saved model folder, when it matches its manifest (``bapo_exp.readback``);
    else a ``DamagedFileError`` naming the damaged file and the command that writes it again."""
    from bapo_exp.readback import require_intact

    fix = (f"retrain it: `python -m bapo_exp stages=[train,eval] force=true hydra.run.dir="
           f"{run.root}`, or pass eval.ckpt=<checkpoint folder>")  # fmt: skip
    require_intact(Path(path), what="saved model", fix=fix)
    return path


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
        out[step] = intact_model(str(path), run)
    return out


def run(cfg: Config, run: RunDir, tracker: Tracker) -> dict:
    from bapo_exp.modeling.fingerprint import base_fingerprint
    from bapo_exp.stages import eval_points
    from bapo_exp.stages.eval_window import check_window

    ckpt = checkpoint_of(cfg, run)
    curve = at_step_checkpoints(cfg, run)
    # points the train stage evaluated in memory (eval.in_training), with these eval settings
    taken = ckpt and not cfg.eval.ckpt and cfg.eval.in_training
    points = eval_points.finished(cfg, run) if taken else {}
    final = (run.summary("train") or {}).get("total_steps")
    if not {final, *curve} <= set(points):  # something is scored here (3 s: the eval requests)
        check_window(cfg, at_start=False)  # sources whose tokenizer was not at hand at the start
    out = run.root / "eval"
    summary = eval_points.take(points.get(final), ckpt, out) or evaluate_checkpoint(cfg, ckpt, out)
    # which base model this run started from, exactly (compare machines by this string)
    summary["base_fingerprint"] = base_fingerprint(cfg.model, cfg.paths.cache_dir)
    for step, path in curve.items():  # the final model is the last point of the curve
        where = out / "at_step" / str(step)
        point = eval_points.take(points.get(step), path, where)
        if point is None:
            log.info("eval at step %d: %s", step, path)
            point = evaluate_checkpoint(cfg, path, where, final=False)
        run.write_json(f"eval/at_step/{step}/summary.json", point)
    if used := sorted(set(points) & {*curve, final}):
        log.info("eval: steps %s were evaluated during training (eval.in_training)", used)
    if curve:
        summary["at_steps"] = sorted(curve)
    tracker.log({f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary
