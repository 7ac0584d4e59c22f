"""Personalisation metrics of an evaluated model (METHODS §6): held-out likelihood margins,
generated personalisation, style log-odds and the harder held-out pairs.

The parts that do not depend on the evaluated weights (data, main reference, held-out tokens,
y_b, the reference tables) are built once per run (:func:`prepare_personalisation`) and reused at
every evaluation point (``stages.evaluator.Evaluation``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.data.types import PreferenceData
from bapo_exp.evaluation.items import GenItem
from bapo_exp.evaluation.personalisation import GenSettings
from bapo_exp.losses import get_loss
from bapo_exp.losses.metrics import pair_metrics
from bapo_exp.losses.types import PairLogps
from bapo_exp.modeling.reference_model import Reference
from bapo_exp.reference_tables import RefTable, score_examples
from bapo_exp.stages.common import base_responses_of, load_data, named_model
from bapo_exp.training.forward import PolicyData, blocks, policy_logps, tokenize_policy

log = logging.getLogger(__name__)


def heldout_tokens(cfg: Config, tokenizer, data, base) -> PolicyData:
    """The held-out pairs' token ids (chosen, rejected, base) in the policy's template."""
    from bapo_exp.modeling.tokenize import Tokenization

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
    from bapo_exp.evaluation.items import put

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
        answer_format=answer_format_of(cfg),
    )  # fmt: skip


def answer_format_of(cfg: Config):
    """The data's ``evaluation.answers.AnswerFormat`` (None: the data defines none)."""
    from bapo_exp.evaluation.answers import ANSWER_FORMATS

    return ANSWER_FORMATS.get(cfg.data.name)


@dataclass
class HardPairs:
    """The harder held-out pairs (``DatasetSpec.hard``) and their main-reference log-probs."""

    pairs: list
    ref: object  # losses.types.PairLogps of the main reference


def hard_pairs(cfg: Config, main: Reference) -> HardPairs | None:
    """The data's harder held-out pairs scored once by the main reference (None: no such set)."""
    from bapo_exp.data import DATASETS

    hard_of = DATASETS.require(cfg.data.name).hard
    hard = hard_of(cfg.data, cache_dir=cfg.paths.cache_dir) if hard_of else []
    if not hard:
        return None
    return HardPairs(hard, score_examples([main], hard, None, cfg.reference).pair())


class TextScores:
    """Response log-probs of (prompt, response) texts under the evaluated model, in its own
    template; each list of texts is tokenized once per run (only the model changes between
    evaluation points)."""

    def __init__(self, cfg: Config, tokenizer) -> None:
        from bapo_exp.modeling.tokenize import Tokenization

        self.tok = Tokenization.from_config(tokenizer, cfg.model)
        self.batch_size = cfg.eval.batch_size
        self._encoded: dict[tuple, list] = {}

    @torch.no_grad()
    def __call__(self, model, prompts: list[str], responses: list[str], reduce: str = "sum"):
        """``(logps, n_tokens)`` of each response given its prompt: (N,) each."""
        from bapo_exp.modeling.scoring import score_seqs

        key = (tuple(prompts), tuple(responses), reduce)
        if key not in self._encoded:
            self._encoded[key] = self.tok.encode_many(prompts, responses)
        return score_seqs(model, self._encoded[key], pad_id=self.tok.pad_id,
                          batch_size=self.batch_size, reduce=reduce, desc="scoring")  # fmt: skip


def answer_likelihoods(cfg: Config, model, parts: Personalisation, pairs: bool) -> dict:
    """Style log-odds on the generation prompts (every model) and, for trained models with
    ``pairs``, the harder held-out pairs against the main reference (``evaluation.answers``)."""
    from bapo_exp.evaluation.answers import hard_metrics, style_logodds

    out: dict = {}
    if (fmt := parts.settings.answer_format) is not None:
        score = lambda p, r: parts.scores(model, p, r)[0].tolist()  # noqa: E731
        out.update(style_logodds(score, fmt, parts.items))
    if pairs and (hard := parts.hard) is not None:
        examples = hard.pairs
        n, responses = len(examples), [e.chosen for e in examples] + [e.rejected for e in examples]
        lp, nt = parts.scores(model, [e.prompt for e in examples] * 2, responses,
                              cfg.reference.reduce)  # fmt: skip
        m = pair_metrics(PairLogps(lp[:n], lp[n:], nt[:n], nt[n:]), hard.ref, cfg.method.beta)
        out.update(hard_metrics({k: v.tolist() for k, v in m.items()},
                                [e.source.get("kind", "hard") for e in examples]))  # fmt: skip
    return out


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
    hard: HardPairs | None = None  # the harder held-out pairs (trained models)
    scores: TextScores | None = None  # texts scored at every point, tokenized once


def prepare_personalisation(cfg: Config, ckpt: str | None, model, tokenizer) -> Personalisation:
    """The model-independent parts of :func:`personalisation` (``ckpt`` None: the base)."""
    from bapo_exp.evaluation.items import select_items

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
    hard = hard_pairs(cfg, main) if trained else None
    scores = TextScores(cfg, tokenizer)
    return Personalisation(data, main, settings, items, base, table, tokens, hard, scores)


def personalisation(
    cfg: Config, parts: Personalisation, folder: Path, model, tokenizer, final: bool = True
) -> dict:
    """Likelihood (trained models) and generated personalisation (every model), and verdicts.

    ``final``: the run's last evaluation point. Before it (``eval.at_steps``), the held-out pair
    metrics (``personal/pref_acc``, margins, drifts, ``personal/hard_*``) are computed only with
    ``eval.curve_pairs`` (generations and style log-odds always are)."""
    from bapo_exp.evaluation.personalisation import clears, run_generated

    pairs = final or cfg.eval.curve_pairs
    out: dict = {}
    if pairs and parts.table is not None:
        out.update(likelihood_personalisation(cfg, model, tokenizer, parts.data, parts.base,
                                              parts.table, parts.tokens))  # fmt: skip
    settings = parts.settings
    out.update(run_generated(
        settings, folder / "generations.jsonl", (model, tokenizer, cfg.model), parts.items,
        parts.base, judge=lambda: make_judge(cfg, parts.main, settings.style_check is not None),
    ))  # fmt: skip
    out.update(answer_likelihoods(cfg, model, parts, pairs))
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
