"""Tokenisation rules of METHODS §1 on the tiny tokenizer (SmolLM2's: test_smollm2.py)."""

from __future__ import annotations

import copy

import pytest
from tokenizers.processors import TemplateProcessing

from bapo_exp.modeling.tokenize import (
    Tokenization,
    TokenizerMismatchError,
    collate,
    same_tokenizer,
    truncation_counts,
)

CHAT = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}[assistant] {% endif %}"
)


def with_bos(tokenizer):
    """A copy of ``tokenizer`` whose post-processor adds BOS (as Llama tokenizers do)."""
    tok = copy.deepcopy(tokenizer)
    bos = tok.bos_token
    tok.backend_tokenizer.post_processor = TemplateProcessing(
        single=f"{bos} $A", special_tokens=[(bos, tok.bos_token_id)]
    )
    return tok


def test_roundtrip_masked_ids_give_response_plus_one_eos(tiny, pairs):
    _, tok = tiny
    tz = Tokenization(tok)
    for prompt, response in zip(*pairs, strict=True):
        seq = tz.encode(prompt, response)
        tz.check_roundtrip(seq, response)
        assert seq.ids[seq.n_prompt :].count(tok.eos_token_id) == 1


def test_prompt_and_response_tokenized_separately(tiny, pairs):
    _, tok = tiny
    tz = Tokenization(tok, prompt_template="Q: {prompt}\nA:")
    prompt, response = pairs[0][0], pairs[1][0]
    seq = tz.encode(prompt, response)
    assert seq.ids[: seq.n_prompt] == tok(f"Q: {prompt}\nA:")["input_ids"]
    assert seq.ids[seq.n_prompt :] == tok(response)["input_ids"] + [tok.eos_token_id]
    # a response already ending in EOS text still gets exactly one EOS
    assert tz.encode(prompt, response + tok.eos_token).ids == seq.ids


def test_truncation_prompt_left_response_right(tiny, pairs):
    _, tok = tiny
    full = Tokenization(tok)
    short = Tokenization(tok, max_prompt_tokens=4, max_response_tokens=5)
    seqs = short.encode_many(*pairs)
    for s, (p, r) in zip(seqs, zip(*pairs, strict=True), strict=True):
        f = full.encode(p, r)
        prompt_ids, response_ids = f.ids[: f.n_prompt], f.ids[f.n_prompt :]
        assert s.ids[: s.n_prompt] == prompt_ids[-4:]
        assert s.ids[s.n_prompt :] == response_ids[:5]
        assert s.prompt_truncated == (len(prompt_ids) > 4)
        assert s.response_truncated == (len(response_ids) > 5)
    counts = truncation_counts(seqs)
    assert counts == {"sequences": 5, "prompt_truncated": 5, "response_truncated": 5}
    assert truncation_counts(full.encode_many(*pairs))["response_truncated"] == 0


def test_bos_added_once_and_never_none(tiny, pairs):
    _, tok = tiny
    prompt, response = pairs[0][0], pairs[1][0]
    bos_tok = with_bos(tok)
    plain = Tokenization(bos_tok).encode(prompt, response)
    assert plain.ids[0] == tok.bos_token_id and plain.ids[1] != tok.bos_token_id
    bos_tok.chat_template = CHAT  # template writes BOS itself: no second one
    chat = Tokenization(bos_tok).encode(prompt, response)
    assert chat.ids[0] == tok.bos_token_id and chat.ids[1] != tok.bos_token_id
    Tokenization(bos_tok).check_roundtrip(chat, response)
    no_bos = copy.deepcopy(tok)  # Qwen-like: no BOS token at all
    no_bos.bos_token = None
    seq = Tokenization(no_bos).encode(prompt, response)
    assert all(isinstance(i, int) for i in seq.ids)


def test_fingerprint_tracks_everything_that_changes_ids(tiny, other_tiny):
    _, tok = tiny
    base = Tokenization(tok).fingerprint()
    assert Tokenization(copy.deepcopy(tok)).fingerprint() == base
    tok(["a", "a b c"], padding=True)  # mutates the backend's padding state: irrelevant
    assert Tokenization(tok).fingerprint() == base
    variants = [
        Tokenization(tok, max_prompt_tokens=128),
        Tokenization(tok, max_response_tokens=128),
        Tokenization(tok, prompt_template="{prompt}\n\n"),
        Tokenization(with_bos(tok)),
        Tokenization(other_tiny[1]),
    ]
    chat_tok = copy.deepcopy(tok)
    chat_tok.chat_template = CHAT
    variants += [Tokenization(chat_tok), Tokenization(chat_tok, use_chat_template=False)]
    prints = [v.fingerprint() for v in variants]
    assert len(set([base, *prints[:-1]])) == len(prints)  # every change changes it
    assert prints[-1] == base  # a chat template that is not used changes nothing


def test_same_tokenizer_and_id_sharing_refused(tiny, other_tiny, model_cache):
    from bapo_exp.modeling.load import load_tokenizer
    from tests.modeling.conftest import tiny_cfg

    tok, other = tiny[1], other_tiny[1]
    reloaded = load_tokenizer(tiny_cfg(), model_cache)
    assert same_tokenizer(tok, reloaded)
    assert not same_tokenizer(tok, other)
    tz, tz_same, tz_other = Tokenization(tok), Tokenization(reloaded), Tokenization(other)
    assert tz_same.share_ids_from(tz) is tz
    with pytest.raises(TokenizerMismatchError, match="Re-tokenise"):
        tz_other.share_ids_from(tz)
    assert tz_other.share_ids_from(tz, force=True) is tz


@pytest.mark.parametrize("side", ["left", "right"])
def test_collate_masks_and_positions(tiny, pairs, side):
    _, tok = tiny
    tz = Tokenization(tok)
    seqs = tz.encode_many(*pairs)
    batch = collate(seqs, tz.pad_id, side=side)
    width = max(len(s.ids) for s in seqs)
    assert batch["input_ids"].shape == (len(seqs), width)
    for i, s in enumerate(seqs):
        real = batch["attention_mask"][i].bool()
        assert batch["input_ids"][i][real].tolist() == s.ids
        assert batch["position_ids"][i][real].tolist() == list(range(len(s.ids)))
        resp = batch["loss_mask"][i].bool()
        assert batch["input_ids"][i][resp].tolist() == s.ids[s.n_prompt :]
        assert not (resp & ~real).any()
    pad_first = side == "left"
    shortest = min(range(len(seqs)), key=lambda i: len(seqs[i].ids))
    assert batch["attention_mask"][shortest][0 if pad_first else -1] == 0
