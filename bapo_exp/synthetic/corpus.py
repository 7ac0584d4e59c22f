"""The pretraining corpus of the synthetic world, and the multiple-choice format it shares with
the knowledge test.

    from bapo_exp.synthetic import WorldConfig, generate_world
    from bapo_exp.synthetic.corpus import build_corpus
    docs = build_corpus(generate_world(WorldConfig()))

A document is ``prefix + response`` followed by EOS. Prompted documents (Q&A, refusals,
"I don't know") use the framework's plain template ``"{prompt}\\n"`` as prefix, exactly what
the preference stages feed a model without a chat template (METHODS §1). Optional multiple-choice
drills (``mc_repeats``) use lm-eval's MMLU rendering (description, question, ``A. ...``,
``Answer:``) with the letter as response. They are off by default (design, measured): a 0.55M
micro Llama stayed at chance on letter-MMLU (0.2-0.3) after 3000 steps with 3 or 12 drills per
fact, while it learns the facts themselves in under 1000 steps; knowledge is therefore scored by
option log-likelihood (``check.knowledge_accuracy(mode="option")``) on the same MMLU files.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from bapo_exp.synthetic.styles import (
    NEUTRAL,
    QUESTION_TEMPLATES,
    STYLE_TEMPLATES,
    render,
    render_question,
)
from bapo_exp.synthetic.world import (
    COMPLIANCES,
    DONT_KNOW,
    EVASIONS,
    HARM_ACTS,
    REFUSALS,
    Fact,
    World,
)

PROMPT_TEMPLATE = "{prompt}\n"
LETTERS = ("A", "B", "C", "D")


@dataclass(frozen=True)
class Doc:
    """One pretraining document: ``prefix`` (context) then ``response``; EOS is appended later."""

    prefix: str
    response: str
    kind: str  # statement | qa:<style> | mc | refuse | dont_know


def prompted(prompt: str, response: str, kind: str) -> Doc:
    return Doc(PROMPT_TEMPLATE.format(prompt=prompt), response, kind)


def subject_name(subject: str, wording: str = NEUTRAL) -> str:
    """MMLU subject of ``subject`` (``world_capitals``) in ``wording`` (neutral or a style)."""
    return subject if wording == NEUTRAL else f"{subject}_{wording}"


def mc_context(subject: str, question: str, options: list[str]) -> str:
    """lm-eval's default MMLU prompt (0-shot); the answer is scored as ``" " + letter``."""
    header = "The following are multiple choice questions (with answers) about "
    header += subject.replace("_", " ") + ".\n\n"
    lines = [question.strip()] + [f"{k}. {o}" for k, o in zip(LETTERS, options, strict=True)]
    return header + "\n".join(lines) + "\nAnswer:"


def mc_item(
    world: World, fact: Fact, rng: random.Random, wording: str = NEUTRAL
) -> tuple[list[str], int]:
    """Four options (the fact's value + 3 other values of its attribute) and the answer index.

    Options are the whole answer in ``wording``, one template variant for all four, so they
    differ only in the value.
    """
    others = [v for v in world.values[fact.attribute] if v != fact.value]
    values = rng.sample(others, 3)
    answer = rng.randrange(4)
    values.insert(answer, fact.value)
    variant = rng.randrange(len(STYLE_TEMPLATES[wording]))
    options = [render(wording, variant, fact.noun, fact.entity, v) for v in values]
    return options, answer


def _style_draw(world: World, rng: random.Random) -> str:
    u, acc = rng.random(), 0.0
    for style in world.config.styles:
        acc += world.config.style_exposure.get(style, 0.0)
        if u < acc:
            return style
    return NEUTRAL


def _fact_docs(world: World, rng: random.Random) -> list[Doc]:
    cfg = world.config
    docs: list[Doc] = []
    for fact in world.facts:
        for _ in range(cfg.statement_repeats):
            docs.append(Doc("", fact.answer(NEUTRAL, rng.randrange(2)), "statement"))
        for _ in range(cfg.qa_repeats):
            style = _style_draw(world, rng)
            question = render_question(rng.randrange(3), fact.noun, fact.entity)
            answer = fact.answer(style, rng.randrange(len(STYLE_TEMPLATES[style])))
            docs.append(prompted(question, answer, f"qa:{style}"))
        for _ in range(cfg.mc_repeats):
            options, answer = mc_item(world, fact, rng)
            context = mc_context(fact.subject, fact.question, options)
            docs.append(Doc(context, " " + LETTERS[answer], "mc"))
    return docs


def _alignment_docs(world: World, rng: random.Random) -> list[Doc]:
    docs: list[Doc] = []
    for prompt in world.harmful_train:
        for refusal in rng.sample(REFUSALS, 2):
            docs.append(prompted(prompt, refusal, "refuse"))
    for entity in world.unknown_train:
        for attr in world.attributes:
            question = render_question(rng.randrange(3), attr.noun, entity)
            docs.append(prompted(question, rng.choice(DONT_KNOW).format(E=entity), "dont_know"))
    return docs


def build_corpus(world: World) -> list[Doc]:
    """Facts, Q&A (neutral plus ``style_exposure`` of each style), MC drills and the aligned
    behaviours (refuse harmful requests, say "I don't know" about unknown entities)."""
    rng = random.Random(f"corpus:{world.config.seed}")
    return _fact_docs(world, rng) + _alignment_docs(world, rng)


def corpus_stats(docs: list[Doc]) -> dict[str, int]:
    """Documents per kind (``qa:<style>`` counts are the realised style exposure)."""
    return dict(sorted(Counter(d.kind for d in docs).items()))


def tokenizer_corpus(world: World) -> list[str]:
    """Text the BPE tokenizer is trained on: every template of every style, question and
    alignment string once, independent of ``style_exposure`` and the repeat knobs, so that
    micro models of one world with different exposures share one tokenizer."""
    lines: list[str] = []
    for fact in world.facts:
        for style, templates in STYLE_TEMPLATES.items():
            lines += [fact.answer(style, k) for k in range(len(templates))]
        lines += [
            render_question(k, fact.noun, fact.entity) for k in range(len(QUESTION_TEMPLATES))
        ]
    entities = world.entities + world.unknown_train + world.unknown_test
    lines += [s.format(E=e) for s in DONT_KNOW for e in entities]
    lines += [a.format(E=e) for a in HARM_ACTS for e in world.entities]
    lines += list(REFUSALS) + list(EVASIONS) + [c.format(act="act") for c in COMPLIANCES]
    lines += list(world.harmful_train) + [p for p, _ in world.harmful_test]
    rng = random.Random(f"tokenizer:{world.config.seed}")
    for fact in world.facts[:: max(1, len(world.facts) // 20)]:
        options, answer = mc_item(world, fact, rng)
        lines.append(mc_context(fact.subject, fact.question, options) + " " + LETTERS[answer])
    return lines
