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
from dataclasses import dataclass
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.data.types import PreferenceData
from bapo_exp.evaluation.personalisation import GenItem, GenSettings
from bapo_exp.losses import get_loss
from bapo_exp.losses.metrics import pair_metrics
from bapo_exp.losses.types import PairLogps
from bapo_exp.modeling.reference import Reference
from bapo_exp.references import RefTable, score_examples
from bapo_exp.stages.common import base_responses_of, load_data, named_model
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker
from bapo_exp.training.forward import PolicyData, blocks, policy_logps

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


def heldout_tokens(cfg: Config, tokenizer, data, base) -> PolicyData:
    """The held-out pairs' token ids (chosen, rejected, base) in the policy's template."""
    from bapo_exp.modeling.tokenize import Tokenization
    from bapo_exp.stages.train import tokenize_policy

    return tokenize_policy(Tokenization.from_config(tokenizer, cfg.model), data.heldout, base)


@torch.no_grad()
def distinct_logps(model, seqs: list, pad_id: int, batch: int, reduce: str):
    """Response log-probs and token counts of ``seqs``, each distinct sequence scored once (the
    held-out pairs of a prompt share its chosen and base responses), ``batch`` at a time."""
    from bapo_exp.modeling.tokenize import collate

    keys = [(tuple(s.ids), s.n_prompt) for s in seqs]
    first = {k: i for i, k in reversed(list(enumerate(keys)))}
    order = sorted(set(first.values()))
    where = {keys[i]: j for j, i in enumerate(order)}
    lps, nts = [], []
    for start in range(0, len(order), batch):
        chunk = [seqs[i] for i in order[start : start + batch]]
        lp, nt = policy_logps(model, collate(chunk, pad_id=pad_id, side="right"), reduce)
        lps.append(lp)
        nts.append(nt)
    back = torch.tensor([where[k] for k in keys], dtype=torch.long)
    return torch.cat(lps)[back], torch.cat(nts)[back]


def likelihood_personalisation(
    cfg: Config, model, tokenizer, data, base, table, pdata: PolicyData | None = None
) -> dict:
    """pref_acc, reward margin and drifts on held-out pairs, against the main reference
    (``pdata``: ``heldout_tokens``, if already made)."""
    from bapo_exp.evaluation.personalisation import put

    pdata = pdata or heldout_tokens(cfg, tokenizer, data, base)
    n = len(data.heldout)
    lp, nt = distinct_logps(model, [*pdata.chosen, *pdata.rejected, *pdata.base], pdata.pad_id,
                            3 * cfg.eval.batch_size, cfg.reference.reduce)  # fmt: skip
    chosen, rejected, base_lp = blocks(lp, n)
    n_chosen, n_rejected, _ = blocks(nt, n)
    ref = table.select(list(range(n)))
    metrics = pair_metrics(PairLogps(chosen, rejected, n_chosen, n_rejected), ref.pair(),
                           cfg.method.beta)  # fmt: skip
    metrics["drift/base"] = base_lp - ref.role("base")
    out: dict = {}
    for k, v in metrics.items():
        put(out, f"personal/{k}", v.float().tolist())
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


