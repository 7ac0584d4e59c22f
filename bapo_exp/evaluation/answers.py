"""Finer personalisation measures where the data's answers follow known formats (issue 25).

A dataset whose answers are templated (the synthetic world) registers an ``AnswerFormat`` in
``ANSWER_FORMATS`` under its ``data.name``; the eval stage then adds, beside ``gen/style_share``
(the share of generations in the preferred style, over all prompts, unchanged):

- **well-formedness** (degenerate output is its own outcome, not "not personalised"):
  ``gen/well_formed`` = share of greedy generations that parse as an answer in some style (the
  base style included); ``gen/base_well_formed`` the same for y_b;
  ``gen/style_share_well_formed`` = share in the preferred style among the well-formed ones;
  ``gen/fact_correct`` = share of generations that are well formed and state the prompt's fact
  (value, and entity and attribute where the wording names them);
- **style log-odds** (continuous, one scoring pass): per held-out prompt,
  ``log P(preferred style) - log P(base style)`` under the evaluated model, each style's
  probability summed over all its renderings of the prompt's fact (its template variants, EOS
  included): ``personal/style_logodds`` (nats, summed over tokens; design: marginal over the
  variants so that it does not depend on which variant a pair happened to draw), and
  ``personal/style_pref_prob`` = mean of ``sigmoid(log-odds)``, the same on a 0-1 scale;
- **harder held-out pairs** (``DatasetSpec.hard``): ``personal/hard_margin`` (the implicit reward
  margin ``beta * (r(y_w) - r(y_l))`` against the main reference, as ``personal/reward_margin``)
  and ``personal/hard_pref_acc``, overall and per kind (``personal/hard/<kind>/...``).

Every mean has its standard error under ``<key>_stderr`` (``evaluation.items.put``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bapo_exp.data.types import PreferenceExample
from bapo_exp.evaluation.items import GenItem, put
from bapo_exp.registry import Registry


@dataclass(frozen=True)
class AnswerFormat:
    """The answer formats of one dataset.

    Attributes:
        style: text -> the style it is written in (``base_style`` included), None when it
            parses as no answer (degenerate, truncated or free text).
        answers: (a held-out pair, style) -> every rendering, in that style, of the answer the
            pair's prompt asks for.
        correct: (text, a held-out pair) -> the text is a well-formed answer stating the fact
            the pair's prompt asks for.
        base_style: the style the base model mostly answers in (``neutral``).
    """

    style: Callable[[str], str | None]
    answers: Callable[[PreferenceExample, str], list[str]]
    correct: Callable[[str, PreferenceExample], bool]
    base_style: str


# data.name -> its answer format; the synthetic world registers "synthetic".
ANSWER_FORMATS: Registry[AnswerFormat] = Registry("answer format", config_key="data.name")


def form_metrics(
    fmt: AnswerFormat, items: Sequence[GenItem], gens: Sequence[str], bases: Sequence[str]
) -> tuple[dict, list[dict]]:
    """Well-formedness, style share among the well-formed, and fact correctness."""
    styles = [fmt.style(g) for g in gens]
    formed = [s is not None for s in styles]
    correct = [fmt.correct(g, it.pairs[0]) for g, it in zip(gens, items, strict=True)]
    out: dict = {}
    put(out, "gen/well_formed", formed)
    put(out, "gen/base_well_formed", [fmt.style(b) is not None for b in bases])
    in_pref = [s == it.preference for s, it in zip(styles, items, strict=True) if s is not None]
    put(out, "gen/style_share_well_formed", in_pref)
    put(out, "gen/fact_correct", correct)
    rows = [{"gen_style": s, "gen_fact_correct": c} for s, c in zip(styles, correct, strict=True)]
    return out, rows


def logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-min(max(x, -700.0), 700.0)))


def style_logodds(score, fmt: AnswerFormat, items: Sequence[GenItem]) -> dict:
    """``personal/style_logodds`` and ``personal/style_pref_prob`` over ``items``.

    Args:
        score: ``(prompts, responses) -> summed log-probs`` (a list) under the evaluated model.
        fmt: the data's answer format.
        items: the held-out (preference, prompt) items of generated personalisation.
    """
    prompts, responses, spans = [], [], []
    for it in items:
        pref = fmt.answers(it.pairs[0], it.preference)
        base = fmt.answers(it.pairs[0], fmt.base_style)
        start = len(responses)
        responses += pref + base
        prompts += [it.prompt] * (len(pref) + len(base))
        spans.append((start, start + len(pref), start + len(pref) + len(base)))
    if not items:
        return {}
    lp = list(score(prompts, responses))
    odds = [logsumexp(lp[a:b]) - logsumexp(lp[b:c]) for a, b, c in spans]
    out: dict = {}
    put(out, "personal/style_logodds", odds)
    put(out, "personal/style_pref_prob", [sigmoid(o) for o in odds])
    return out


def hard_metrics(metrics: dict, kinds: Sequence[str]) -> dict:
    """``personal/hard_margin`` and ``personal/hard_pref_acc`` (and per kind) from
    ``losses.metrics.pair_metrics`` of the hard pairs (lists of floats, one per pair)."""
    out: dict = {}
    for name, key in (("hard_margin", "reward_margin"), ("hard_pref_acc", "pref_acc")):
        put(out, f"personal/{name}", metrics[key])
        for kind in sorted(set(kinds)):
            values = [v for v, k in zip(metrics[key], kinds, strict=True) if k == kind]
            put(out, f"personal/hard/{kind}/{name.removeprefix('hard_')}", values)
    out["personal/hard_n"] = len(kinds)
    return out
