"""The shared reference log-prob cache (METHODS §5): reuse, validation, online == cached."""

from __future__ import annotations

import torch

from bapo_exp.modeling.logp_cache import ReferenceCache, cached_logps, model_fingerprint
from bapo_exp.modeling.policy import make_policy
from bapo_exp.modeling.reference_model import Reference
from bapo_exp.modeling.scoring import FORWARD_COUNTER, forward_logps
from bapo_exp.modeling.tokenize import Tokenization, collate
from tests.modeling.conftest import tiny_cfg
from tests.modeling.test_load import perturb_lora


def make_cache(root, model, tz, **kw) -> ReferenceCache:
    return ReferenceCache(root, model_fingerprint(model, "tiny"), tz.fingerprint(), **kw)


def test_second_scoring_does_zero_forward_passes(tiny, pairs, tmp_path):
    model, tok = tiny
    tz = Tokenization(tok)
    prompts, responses = pairs
    prompts, responses = prompts + prompts[:2], responses + responses[:2]  # duplicates
    first = cached_logps(model, tz, prompts, responses, make_cache(tmp_path, model, tz), 2)
    assert first[2] == 5  # distinct pairs scored once each
    before = FORWARD_COUNTER.passes
    for cache in (make_cache(tmp_path, model, tz), make_cache(tmp_path, model, tz)):  # new runs
        again = cached_logps(model, tz, prompts, responses, cache, 2)
        assert again[2] == 0 and FORWARD_COUNTER.passes == before
        assert torch.equal(again[0], first[0]) and torch.equal(again[1], first[1])


def test_corrupted_entries_are_detected_and_recomputed(tiny, pairs, tmp_path):
    model, tok = tiny
    tz = Tokenization(tok)
    logps, n_tokens, _ = cached_logps(model, tz, *pairs, make_cache(tmp_path, model, tz), 8)
    shards = sorted(tmp_path.glob("*/*.jsonl"))
    assert len(shards) >= 2
    text = shards[0].read_text()  # a silently changed value: the checksum no longer matches
    shards[0].write_text(text.replace('"lp": -', '"lp": -1', 1))
    shards[1].write_bytes(shards[1].read_bytes()[:-9])  # a torn write
    cache = make_cache(tmp_path, model, tz)
    found = cache.get_many(*pairs)
    assert sum(v is None for v in found) == 2 and cache.n_invalid == 2
    before = FORWARD_COUNTER.passes
    again, n_again, n_computed = cached_logps(model, tz, *pairs, cache, 8)
    assert n_computed == 2 and FORWARD_COUNTER.passes == before + 1
    assert torch.equal(again, logps) and torch.equal(n_again, n_tokens)
    clean = make_cache(tmp_path, model, tz)
    assert all(v is not None for v in clean.get_many(*pairs)) and clean.n_invalid == 0


def test_anything_that_changes_numbers_changes_the_key(tiny, pairs, tmp_path):
    model, tok = tiny
    tz = Tokenization(tok)
    cached_logps(model, tz, *pairs, make_cache(tmp_path, model, tz), 8)
    short = Tokenization(tok, max_response_tokens=4)
    assert all(v is None for v in make_cache(tmp_path, model, short).get_many(*pairs))
    mean = make_cache(tmp_path, model, tz, reduce="mean")
    assert all(v is None for v in mean.get_many(*pairs))
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    assert all(v is None for v in make_cache(tmp_path, model, tz).get_many(*pairs))


def test_online_and_precomputed_reference_agree(tiny, pairs, model_cache, tmp_path):
    model, tok = tiny
    tz = Tokenization(tok)
    stage_ref = Reference(tiny_cfg(), model_cache).load()  # a plain base model, loaded
    cache = ReferenceCache(tmp_path, stage_ref.fingerprint(), tz.fingerprint())
    precomputed, _, _ = cached_logps(stage_ref, tz, *pairs, cache, 2)

    policy = make_policy(model, tiny_cfg(), None)
    perturb_lora(policy.model)
    batch = collate(tz.encode_many(*pairs), tz.pad_id, side="right")
    ref = policy.reference(tiny_cfg(), model_cache, tok)
    assert ref.fingerprint() == stage_ref.fingerprint()  # same cache entries
    online, _ = forward_logps(ref, batch)
    torch.testing.assert_close(online, precomputed, atol=1e-5, rtol=0)
    assert model_fingerprint(policy.model, "tiny") != stage_ref.fingerprint()
