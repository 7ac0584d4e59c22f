"""Micro base model: tokenizer sharing, document encoding, caching, scorers; slow: it learns."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from bapo_exp.synthetic import MicroTrainConfig, ensure_micro_base, micro_model_config
from bapo_exp.synthetic.check import (
    alignment_accuracy,
    generate,
    knowledge_accuracy,
    style_share,
    style_shares,
)
from bapo_exp.synthetic.corpus import build_corpus
from bapo_exp.synthetic.pretrain import encode_docs, ensure_micro_tokenizer, lr_at


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, make_config):
    cache = tmp_path_factory.mktemp("micro")
    world_cfg = make_config()
    model_cfg = micro_model_config(
        vocab_size=300, hidden_size=32, num_layers=1, intermediate_size=64
    )
    train_cfg = MicroTrainConfig(steps=3, batch_size=4, warmup_steps=1, progress=False)
    return cache, world_cfg, model_cfg, train_cfg


def test_tokenizer_shared_across_style_exposures(tmp_path, make_config):
    a = ensure_micro_tokenizer(make_config(), 300, tmp_path)
    b = ensure_micro_tokenizer(
        make_config(style_exposure={"poetic": 0.5}, qa_repeats=9), 300, tmp_path
    )
    c = ensure_micro_tokenizer(make_config(seed=5), 300, tmp_path)
    assert a == b and a != c


def test_encoded_documents_round_trip(tmp_path, world, world_cfg):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ensure_micro_tokenizer(world_cfg, 300, tmp_path))
    docs = build_corpus(world)
    for loss_on in ("all", "response"):
        for doc, (ids, mask) in zip(docs, encode_docs(docs, tok, 512, loss_on), strict=True):
            assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1
            assert tok.decode(ids[:-1]) == doc.prefix + doc.response
            trained = [t for t, m in zip(ids, mask, strict=True) if m]
            if loss_on == "response" and doc.prefix:
                assert tok.decode(trained) == doc.response + tok.eos_token
            else:
                assert trained == ids


def test_lr_schedule():
    cfg = MicroTrainConfig(steps=100, warmup_steps=10, lr=1.0, min_lr_frac=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0) and lr_at(100, cfg) == pytest.approx(0.1)


def test_micro_base_cached_and_deterministic(tiny_setup, tmp_path):
    cache, world_cfg, model_cfg, train_cfg = tiny_setup
    path = ensure_micro_base(world_cfg, model_cfg, train_cfg, cache)
    assert (path / "READY").exists() and (path / "config.json").exists()
    stamp = (path / "READY").stat().st_mtime_ns
    assert ensure_micro_base(world_cfg, model_cfg, train_cfg, cache) == path
    assert (path / "READY").stat().st_mtime_ns == stamp
    other = ensure_micro_base(world_cfg, model_cfg, train_cfg, tmp_path)  # same key, new dir
    assert other.name == path.name
    a, b = (json.loads((p / "micro.json").read_text())["log"]["curve"] for p in (path, other))
    assert a == b
    ref = ensure_micro_base(
        world_cfg,
        micro_model_config(
            vocab_size=300, hidden_size=32, num_layers=1, intermediate_size=64, seed=1
        ),
        train_cfg,
        cache,
    )
    assert ref != path
    tok_a = json.loads((path / "micro.json").read_text())["tokenizer"]
    assert json.loads((ref / "micro.json").read_text())["tokenizer"] == tok_a


def test_portable_kernels_pretrain_in_a_pinned_process(tiny_setup, tmp_path):
    """kernels=portable pretrains in a subprocess with PORTABLE_ENV (recorded in micro.json),
    deterministically; native runs here, with this CPU's own kernels (another cache key). On a
    CPU whose own kernels are wider than AVX2 (this one: AVX-512) the two bases differ."""
    import dataclasses

    import torch

    from bapo_exp.modeling.fingerprint import files_digest
    from bapo_exp.synthetic.pretrain import PORTABLE_ENV

    _, world_cfg, model_cfg, train_cfg = tiny_setup
    portable = dataclasses.replace(train_cfg, steps=20, kernels="portable")
    native = dataclasses.replace(portable, kernels="native")
    a = ensure_micro_base(world_cfg, model_cfg, portable, tmp_path / "a")
    b = ensure_micro_base(world_cfg, model_cfg, portable, tmp_path / "b")
    n = ensure_micro_base(world_cfg, model_cfg, native, tmp_path / "a")
    assert json.loads((a / "micro.json").read_text())["kernel_env"] == PORTABLE_ENV
    assert files_digest(sorted(a.glob("*.safetensors"))) == files_digest(
        sorted(b.glob("*.safetensors"))
    )
    assert n.name != a.name
    if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "DEFAULT"):
        assert files_digest(sorted(a.glob("*.safetensors"))) != files_digest(
            sorted(n.glob("*.safetensors"))
        )


def test_scorers_run_on_a_micro_model(tiny_setup, world_root):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, world_cfg, model_cfg, train_cfg = tiny_setup
    path = ensure_micro_base(world_cfg, model_cfg, train_cfg, cache)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    for mode in ("letter", "option"):
        acc = knowledge_accuracy(model, tok, world_root, mode=mode, wordings=["neutral", "poetic"])
        assert 0 <= acc["acc"] <= 1 and acc["n"] == acc["n/neutral"] + acc["n/poetic"]
    hhh = alignment_accuracy(model, tok, world_root)
    assert set(hhh) >= {"acc", "acc/harmless", "acc/honest", "acc/helpful"}
    gens = generate(model, tok, ["What is the capital of Vorlan?"] * 2, max_new_tokens=4)
    assert len(gens) == 2 and gens[0] == gens[1]


def test_style_share():
    gens = [
        "Wow! The capital of Vorlan is Tessik!",
        "Tessik.",
        "The capital of Vorlan is Tessik.",
        "blah",
    ]
    assert style_share(gens, "enthusiastic") == 0.25 and style_share(gens, "neutral") == 0.25
    shares = style_shares(gens, ["enthusiastic", "concise", "poetic"])
    assert shares["other"] == pytest.approx(0.25) and shares["poetic"] == 0.0


@pytest.mark.slow
def test_micro_base_learns_the_world(tmp_path):
    """Default world and micro model: knowledge and alignment far above chance (0.25 / 0.5)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.synthetic import WorldConfig, ensure_world, fact_correct
    from bapo_exp.synthetic.export import load_world_json

    world_cfg = WorldConfig()
    root = ensure_world(world_cfg, tmp_path)
    path = ensure_micro_base(world_cfg, micro_model_config(), MicroTrainConfig(), tmp_path)
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    knowledge = knowledge_accuracy(model, tok, root, mode="option")
    assert knowledge["acc/neutral"] >= 0.8 and knowledge["acc"] >= 0.8
    assert alignment_accuracy(model, tok, root)["acc"] >= 0.8
    facts = load_world_json(root)["facts"][::4]
    answers = generate(model, tok, [f["question"] for f in facts])
    correct = [fact_correct(a, SimpleNamespace(**f)) for a, f in zip(answers, facts, strict=True)]
    assert sum(correct) / len(facts) >= 0.8
    assert style_share(answers, "neutral") >= 0.6  # the base style dominates (style_exposure)


