"""The finer personalisation measures (evaluation.answers): values against hand-computed ones
on tiny cases, and degenerate text."""

from __future__ import annotations

import math

import pytest
import torch

from bapo_exp.data.types import PreferenceExample
from bapo_exp.evaluation.answers import form_metrics, hard_metrics, style_logodds
from bapo_exp.evaluation.items import GenItem
from bapo_exp.synthetic.plugin import answer_format

FMT = answer_format()


def item(entity: str, attribute: str, value: str, preference: str = "concise") -> GenItem:
    question = f"What is the {attribute} of {entity}?"
    source = {"entity": entity, "attribute": attribute, "value": value}
    pair = PreferenceExample(f"p/{entity}", question, f"{value.capitalize()}.", "x", preference,
                             source)  # fmt: skip
    return GenItem(f"{preference}/{entity}", preference, question, (pair,))


ITEMS = [item("Vorlan", "colour", "teal"), item("Dask", "capital", "Morvek"),
         item("Pellu", "colour", "amber"), item("Tirsa", "ruler", "Kanbo")]  # fmt: skip


def test_well_formed_and_fact_correct_on_degenerate_text():
    gens = [
        "Answer: teal.",  # concise, right fact
        "The capital of Dask is Tessik.",  # neutral, wrong value
        "Answer: amber. Answer: amber.",  # repeated: no template matches the whole text
        "The ruler of Tirsa is",  # truncated
    ]
    bases = ["The colour of Vorlan is teal.", "", "amber amber", "Kanbo is the ruler of Tirsa."]
    out, rows = form_metrics(FMT, ITEMS, gens, bases)
    assert out["gen/well_formed"] == 0.5 and out["gen/base_well_formed"] == 0.5
    se = math.sqrt(0.5 * 0.5 * 4 / 3 / 4)  # sample sd of (1,1,0,0) / sqrt(4)
    assert out["gen/well_formed_stderr"] == pytest.approx(se)
    assert out["gen/style_share_well_formed"] == 0.5  # 1 concise of 2 well-formed
    assert out["gen/fact_correct"] == 0.25  # only the first states its fact
    assert [r["gen_style"] for r in rows] == ["concise", "neutral", None, None]
    assert [r["gen_fact_correct"] for r in rows] == [True, False, False, False]


def test_fact_correct_checks_entity_and_attribute():
    it = [item("Vorlan", "colour", "teal")]
    for text, ok in [("The colour of Vorlan is teal.", True), ("Teal.", True),
                     ("The colour of Dask is teal.", False),
                     ("The main export of Vorlan is teal.", False),
                     ("Bottom line: the colour of Vorlan is TEAL.", True)]:  # fmt: skip
        assert form_metrics(FMT, it, [text], [text])[0]["gen/fact_correct"] == float(ok), text


def test_style_logodds_is_variant_marginal_against_hand_values():
    """Fake scores: every response's log-prob is set by hand; the measure is
    logsumexp(preferred renderings) - logsumexp(neutral renderings), per prompt."""
    preferred = FMT.answers(ITEMS[0].pairs[0], "concise")
    neutral = FMT.answers(ITEMS[0].pairs[0], "neutral")
    assert preferred == ["Teal.", "Answer: teal.", "Teal, in short."]
    assert neutral == ["The colour of Vorlan is teal.", "Teal is the colour of Vorlan."]
    table = dict(zip(preferred + neutral, [-2.0, -3.0, -4.0, -1.0, -5.0], strict=True))
    calls = []

    def score(prompts, responses):
        calls.append(len(responses))
        assert set(prompts) == {ITEMS[0].prompt}
        return [table[r] for r in responses]

    out = style_logodds(score, FMT, ITEMS[:1])
    expected = math.log(math.exp(-2) + math.exp(-3) + math.exp(-4)) - math.log(
        math.exp(-1) + math.exp(-5)
    )
    assert calls == [5]  # one scoring pass
    assert out["personal/style_logodds"] == pytest.approx(expected, abs=1e-12)
    assert math.isnan(out["personal/style_logodds_stderr"])  # n = 1
    assert out["personal/style_pref_prob"] == pytest.approx(1 / (1 + math.exp(-expected)))


def test_style_logodds_mean_and_stderr_over_prompts():
    shift = {it.prompt: d for it, d in zip(ITEMS, [0.0, 1.0, 2.0, 3.0], strict=True)}

    def score(prompts, responses):  # preferred renderings get +shift, so log-odds = shift + c
        pairs = zip(prompts, responses, strict=True)
        return [shift[p] * (FMT.style(r) == "concise") for p, r in pairs]

    out = style_logodds(score, FMT, ITEMS)
    c = math.log(3) - math.log(2)  # 3 concise vs 2 neutral renderings, all at log-prob 0
    assert out["personal/style_logodds"] == pytest.approx(1.5 + c)
    assert out["personal/style_logodds_stderr"] == pytest.approx(
        torch.tensor([0.0, 1, 2, 3], dtype=torch.float64).std().item() / 2
    )


def test_hard_metrics_overall_and_per_kind():
    metrics = {"reward_margin": [0.2, -0.1, 0.4, 0.0], "pref_acc": [1.0, 0.0, 1.0, 0.0]}
    out = hard_metrics(metrics, ["wrong_fact", "near_style", "wrong_fact", "near_style"])
    assert out["personal/hard_margin"] == pytest.approx(0.125)
    assert out["personal/hard_pref_acc"] == 0.5 and out["personal/hard_n"] == 4
    assert out["personal/hard/wrong_fact/margin"] == pytest.approx(0.3)
    assert out["personal/hard/near_style/pref_acc"] == 0.0
    assert "personal/hard_margin_stderr" in out
