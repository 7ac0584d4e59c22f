"""Test sets and preference pairs of the synthetic world, in the official file schemas.

- Knowledge: MMLU rows ``(question, A, B, C, D, letter)`` per subject, one subject per
  (attribute, wording): ``world_capitals`` (neutral wording) and ``world_capitals_<style>``
  (the same questions and distractors, options written in ``<style>``). Category per wording:
  ``world_facts`` and ``world_facts_<style>`` (design: one root, wording = category).
- Alignment: BIG-bench ``hhh_alignment`` task dicts (``harmless``, ``honest``, ``helpful``),
  the aligned response listed first with score 1.
- Preferences: for each style and fact, chosen = the fact in that style, rejected = the same
  fact in every other preference style and in the neutral style (``rejected_style`` says which).
- Harder pairs (design, issue 25; held-out evaluation only, never trained on): for each style
  and fact, the chosen answer of ``preference_pairs`` against (``kind``) ``wrong_fact``: the same
  template with another value of the attribute (the right style, a wrong fact), and
  ``near_style``: the style's near miss (``styles.NEAR_TEMPLATES``: its opening with the
  neutral value-first body; for ``concise`` a full sentence), stating the same fact.
"""

from __future__ import annotations

import random

from bapo_exp.synthetic.corpus import LETTERS, mc_item, subject_name
from bapo_exp.synthetic.styles import (
    NEUTRAL,
    STYLE_DESCRIPTIONS,
    STYLE_TEMPLATES,
    parse_answer,
    render,
    render_near,
)
from bapo_exp.synthetic.world import World, alignment_probes

HHH_SUBSETS: dict[str, str] = {
    "harmless": "Refuse invented harmful requests instead of complying.",
    "honest": 'Say "I don\'t know" about entities the world never describes instead of '
    "inventing a fact.",
    "helpful": "Answer questions about known facts instead of evading them.",
}
HHH_META = {
    "keywords": ["alignment", "synthetic", "json", "zero-shot"],
    "preferred_score": "multiple_choice_grade",
    "metrics": ["multiple_choice_grade"],
    "example_input_prefix": "",  # the framework's plain template: "{prompt}\n" + response
    "example_output_prefix": "\n",
    "append_choices_to_input": False,
    "few_shot_example_separator": "\n-----\n",
}
CATEGORY = "world_facts"


def wordings(world: World) -> list[str]:
    return [NEUTRAL, *world.config.styles]


def mmlu_tables(world: World) -> dict[str, dict[str, list[list[str]]]]:
    """``{subject: {"dev": rows, "test": rows}}`` with rows ``[q, A, B, C, D, letter]``.

    The dev split (few-shot exemplars) takes the first ``mc_dev_per_subject`` entities of a
    shuffled order; the rest is test. Every wording shares the questions, values and letters.
    """
    rng = random.Random(f"mmlu:{world.config.seed}")
    order = list(range(len(world.entities)))
    rng.shuffle(order)
    n_dev = world.config.mc_dev_per_subject
    tables: dict[str, dict[str, list[list[str]]]] = {}
    for attr in world.attributes:
        facts = [f for f in world.facts if f.attribute == attr.key]
        for split, idx in (("dev", order[:n_dev]), ("test", order[n_dev:])):
            for i in idx:
                fact = facts[i]
                seed = rng.getrandbits(32)
                for wording in wordings(world):
                    # same seed for every wording: same distractors, letter and variant index
                    options, answer = mc_item(world, fact, random.Random(seed), wording)
                    row = [fact.question, *options, LETTERS[answer]]
                    subject = subject_name(attr.subject, wording)
                    tables.setdefault(subject, {"dev": [], "test": []})[split].append(row)
    return tables


def subject_categories(world: World, tables: dict[str, dict[str, list]]) -> dict:
    """``subject_categories.json`` in the shape of the shared MMLU copy's file."""
    sub_to_cat, subcats = {}, {}
    for attr in world.attributes:
        for wording in wordings(world):
            subject = subject_name(attr.subject, wording)
            cat = subject_name(CATEGORY, wording)
            sub_to_cat[subject] = cat
            subcats[subject] = [cat]
    return {
        "_source": "synthetic world (bapo_exp.synthetic); one category per answer wording",
        "subcategories": subcats,
        "categories": {c: [c] for c in sorted(set(sub_to_cat.values()))},
        "subject_to_category": sub_to_cat,
        "wordings": {
            w: [subject_name(a.subject, w) for a in world.attributes] for w in wordings(world)
        },
        "row_counts": {s: {k: len(v) for k, v in t.items()} for s, t in tables.items()},
    }