def gen_batch_size(cfg: Config, max_new_tokens: int) -> int:
    """``eval.gen_batch_size``, or when null as many prompts as ``eval.gen_token_budget`` tokens
    hold at the longest (``model.max_prompt_tokens`` + ``max_new_tokens`` each): decoding reads
    the weights once per step, so a small model decodes hundreds of prompts per step at little
    more than the cost of one (the micro model: 292 at the default budget)."""
    if cfg.eval.gen_batch_size:
        return cfg.eval.gen_batch_size
    return max(1, cfg.eval.gen_token_budget // (cfg.model.max_prompt_tokens + max_new_tokens))


def gen_settings(cfg: Config, is_base: bool):
    """``GenSettings`` of this run (``evaluation.personalisation``)."""
    from bapo_exp.evaluation.personalisation import GenSettings, instructions_of, style_checker

    base_budget = cfg.reference.max_new_tokens or cfg.model.max_response_tokens
    budget = cfg.eval.gen_max_new_tokens or base_budget
    return GenSettings(
        n_prompts=cfg.eval.gen_prompts, max_new_tokens=budget,
        batch_size=gen_batch_size(cfg, budget),
        z=cfg.eval.significance_z, cache_dir=cfg.paths.cache_dir,
        reuse_base=is_base and not cfg.reference.do_sample and budget == base_budget,
        style_check=style_checker(cfg.data.name, cfg.eval.style_check),
        instructions=instructions_of(cfg.data),
    )  # fmt: skip


@dataclass
class Personalisation:
    """What the personalisation metrics of a run need that does not depend on the evaluated
    weights: the data, the main reference, the held-out items, y_b and the reference table."""

    data: PreferenceData
    main: Reference
    settings: GenSettings
    items: list[GenItem]
    base: dict[str, str]  # prompt -> y_b, for the prompts used
    table: RefTable | None  # the held-out pairs' reference log-probs (trained models)
    tokens: PolicyData | None = None  # the held-out pairs' token ids (trained models)


def prepare_personalisation(cfg: Config, ckpt: str | None, model, tokenizer) -> Personalisation:
    """The model-independent parts of :func:`personalisation` (``ckpt`` None: the base)."""
    from bapo_exp.evaluation.personalisation import select_items

    data = load_data(cfg)
    main = main_reference(cfg, ckpt, model, tokenizer)
    trained = get_loss(cfg.method.name).trains
    settings = gen_settings(cfg, is_base=ckpt is None)
    items = select_items(data.heldout, settings.n_prompts)
    held = data.heldout if trained else [p for it in items for p in it.pairs]
    base = base_responses_of(cfg, main, [e.prompt for e in held])  # y_b of the prompts used
    table = tokens = None
    if trained and data.heldout:
        table = score_examples([main], data.heldout, base, cfg.reference)
        tokens = heldout_tokens(cfg, tokenizer, data, base)
    return Personalisation(data, main, settings, items, base, table, tokens)


def personalisation(cfg: Config, parts: Personalisation, folder: Path, model, tokenizer) -> dict:
    """Likelihood (trained models) and generated personalisation (every model), and verdicts."""
    from bapo_exp.evaluation.personalisation import clears, run_generated

    out: dict = {}
    if parts.table is not None:
        out.update(likelihood_personalisation(cfg, model, tokenizer, parts.data, parts.base,
                                              parts.table, parts.tokens))  # fmt: skip
    settings = parts.settings
    out.update(run_generated(
        settings, folder / "generations.jsonl", (model, tokenizer, cfg.model), parts.items,
        parts.base, judge=lambda: make_judge(cfg, parts.main, settings.style_check is not None),
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

    def __call__(self, model, tokenizer, out: Path) -> dict:
        """Suite and personalisation metrics of ``model``; their files go into ``out``."""
        from bapo_exp.evaluation.summary import flatten

        summary: dict = {}
        out.mkdir(parents=True, exist_ok=True)
        if self.suites is not None:
            summary.update(flatten(self.suites.run(model, tokenizer, out_dir=out)))
        if self.personal is not None:
            summary.update(personalisation(self.cfg, self.personal, out, model, tokenizer))
        return summary

    def close(self) -> None:
        if self.suites is not None:
            (self.suites.release if self.shared else self.suites.close)()

    def __enter__(self) -> Evaluation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_checkpoint(cfg: Config, ckpt: str | None, out: Path) -> dict:
    """Suites and personalisation of one model (``ckpt``; None: the base), files into ``out``."""
    model, tokenizer = load_evaluated(cfg, ckpt)
    with Evaluation(cfg, ckpt, model, tokenizer) as evaluation:
        return {"ckpt_path": ckpt or "base", **evaluation(model, tokenizer, out)}


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

    ckpt = checkpoint_of(cfg, run)
    curve = at_step_checkpoints(cfg, run)
    # points the train stage evaluated in memory (eval.in_training), with these eval settings
    taken = ckpt and not cfg.eval.ckpt and cfg.eval.in_training
    points = eval_points.finished(cfg, run) if taken else {}
    final = (run.summary("train") or {}).get("total_steps")
    out = run.root / "eval"
    summary = eval_points.take(points.get(final), ckpt, out) or evaluate_checkpoint(cfg, ckpt, out)
    # which base model this run started from, exactly (compare machines by this string)
    summary["base_fingerprint"] = base_fingerprint(cfg.model, cfg.paths.cache_dir)
    for step, path in curve.items():  # the final model is the last point of the curve
        where = out / "at_step" / str(step)
        point = eval_points.take(points.get(step), path, where)
        if point is None:
            log.info("eval at step %d: %s", step, path)
            point = evaluate_checkpoint(cfg, path, where)
        run.write_json(f"eval/at_step/{step}/summary.json", point)
    if used := sorted(set(points) & {*curve, final}):
        log.info("eval: steps %s were evaluated during training (eval.in_training)", used)
    if curve:
        summary["at_steps"] = sorted(curve)
    tracker.log({f"eval/{k}": v for k, v in summary.items() if isinstance(v, int | float)})
    return summary