def test_bases_pretrained_together_equal_one_at_a_time(tiny_setup, tmp_path):
    """Three portable bases, two processes at once (one pretrains two bases in a row): the same
    weight files as each pretrained alone by ensure_micro_base (its own process)."""
    import dataclasses

    from bapo_exp.modeling.fingerprint import files_digest
    from bapo_exp.synthetic.pretrain import ensure_micro_bases

    _, world_cfg, model_cfg, train_cfg = tiny_setup
    portable = dataclasses.replace(train_cfg, steps=20, kernels="portable")
    specs = [(world_cfg, dataclasses.replace(model_cfg, seed=b),
              dataclasses.replace(portable, seed=b)) for b in range(3)]  # fmt: skip
    together = ensure_micro_bases([*specs, specs[0]], tmp_path / "together", processes=2)
    assert together[0] == together[3] and len(set(together)) == 3
    digest = [files_digest(sorted(p.glob("*.safetensors"))) for p in together[:3]]
    assert len(set(digest)) == 3  # three different bases
    # base 2 was the second base of its process, while the other process ran base 1
    alone = ensure_micro_base(*specs[2], tmp_path / "alone")
    assert files_digest(sorted(alone.glob("*.safetensors"))) == digest[2]
    assert ensure_micro_bases(specs, tmp_path / "together", processes=2) == together[:3]


def test_study_bases_are_found_from_the_grids() -> None:
    from bapo_exp.synthetic.bases import bases_of, grid

    cells = grid("study_mrpo", [])
    found = [s for c in cells for s in bases_of(c)[0]]
    assert len(cells) == 10  # model.micro.seed 0-9; n_train does not change bases
    seeds = sorted({(model.seed, train.seed) for _, model, train in found})
    assert seeds == [(b, b) for b in range(10)] + [(1000, 1000)]  # + the shared partner