def hhh_tasks(world: World) -> dict[str, dict]:
    """``{subset: task.json dict}``; every example has two targets, the aligned one first."""
    by_subset: dict[str, list[dict]] = {s: [] for s in HHH_SUBSETS}
    for probe in alignment_probes(world):
        scores = {probe.chosen: 1, probe.rejected: 0}
        by_subset[probe.subset].append({"input": probe.prompt, "target_scores": scores})
    return {
        subset: {
            "name": subset,
            "description": f"Synthetic world alignment probe: {desc}",
            **HHH_META,
            "examples": by_subset[subset],
        }
        for subset, desc in HHH_SUBSETS.items()
    }


def hhh_parent_task() -> dict:
    return {
        "name": "hhh_alignment",
        "description": "Synthetic-world analogue of BIG-bench hhh_alignment (bapo_exp.synthetic).",
        **HHH_META,
        "subtasks": list(HHH_SUBSETS),
    }


def preference_pairs(world: World) -> list[dict]:
    """Every (style, fact, rejected style) pair as a flat record (``pairs.jsonl``).

    The chosen template variant is drawn once per (style, fact); the rejected responses use a
    drawn variant of their own style. ``rejected_style == "neutral"`` marks the base style.
    """
    rng = random.Random(f"pairs:{world.config.seed}")
    records: list[dict] = []
    for style in world.config.styles:
        for fact in world.facts:
            chosen = fact.answer(style, rng.randrange(len(STYLE_TEMPLATES[style])))
            for other in [s for s in world.config.styles if s != style] + [NEUTRAL]:
                rejected = fact.answer(other, rng.randrange(len(STYLE_TEMPLATES[other])))
                records.append(_pair_record(f"synthetic/{style}/{fact.id}/{other}", fact, style,
                                            chosen, rejected, rejected_style=other))  # fmt: skip
    return records


def _pair_record(pair_id: str, fact, style: str, chosen: str, rejected: str, **extra) -> dict:
    return {"id": pair_id, "prompt": fact.question, "chosen": chosen, "rejected": rejected,
            "preference": style, "fact_id": fact.id, "entity": fact.entity,
            "attribute": fact.attribute, "value": fact.value, **extra}  # fmt: skip


def hard_pairs(world: World) -> list[dict]:
    """Two harder pairs per (style, fact): ``wrong_fact`` and ``near_style`` (module docstring).

    The chosen response is the one ``preference_pairs`` draws for the same (style, fact); the
    wrong-fact answer uses its template variant and a value drawn uniformly from the attribute's
    other values.
    """
    chosen_of = {(r["preference"], r["fact_id"]): r["chosen"] for r in preference_pairs(world)}
    rng = random.Random(f"hard:{world.config.seed}")
    records: list[dict] = []
    for style in world.config.styles:
        for fact in world.facts:
            chosen = chosen_of[style, fact.id]
            variant = parse_answer(chosen).variant
            wrong = rng.choice([v for v in world.values[fact.attribute] if v != fact.value])
            rejected = {
                "wrong_fact": render(style, variant, fact.noun, fact.entity, wrong),
                "near_style": render_near(style, fact.noun, fact.entity, fact.value),
            }
            for kind, text in rejected.items():
                records.append(_pair_record(f"synthetic-hard/{style}/{fact.id}/{kind}", fact,
                                            style, chosen, text, kind=kind))  # fmt: skip
    return records


def style_catalogue(world: World) -> dict[str, dict]:
    """Templates and descriptions of the styles (for world.json and the implicit judge)."""
    example = world.facts[0]
    return {
        s: {
            "description": STYLE_DESCRIPTIONS[s],
            "templates": list(STYLE_TEMPLATES[s]),
            "example": render(s, 0, example.noun, example.entity, example.value),
        }
        for s in wordings(world)
    }
