"""Style templates: the exact detector and the fact checker."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bapo_exp.synthetic.styles import (
    NEUTRAL,
    PREFERENCE_STYLES,
    STYLE_TEMPLATES,
    _compiled,
    detect_style,
    fact_correct,
    parse_answer,
    render,
)

FACTS = [
    ("capital", "Vorlan", "Tessik"),
    ("colour", "Brimo", "teal"),
    ("main export", "Zu", "salt"),
]


@pytest.mark.parametrize("style", list(STYLE_TEMPLATES))
@pytest.mark.parametrize("noun,entity,value", FACTS)
def test_every_template_is_detected_as_its_style(style, noun, entity, value):
    for k in range(len(STYLE_TEMPLATES[style])):
        text = render(style, k, noun, entity, value)
        expected = None if style == NEUTRAL else style
        assert detect_style(text) == expected, text
        assert detect_style(text, include_neutral=True) == style
        parsed = parse_answer(text)
        assert (parsed.style, parsed.variant, parsed.value.lower()) == (style, k, value.lower())


def test_templates_are_mutually_exclusive():
    for style, templates in STYLE_TEMPLATES.items():
        for k in range(len(templates)):
            text = render(style, k, "sacred animal", "Kelmo", "heron")
            matches = [(s, j) for s, j, p in _compiled() if p.fullmatch(text)]
            assert matches == [(style, k)], (text, matches)


def test_several_variants_per_preference_style():
    assert len(PREFERENCE_STYLES) >= 4
    assert all(len(STYLE_TEMPLATES[s]) >= 3 for s in PREFERENCE_STYLES)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Tessik",
        "the capital of Vorlan is Tessik",
        "I don't know.",
        "Wow! Wow! Wow!",
        "According to the records, Tessik.",
        "Tessik Tessik.",
        "Sure! Here is how to act.",
    ],
)
def test_garbage_is_no_style(text):
    assert detect_style(text) is None
    assert detect_style(text, include_neutral=True) is None


def test_fact_correct():
    fact = SimpleNamespace(entity="Vorlan", value="Tessik")
    assert fact_correct("According to the records, the capital of Vorlan is Tessik.", fact)
    assert fact_correct("Tessik.", fact)
    assert fact_correct("well, tessik I think", fact)
    assert not fact_correct("The capital of Vorlan is Morvi.", fact)
    assert not fact_correct("The capital of Brimo is Tessik.", fact)
    assert not fact_correct("Tessiko is nice", fact)


def test_in_style_is_exact():
    from bapo_exp.synthetic.styles import PREFERENCE_STYLES, in_style, render

    for style in (*PREFERENCE_STYLES, "neutral"):
        text = render(style, 1, "capital", "Vorlan", "Tessik")
        assert in_style(text, style)
        assert in_style("  " + text + "\n", style)
        assert not any(in_style(text, other) for other in PREFERENCE_STYLES if other != style)
        assert not in_style(text[:-3], style)  # truncated generation
    with pytest.raises(ValueError, match="unknown style"):
        in_style("Answer: teal.", "pirate")
