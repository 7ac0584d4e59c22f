"""Evaluation points scored inside the train stage (``eval.in_training``, issue 24).

With ``eval.in_training=true`` (the default) the train stage evaluates the model in memory
after each step of ``eval.at_steps`` and after its last step, with the eval stage's own
``Evaluation`` (the same suites, personalisation metrics and files), built once per run: the
suites' lm-eval tasks and requests, the data, y_b and the reference table are prepared at the
first point and reused at every later one; only the model has changed. Each point is written
to ``train/eval_points/<step>/`` (``summary.json``, ``<suite>.json``, ``generations.jsonl`` and
``point.json``: the eval settings it was computed with, its wall seconds and the seconds spent
inside the model's forwards), all at once (a folder rename), so a run
killed between two points resumes without redoing a finished one.

The eval stage then takes the finished points whose eval settings equal its own and writes
them where it writes the points it evaluates from checkpoints (``eval/summary.json`` for the
final model, ``eval/at_step/<N>/``), so the run directory reads the same either way. Any point
not found there (``eval.in_training=false``, other eval settings on a re-launch, a
multi-process run) is evaluated from its checkpoint as before: the train stage keeps saving
``checkpoints/at_step_<N>`` and ``checkpoints/final``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from bapo_exp.atomic import write_json_atomic
from bapo_exp.config import Config
from bapo_exp.folders import replace_folder
from bapo_exp.readback import MANIFEST
from bapo_exp.tracking.run_dir import RunDir

log = logging.getLogger(__name__)

POINTS = Path("train") / "eval_points"
NOT_SETTINGS = ("in_training", "ckpt")  # eval keys that do not change a point's numbers


def settings_digest(cfg: Config) -> str:
    """What a point's numbers depend on besides the model: the eval settings and the data root
    (everything else that matters is the run's identity, fixed for a run directory)."""
    e = {k: v for k, v in asdict(cfg.eval).items() if k not in NOT_SETTINGS}
    text = json.dumps({"eval": e, "data_root": str(cfg.paths.data_root)}, sort_keys=True,
                      default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wanted(cfg: Config, processes: int) -> bool:
    """Whether the train stage evaluates its points itself: ``eval.in_training``, the eval stage
    comes later in this launch, it scores the run's own model, and there is something to score.
    A multi-process run (DDP, FSDP) leaves them to the eval stage (one process holds the
    whole model there)."""
    e = cfg.eval
    scores = bool(e.suites) or e.personalisation
    if e.in_training and "eval" in cfg.stages and processes > 1:
        log.info("eval.in_training: %d training processes, so the eval stage evaluates the "
                 "kept checkpoints instead", processes)  # fmt: skip
    return e.in_training and "eval" in cfg.stages and e.ckpt is None and scores and processes == 1


def point_steps(cfg: Config, total: int) -> list[int]:
    """The steps evaluated: ``eval.at_steps`` before the last step, and the last step."""
    return sorted({s for s in cfg.eval.at_steps if s < total} | {total})


def finished(cfg: Config, run: RunDir) -> dict[int, Path]:
    """``step -> folder`` of the intact points written with this run's eval settings. A point
    that differs from its manifest or whose ``point.json`` does not parse is evaluated again
    (it can be rebuilt: the train stage keeps the checkpoint), with a warning."""
    from bapo_exp.readback import folder_problems

    digest = settings_digest(cfg)
    out = {}
    for meta in run.root.glob(f"{POINTS}/*/point.json"):
        try:
            ok = json.loads(meta.read_text()).get("digest") == digest
        except (ValueError, AttributeError, OSError) as err:
            log.warning("evaluation point %s is damaged (%s): it is evaluated again", meta, err)
            continue
        if ok and (problems := folder_problems(meta.parent)):
            log.warning("evaluation point %s is damaged (%s: %s): it is evaluated again",
                        meta.parent, *problems[0])  # fmt: skip
        elif ok:
            out[int(meta.parent.name)] = meta.parent
    return out


@contextmanager
def kept_rng_state():
    """Evaluation draws no random numbers the training run would see (dropout, sampling)."""
    import numpy as np
    import torch

    state, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(state)
            np.random.set_state(np_state)


class InTraining:
    """The train stage's ``after_step`` that evaluates ``point_steps`` (see the module).

    Args:
        model: the trained model as the optimizer updates it (unwrapped, one process).
        total: the run's last step.
    """

    def __init__(self, cfg: Config, run: RunDir, model, tokenizer, total: int) -> None:
        self.cfg, self.run, self.model, self.tokenizer = cfg, run, model, tokenizer
        self.steps, self.total = set(point_steps(cfg, total)), total
        self.digest = settings_digest(cfg)
        self.evaluation = None

    def __call__(self, done: int) -> None:
        if done not in self.steps or done in finished(self.cfg, self.run):
            return
        import torch

        from bapo_exp.modeling.scoring import eval_mode, forward_seconds
        from bapo_exp.stages.evaluator import Evaluation

        start = time.perf_counter()
        out = self.run.root / POINTS / str(done)
        tmp = out.with_name(f".{done}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        with kept_rng_state(), eval_mode(self.model), torch.no_grad():
            if self.evaluation is None:  # "in-training": a trained model, not the base
                self.evaluation = Evaluation(self.cfg, "in-training", self.model, self.tokenizer,
                                             shared=True)  # fmt: skip
            with forward_seconds(self.model) as model_s:
                summary = self.evaluation(self.model, self.tokenizer, tmp, final=done == self.total)
        write_json_atomic(tmp / "summary.json", summary)
        seconds = round(time.perf_counter() - start, 3)
        # model_seconds: inside the evaluated model's forwards (the point's compute floor)
        write_json_atomic(tmp / "point.json", {"step": done, "digest": self.digest,
                                               "seconds": seconds,
                                               "model_seconds": round(model_s[0], 3)})  # fmt: skip
        replace_folder(tmp, out)
        log.info("eval at step %d (in training): %.1f s -> %s", done, seconds, out)

    def close(self) -> None:
        if self.evaluation is not None:
            self.evaluation.close()


def take(point: Path | None, ckpt: str, out: Path) -> dict | None:
    """A finished point's files copied into ``out`` and its summary (``ckpt_path``: the
    checkpoint the eval stage would have loaded); None without a point."""
    if point is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(point.iterdir()):
        if path.is_file() and path.name not in ("summary.json", "point.json", MANIFEST):
            shutil.copy2(path, out / path.name)
    summary = json.loads((point / "summary.json").read_text())
    return {"ckpt_path": ckpt, **summary}
