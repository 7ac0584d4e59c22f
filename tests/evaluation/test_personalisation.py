"""Generated personalisation, piece by piece: items, rates, style path, verdicts, judge guards."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bapo_exp.data.types import PreferenceExample
from bapo_exp.evaluation import personalisation as P
from bapo_exp.evaluation.items import mean_se, put, select_items
from bapo_exp.evaluation.judge import ImplicitJudge, check_vocab, with_instruction
from bapo_exp.modeling.tokenize import TokenizerMismatchError


def ex(i: int, pref: str, prompt: str, chosen: str = "w", rejected: str = "l") -> PreferenceExample:
    return PreferenceExample(f"x/{pref}/{i}", prompt, chosen, rejected, pref)


def tagged(text: str, preference: str) -> bool:
    """An injected exact style check: a response is in style when it carries the tag."""
    return text.startswith(f"[{preference}]")


# ---------------------------------------------------------------- items and rates


def test_select_items_groups_pairs_and_keeps_order() -> None:
    held = [ex(0, "a", "p1", rejected="l0"), ex(1, "b", "p1"), ex(2, "a", "p1", rejected="l2"),
            ex(3, "a", "p2"), ex(4, "a", "p1", rejected="l4")]  # fmt: skip
    items = select_items(held, 2)
    assert [(it.preference, it.prompt) for it in items] == [("a", "p1"), ("b", "p1")]
    assert [p.id for p in items[0].pairs] == ["x/a/0", "x/a/2", "x/a/4"]  # all pairs of a group
    assert items[0].id != items[1].id and items[0].id.startswith("a/")
    assert select_items(held, 2)[0].id == items[0].id  # stable
    assert select_items(held, 0) == []


def test_select_items_takes_preferences_in_turn() -> None:
    held = [ex(i, "b", f"p{i}") for i in range(5)] + [ex(9, "a", "q")]
    items = select_items(held, 3)
    assert [(it.preference, it.prompt) for it in items] == [("a", "q"), ("b", "p0"), ("b", "p1")]


def test_mean_se_matches_the_sample_formula() -> None:
    values = [1.0, 0.0, 1.0, 1.0]
    mean, se = mean_se(values)
    var = sum((v - 0.75) ** 2 for v in values) / 3
    assert mean == 0.75 and se == pytest.approx(math.sqrt(var / 4))
    assert math.isnan(mean_se([1.0])[1]) and math.isnan(mean_se([])[0])


def test_duel_counts_ties_as_half() -> None:
    assert P.duel([2.0, 1.0, 1.0, 3.0], [1.0, 2.0, 1.0, 0.0], [False, False, False, True]) == [
        1.0, 0.0, 0.5, 0.5,  # the last: identical texts tie whatever the scores say
    ]  # fmt: skip


# ---------------------------------------------------------------- exact style path


def test_style_metrics_with_an_injected_check() -> None:
    items = select_items([ex(i, "a", f"p{i}") for i in range(4)], 4)
    gens = ["[a] yes", "[a] yes", "[a] yes", "plain"]
    bases = ["plain", "[a] once", "plain", "plain"]
    out, rows = P.style_metrics(tagged, items, gens, bases)
    assert out["gen/style_share"] == 0.75 and out["gen/base_style_share"] == 0.25
    assert out["gen/style_gain"] == 0.5
    assert out["gen/style_gain_stderr"] == pytest.approx(mean_se([1, 0, 1, 0])[1])
    assert rows[3] == {"gen_in_style": False, "base_in_style": False}


def test_style_checker_registry_and_override() -> None:
    assert P.style_checker("dsp") is None  # DSP defines no exact style
    P.STYLE_CHECKS.register("tagged", tagged)
    try:
        assert P.style_checker("dsp", "tagged") is tagged  # eval.style_check=tagged
    finally:
        P.STYLE_CHECKS.unregister("tagged")
    with pytest.raises(KeyError, match="unknown style check 'taged'.*available"):
        P.style_checker("dsp", "taged")
    synthetic = P.style_checker("synthetic")  # the synthetic world's plug-in registers it
    assert synthetic.__name__ == "in_style" and synthetic("Answer: Blue.", "concise") is True
    assert synthetic("Answer: Blue.", "poetic") is False


def test_style_check_errors_name_the_item() -> None:
    items = select_items([ex(0, "zz", "p")], 1)

    def strict(text: str, preference: str) -> bool:
        raise KeyError(preference)

    with pytest.raises(ValueError, match=f"item {items[0].id}"):
        P.style_metrics(strict, items, ["g"], ["b"])


# ---------------------------------------------------------------- verdicts


def stats(key: str, values: list[float]) -> dict:
    out: dict = {}
    put(out, key, values)
    return out


def test_verdict_prefers_exact_style_and_needs_a_clear_gain() -> None:
    up = stats("gen/style_gain", [1, 1, 1, 0, 1, 1, 1, 1])
    flat = stats("gen/style_gain", [1, -1, 0, 0, 1, -1, 0, 0])
    assert P.verdict(up, 1.0)["personal/generated_personalised"] is True
    assert P.verdict(flat, 1.0)["personal/generated_personalised"] is False
    assert P.verdict(up, 1.0)["personal/generated_evidence"] == "style"
    # an exact check wins over a judge that says otherwise
    judged = {**flat, "gen/judge_ok": True, **stats("gen/win_rate", [1.0] * 8)}
    assert P.verdict(judged, 1.0)["personal/generated_personalised"] is False


def test_verdict_uses_the_judge_only_when_it_passed() -> None:
    wins = stats("gen/win_rate", [1, 1, 1, 0.5, 1, 0, 1, 1])  # mean 0.81, se ~0.12
    ties = stats("gen/win_rate", [0.5] * 8)  # generations == y_b: not personalised
    assert P.verdict({**wins, "gen/judge_ok": True}, 1.0)["personal/generated_personalised"]
    assert (
        P.verdict({**wins, "gen/judge_ok": True}, 3.0)["personal/generated_personalised"] is False
    )
    assert (
        P.verdict({**ties, "gen/judge_ok": True}, 1.0)["personal/generated_personalised"] is False
    )
    failed = P.verdict({**wins, "gen/judge_ok": False}, 1.0)
    assert failed["personal/generated_personalised"] is None
    assert failed["personal/generated_evidence"] == "none"


def test_clears_needs_a_defined_stderr() -> None:
    assert P.clears(0.9, 0.1, 0.5, 1.0) is True and P.clears(0.55, 0.1, 0.5, 1.0) is False
    assert P.clears(1.0, math.nan, 0.5, 1.0) is None  # one item proves nothing


# ---------------------------------------------------------------- instructions and judge guards


def test_instructions_fall_back_to_personas() -> None:
    from bapo_exp.config import PersonaGenDataConfig

    cfg = PersonaGenDataConfig(name="persona_gen", personas={"P1A": "kid", "P1B": "expert"},
                     instructions={"P1B": "specialist", "P2A": " "})  # fmt: skip
    assert P.instructions_of(cfg) == {"P1A": "kid", "P1B": "specialist"}


def test_dsp_config_has_an_instruction_per_domain() -> None:
    from omegaconf import OmegaConf

    from bapo_exp.data.dsp import DOMAINS
    from tests.conftest import compose_cfg

    cfg = OmegaConf.to_object(compose_cfg(["method=dpo", "data=dsp"]))
    assert set(P.instructions_of(cfg.data)) == set(DOMAINS)


class FakeJudge:
    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def scores(self, prompts, responses, instructions):
        self.calls += 1
        import torch

        return torch.tensor([float(len(r)) for r in responses])  # longer = more in style


def test_judge_metrics_skip_preferences_without_instruction() -> None:
    held = [ex(0, "a", "p0", "long chosen", "l"), ex(1, "b", "p1", "long chosen", "l")]
    items = select_items(held, 2)
    judge = FakeJudge()
    out, rows = P.judge_metrics(judge, items, ["gen!", "gen!"], ["b", "b"], {"a": "do a"}, 1.0)
    assert out["gen/judge_n"] == 1 and out["gen/judge_n_pairs"] == 1 and rows[1] == {}
    assert rows[0] == {"judge_gen": 4.0, "judge_base": 1.0} and out["gen/win_rate"] == 1.0
    assert out["gen/a/win_rate"] == 1.0 and out["gen/a/judge_acc"] == 1.0  # "long chosen" > "l"
    assert "gen/b/win_rate" not in out
    none, rows = P.judge_metrics(judge, items, ["g", "g"], ["b", "b"], {}, 1.0)
    assert "no instruction" in none["gen/judge_skipped"] and judge.calls == 1  # no judge call
    assert "gen/judge_ok" not in none and P.verdict(none, 1.0)["personal/generated_evidence"] == (
        "none"
    )


def test_judge_check_fails_on_a_judge_that_prefers_rejected() -> None:
    held = [ex(i, "a", f"p{i}", "w", "much longer rejected") for i in range(6)]
    out, _ = P.judge_metrics(FakeJudge(), select_items(held, 6), ["g"] * 6, ["b"] * 6,
                             {"a": "do a"}, 1.0)  # fmt: skip
    assert out["gen/judge_acc"] == 0.0 and out["gen/judge_ok"] is False


def test_judge_template_must_name_both_fields() -> None:
    assert with_instruction("{prompt} {instruction}", "Q?", "Be brief.") == "Q? Be brief."
    with pytest.raises(ValueError, match="judge_template"):
        with_instruction("{prompt}", "Q?", "Be brief.")


def test_judge_refuses_a_tokenizer_its_model_cannot_embed(tiny_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.config import ModelConfig
    from bapo_exp.reference_tables import Reference

    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    check_vocab(model, tokenizer, "tiny")  # its own tokenizer: fine
    model.resize_token_embeddings(len(tokenizer) // 2)  # a model with a smaller vocabulary
    with pytest.raises(TokenizerMismatchError, match="judge 'mixed'.*embeds only"):
        check_vocab(model, tokenizer, "mixed")
    cfg = ModelConfig(name="tiny", source="tiny", pretrained="tiny", use_chat_template=False)
    ref = Reference(cfg, str(tmp_path), model, tokenizer)
    with pytest.raises(TokenizerMismatchError):
        ImplicitJudge(ref, str(tmp_path / "ref"), template="{prompt} {instruction}",
                      batch_size=2, name="mixed")  # fmt: skip
