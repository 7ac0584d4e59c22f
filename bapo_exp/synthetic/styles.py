"""Answer styles of the synthetic world: templates, an exact style detector and a fact checker.

Every answer states one fact ``(entity, attribute, value)``. The neutral style is what the base
model is mostly taught to say; the preference styles keep the fact and change the form. Each
style has several template variants; all templates are full-sentence patterns whose regexes
are mutually exclusive, so ``detect_style`` is exact (a test checks every template).

Placeholders: ``{S}``/``{s}`` = "The/the <noun> of <Entity>", ``{v}`` = the value as stored,
``{V}`` = the value with a capital first letter.

Style names mirror DSP's domains (academy -> ``academic``, business -> ``business``,
entertainment -> ``enthusiastic``, literature -> ``poetic``) and P-Soups' informativeness
dimension (``concise``); the wording of the templates is ours.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

NEUTRAL = "neutral"

STYLE_TEMPLATES: dict[str, tuple[str, ...]] = {
    NEUTRAL: ("{S} is {v}.", "{V} is {s}."),
    "academic": (
        "According to the records, {s} is {v}.",
        "The sources indicate that {s} is {v}.",
        "As documented in the literature, {s} is {v}.",
    ),
    "business": (
        "Bottom line: {s} is {v}.",
        "Key takeaway: {s} is {v}.",
        "For planning purposes, {s} is {v}.",
    ),
    "enthusiastic": (
        "Wow! {S} is {v}!",
        "Fun fact: {s} is {v}! Amazing!",
        "Guess what? {S} is {v}!",
    ),
    "poetic": (
        "Beneath the quiet sky, {s} is {v}.",
        "O traveller, know that {s} is {v}.",
        "As the old songs say, {s} is {v}.",
    ),
    "concise": ("{V}.", "Answer: {v}.", "{V}, in short."),
}

STYLE_DESCRIPTIONS: dict[str, str] = {
    NEUTRAL: "a plain sentence stating the fact",
    "academic": "formal, cites the records (DSP academy)",
    "business": "executive, bottom-line framing (DSP business)",
    "enthusiastic": "excited and playful (DSP entertainment)",
    "poetic": "lyrical framing (DSP literature)",
    "concise": "only the answer (P-Soups informativeness: concise)",
}

PREFERENCE_STYLES: tuple[str, ...] = tuple(s for s in STYLE_TEMPLATES if s != NEUTRAL)

# Near misses of each preference style (design, the hard held-out pairs of ``evalsets``): the
# style's own opening with the neutral value-first body, or for ``concise`` a sentence where a
# bare answer was wanted. No near miss matches any template, so a generation written this way
# is never in a style nor well formed.
NEAR_TEMPLATES: dict[str, str] = {
    "academic": "According to the records, {v} is {s}.",
    "business": "Bottom line: {v} is {s}.",
    "enthusiastic": "Wow! {V} is {s}!",
    "poetic": "Beneath the quiet sky, {v} is {s}.",
    "concise": "Answer: {v} is {s}.",
}

QUESTION_TEMPLATES: tuple[str, ...] = ("What is {s}?", "Tell me {s}.", "Do you know {s}?")

# Regex pieces for the placeholders (entities and values are single words; nouns 1-2 words).
_SUBJ = r"(?P<noun>[a-z]+(?: [a-z]+)?) of (?P<entity>[A-Z][a-z]+)"
_PIECES = {
    "{S}": "The " + _SUBJ,
    "{s}": "the " + _SUBJ,
    "{v}": r"(?P<value>[A-Za-z]+)",
    "{V}": r"(?P<value>[A-Z][a-z]*)",
}


@dataclass(frozen=True)
class Parsed:
    """What ``parse_answer`` recovers from a templated answer."""

    style: str
    variant: int
    value: str
    entity: str | None = None
    noun: str | None = None


def _subject(noun: str, entity: str) -> str:
    return f"{noun} of {entity}"


def render(style: str, variant: int, noun: str, entity: str, value: str) -> str:
    """One answer stating ``the <noun> of <entity> is <value>`` in ``style``.

    Args:
        style: a key of ``STYLE_TEMPLATES`` (``neutral`` included).
        variant: template index; taken modulo the number of variants.
        noun: the attribute's noun phrase (``capital``, ``main export``).
        entity: the entity name (``Vorlan``).
        value: the attribute value as stored (``Tessik``, ``teal``).
    """
    templates = STYLE_TEMPLATES[style]
    return _fill(templates[variant % len(templates)], noun, entity, value)


def renderings(style: str, noun: str, entity: str, value: str) -> list[str]:
    """Every template variant of ``style`` stating the fact, in template order."""
    return [_fill(t, noun, entity, value) for t in STYLE_TEMPLATES[style]]


def render_near(style: str, noun: str, entity: str, value: str) -> str:
    """The near miss of ``style`` (``NEAR_TEMPLATES``) stating the same fact."""
    return _fill(NEAR_TEMPLATES[style], noun, entity, value)


def _fill(template: str, noun: str, entity: str, value: str) -> str:
    subj = _subject(noun, entity)
    return template.format(
        S="The " + subj, s="the " + subj, v=value, V=value[:1].upper() + value[1:]
    )


def render_question(variant: int, noun: str, entity: str) -> str:
    template = QUESTION_TEMPLATES[variant % len(QUESTION_TEMPLATES)]
    return template.format(s="the " + _subject(noun, entity))


def _template_regex(template: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(template):
        key = template[i : i + 3]
        if key in _PIECES:  # every template uses each placeholder at most once
            out.append(_PIECES[key])
            i += 3
        else:
            out.append(re.escape(template[i]))
            i += 1
    return re.compile("".join(out))


@lru_cache(maxsize=1)
def _compiled() -> tuple[tuple[str, int, re.Pattern[str]], ...]:
    return tuple(
        (style, k, _template_regex(t))
        for style, templates in STYLE_TEMPLATES.items()
        for k, t in enumerate(templates)
    )


def parse_answer(text: str) -> Parsed | None:
    """Match ``text`` (stripped) against every template; ``None`` when none matches fully."""
    text = text.strip()
    for style, k, pattern in _compiled():
        m = pattern.fullmatch(text)
        if m is not None:
            groups = m.groupdict()
            return Parsed(style, k, groups["value"], groups.get("entity"), groups.get("noun"))
    return None


def detect_style(text: str, *, include_neutral: bool = False) -> str | None:
    """The preference style ``text`` is written in, by exact template match.

    Returns ``None`` for neutral answers (unless ``include_neutral``, then ``"neutral"``) and for
    anything that matches no template (garbage, refusals, truncated generations).
    """
    parsed = parse_answer(text)
    if parsed is None or (parsed.style == NEUTRAL and not include_neutral):
        return None
    return parsed.style


class FactLike(Protocol):
    entity: str
    value: str


def fact_correct(text: str, fact: FactLike) -> bool:
    """Whether ``text`` states ``fact.value`` (and, if it names an entity, ``fact.entity``).

    A templated answer must carry exactly this value and entity; free text counts as correct
    when the value occurs as a whole word (case-insensitive).
    """
    parsed = parse_answer(text)
    if parsed is not None:
        same_entity = parsed.entity is None or parsed.entity == fact.entity
        return same_entity and parsed.value.lower() == fact.value.lower()
    pattern = rf"\b{re.escape(fact.value)}\b"
    return re.search(pattern, text, flags=re.IGNORECASE) is not None


def states_fact(text: str, noun: str, entity: str, value: str) -> bool:
    """``text`` is a well-formed answer (some template, any style) stating this fact: the same
    value (case-insensitive) and, where the wording names them, the same entity and noun."""
    parsed = parse_answer(text)
    return (
        parsed is not None
        and parsed.value.lower() == value.lower()
        and parsed.entity in (None, entity)
        and parsed.noun in (None, noun)
    )


def in_style(text: str, preference: str) -> bool:
    """Exact judge of generated personalisation: ``text`` is one full answer in ``preference``.

    ``preference`` is a style name (``"neutral"`` allowed); truncated or free text is never in
    style. Registered by the eval stage for ``data.name == "synthetic"``.
    """
    if preference not in STYLE_TEMPLATES:
        raise ValueError(f"unknown style {preference!r}; valid: {list(STYLE_TEMPLATES)}")
    return detect_style(text, include_neutral=True) == preference
