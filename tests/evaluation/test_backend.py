"""eval.backend=bapo against lm-eval's HFLM, request by request, on the tiny random Llama.

Every HHH comparison (221), every ScienceQA problem here (194) and an MMLU subset (4 subjects x
10 questions, 0- and 5-shot; all 57 subjects would take minutes of HFLM in CI): each request's
log-likelihood within 1e-4 (or 2 float32 ulps of large sums) and the same is_greedy; lm-eval's
own per-item acc and acc_norm equal. A random model is never greedy on real text, so
``test_scorer_is_greedy_and_shared_inputs`` builds continuations the model does predict.
SmolLM2: tests/evaluation/test_backend_smollm2.py.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch

from bapo_exp.evaluation.backend import BapoLM, CheckedHFLM, check_lengths, make_backend
from tests.conftest import SHARED_DATA, compose_cfg, require_shared
from tests.evaluation.lm_requests import MMLU_SUBJECTS, build_requests, compare, item_metrics
from tests.modeling.conftest import tiny_cfg

CASES = {  # id: (suite, limit per task, shots, subjects)
    "hhh-all": ("hhh", None, 0, None),
    "mmlu-0shot": ("mmlu", 10, 0, MMLU_SUBJECTS),
    "mmlu-5shot": ("mmlu", 10, 5, MMLU_SUBJECTS),
    "scienceqa-all": ("scienceqa", None, 0, None),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("backend_cache")


def load(positions: int, cache):
    """A tiny Llama as the eval stage loads it (attention ``sdpa_unpadded``)."""
    from bapo_exp.modeling.load import load_model

    return load_model(tiny_cfg(max_position_embeddings=positions), cache)


@pytest.fixture(scope="module")
def tiny4k(cache):
    """Room for HHH's longest texts in the tiny byte-level BPE (up to ~2,300 tokens)."""
    return load(4096, cache)


def score(backend: str, model, tok, instances, **kw) -> list:
    lm = make_backend(backend, model, tok, batch_size=8, **kw)
    return lm.loglikelihood(instances, disable_tqdm=True)


def assert_same(ours: list, ref: list) -> dict:
    cmp = compare(ours, ref)
    assert not cmp["outside"], (cmp["max_abs_diff"], [(ours[i], ref[i]) for i in cmp["outside"]])
    assert not cmp["greedy_mismatch"]
    return cmp


@pytest.mark.integration
@pytest.mark.parametrize("case", list(CASES))
def test_every_request_and_item_matches_hflm(case, tiny4k):
    suite, limit, shots, subjects = CASES[case]
    require_shared(suite if suite != "hhh" else "hhh_alignment")
    model, tok = tiny4k
    instances, tasks = build_requests(SHARED_DATA, suite, limit=limit, num_fewshot=shots,
                                      subjects=subjects)  # fmt: skip
    ref = score("hf", model, tok, instances)
    ours = score("bapo", model, tok, instances, token_budget=1024)
    assert_same(ours, ref)
    ours_items, ref_items = (
        item_metrics(tasks, instances, ours),
        item_metrics(tasks, instances, ref),
    )
    assert ours_items == ref_items  # acc and acc_norm of every item
    if case == "hhh-all":
        assert len(ref_items) == 221
    assert model.config._attn_implementation == "sdpa_unpadded"  # switched back after scoring


def test_scorer_is_greedy_and_shared_inputs(tiny4k):
    """Token-level requests the model predicts greedily (is_greedy True) and not, sharing
    contexts, inputs and prefixes every way the scorer groups them, against HFLM's scorer."""
    from bapo_exp.modeling.continuations import SCORER_STATS, score_continuations
    from bapo_exp.modeling.greedy import greedy_batch
    from bapo_exp.modeling.prefix_share import common_prefix

    model, tok = tiny4k
    ctx_a = tok("Human: What is the capital of France?\nAssistant:")["input_ids"]
    ctx_b = tok("The quick brown fox")["input_ids"]
    g_a, g_b = greedy_batch(model, [ctx_a, ctx_b], max_new_tokens=6, eos_ids=set(), pad_id=0)
    other = next(t for t in range(5, len(tok)) if t not in g_a + g_b)  # never the greedy one
    reqs = [
        (ctx_a, g_a),  # greedy
        (ctx_a, g_a[:3]),  # its input is a prefix of the first's
        (ctx_a, [*g_a[:-1], other]),  # same input as the first, last token not greedy
        ([*ctx_a, *g_a[:2]], g_a[2:]),  # same input as the first, another context
        (ctx_a, [g_a[0]]),  # one-token continuations of one context
        (ctx_a, [other]),
        (ctx_b, g_b),
        (ctx_b, [g_b[0], other]),
    ]
    hf = make_backend("hf", model, tok)
    # HFLM on each request alone. Together, HFLM groups requests 0, 2 and 3 (equal
    # context + continuation[:-1]) and scores request 3 on the group's *first* 4 positions
    # instead of its last 4 (lm-eval 0.4.13 slices is_greedy from the end, the log-probs
    # from the start); ours reads the right rows.
    ref = [hf._loglikelihood_tokens([(("", ""), c, x)], disable_tqdm=True)[0] for c, x in reqs]
    SCORER_STATS.reset()
    ours = score_continuations(model, reqs, token_budget=4096)
    assert_same(ours, ref)
    assert [r[1] for r in ref] == [True, True, False, True, True, False, True, False]
    assert SCORER_STATS.forwards == 1
    # distinct inputs, prefixes shared: ctx_a (+ g_a[:2], + g_a[:5]), ctx_b (+ g_b[:1], + g_b[:5])
    shared = common_prefix(ctx_a, ctx_b)
    assert SCORER_STATS.body_tokens == len(ctx_a) + 5 + len(ctx_b) + 5 - shared
    for budget in (1, 16):  # every input alone / a few per forward: the same results
        assert_same(score_continuations(model, reqs, token_budget=budget), ref)


def test_prefix_layout_rows_positions_and_plan():
    from bapo_exp.modeling.prefix_share import prefix_layout

    lay = prefix_layout([[1, 2, 3, 4], [1, 2, 5], [1, 2, 5, 6], [7], [7]])
    assert lay.inputs["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7]]
    assert lay.inputs["position_ids"].tolist() == [[0, 1, 2, 3, 2, 3, 0]]
    assert [r.tolist() for r in lay.rows] == [[0, 1, 2, 3], [0, 1, 4], [0, 1, 4, 5], [6], [6]]
    assert lay.shared == 13 - 7
    spans = lay.spans  # the last sequence owns no token: no attention of its own
    assert [(s.start, s.stop, s.kv_rows.tolist()) for s in spans] == [
        (0, 4, [0, 1, 2, 3]), (4, 5, [0, 1, 4]), (5, 6, [0, 1, 4, 5]), (6, 7, [6])
    ]  # fmt: skip
    (bucket,) = lay.inputs["prefix_plan"]  # small spans: one padded SDPA call
    # sorted by size: sequences 0, 2, 1, 3
    assert bucket.q_index.tolist() == [[0, 1, 2, 3], [5, 0, 0, 0], [4, 0, 0, 0], [6, 0, 0, 0]]
    assert bucket.kv_index.tolist() == [[0, 1, 2, 3], [0, 1, 4, 5], [0, 1, 4, 0], [6, 0, 0, 0]]
    assert bucket.out_rows.tolist() == [0, 1, 2, 3, 5, 4, 6]
    assert torch.equal(bucket.mask[0, 0], torch.ones(4, 4, dtype=torch.bool).tril())
    assert bucket.mask[1, 0, 0].tolist() == [True, True, True, True]  # query at position 3
    assert bucket.mask[2, 0, 0].tolist() == [True, True, True, False]  # position 2; a pad key
    assert bucket.mask[3, 0, 0].tolist() == [True, False, False, False]
    assert bucket.mask[1, 0, 1:, 1:].sum() == 0  # padding queries see key 0 only


@pytest.mark.integration
def test_truncated_context_matches_hflm_and_is_logged(cache, caplog):
    """5-shot MMLU overflows a 512-position tiny model: both truncate from the left."""
    require_shared("mmlu")
    model, tok = load(512, cache)
    instances, _ = build_requests(SHARED_DATA, "mmlu", limit=3, num_fewshot=5,
                                  subjects=MMLU_SUBJECTS[:2])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="bapo_exp.evaluation.backend"):
        ours = score("bapo", model, tok, instances)
    assert_same(ours, score("hf", model, tok, instances))
    assert "24 of 24 requests: context truncated from the left" in caplog.text
    assert "max length 512" in caplog.text


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["bapo", "hf"])
def test_continuation_longer_than_the_window_is_a_clear_error(backend, cache):
    """What `debug=tiny method=none stages=[eval] eval.limit=8` hit as a bare AssertionError."""
    from bapo_exp.evaluation import evaluate

    require_shared("hhh_alignment")
    model, tok = load(512, cache)
    pattern = (
        r"task hhh_other item 7 \(choice \d\): the continuation does not fit the model's "
        r"window \(context \d+ tokens, continuation \d+ tokens, model max length 512\)"
    )
    with pytest.raises(ValueError, match=pattern):
        evaluate(model, tok, suites=["hhh"], data_root=SHARED_DATA, limit=8, batch_size=4,
                 backend=backend)  # fmt: skip


def test_check_lengths_names_the_item():
    inst = SimpleNamespace(task_name="mmlu_x", doc_id=3, idx=1)
    with pytest.raises(ValueError, match=r"task mmlu_x item 3 \(choice 1\): nothing to score"):
        check_lengths([inst], [(("a", ""), [5], [])], max_length=8)
    check_lengths([inst], [(("a", "b"), [1] * 20, [2] * 8)], max_length=8)  # truncated, fine
    with pytest.raises(ValueError, match="continuation 9 tokens, model max length 8"):
        check_lengths([inst], [(("a", "b"), [1], [2] * 9)], max_length=8)


@pytest.mark.integration
def test_lora_merged_and_checkpoints_match_hflm(cache, tmp_path):
    """The backend scores a LoRA policy, its merged model, and both saved as checkpoints
    (adapter folder, full folder) as the eval stage loads them."""
    from peft import LoraConfig, get_peft_model

    from bapo_exp.stages.evaluator import load_evaluated

    require_shared("hhh_alignment")
    instances, _ = build_requests(SHARED_DATA, "hhh", limit=2)
    model, tok = load(4096, cache)
    policy = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    lora = score("bapo", policy, tok, instances)
    assert_same(lora, score("hf", policy, tok, instances))
    with policy.disable_adapter():
        base = score("bapo", policy, tok, instances)
    assert abs(base[0][0] - lora[0][0]) > 1e-2  # the adapter is applied
    policy.save_pretrained(tmp_path / "adapter")
    model_cfg = tiny_cfg(max_position_embeddings=4096)
    cfg = SimpleNamespace(model=model_cfg, paths=SimpleNamespace(cache_dir=str(cache)))
    from_ckpt, tok2 = load_evaluated(cfg, str(tmp_path / "adapter"))
    assert_same(score("bapo", from_ckpt, tok2, instances), lora)
    merged = policy.merge_and_unload()
    assert_same(score("bapo", merged, tok, instances), lora)
    merged.save_pretrained(tmp_path / "full")
    tok.save_pretrained(tmp_path / "full")
    full, tok3 = load_evaluated(cfg, str(tmp_path / "full"))
    assert_same(score("bapo", full, tok3, instances), score("hf", full, tok3, instances))


@pytest.mark.integration
def test_eval_stage_switch_and_registry(tiny4k):
    from lm_eval.api.registry import get_model

    from bapo_exp.evaluation import evaluate, flatten

    assert compose_cfg(["method=none"]).eval.backend == "bapo"
    assert get_model("bapo") is BapoLM and get_model("bapo_hf") is CheckedHFLM
    with pytest.raises(ValueError, match="eval.backend='vllm'"):
        make_backend("vllm", None, None)
    require_shared("hhh_alignment")
    model, tok = tiny4k
    runs = {b: evaluate(model, tok, suites=["hhh"], data_root=SHARED_DATA, limit=3, batch_size=4,
                        backend=b) for b in ("bapo", "hf")}  # fmt: skip
    assert runs["bapo"]["hhh"]["settings"]["backend"] == "BapoLM"
    assert runs["hf"]["hhh"]["settings"]["backend"] == "CheckedHFLM"
    flat = {b: flatten(r) for b, r in runs.items()}
    keys = [k for k in flat["hf"] if k.endswith(("/acc", "/acc_norm"))]
    assert keys and all(flat["bapo"][k] == flat["hf"][k] for k in keys)


@pytest.mark.integration
def test_a_second_model_with_the_same_tokenizer_is_not_tokenized_again(tiny4k, cache, monkeypatch):
    """A warm worker's next cell: another model object and LM, the same tokenizer's encodings
    and plans reused; the log-likelihoods are its own model's (equal to HFLM's)."""
    from lm_eval.api.model import TemplateLM

    from bapo_exp.evaluation import backend

    require_shared("hhh_alignment")
    model, tok = tiny4k
    instances, _ = build_requests(SHARED_DATA, "hhh", limit=5, num_fewshot=0, subjects=None)
    encoded: list[str] = []
    encode = TemplateLM._encode_pair
    monkeypatch.setattr(TemplateLM, "_encode_pair",
                        lambda lm, c, x: encoded.append(c) or encode(lm, c, x))  # fmt: skip
    monkeypatch.setattr(backend, "_ENCODINGS", backend.OrderedDict())
    first = score("bapo", model, tok, instances)
    n = len(encoded)
    assert n == len({(i.args[0], i.args[1]) for i in instances})  # once per distinct pair
    other, other_tok = load(4096, cache)  # new objects: same weights and tokenizer files
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    second = score("bapo", other, other_tok, instances)
    assert len(encoded) == n  # no request tokenized again
    assert_same(second, score("hf", other, other_tok, instances))
    assert second != first
    # another tokenizer (BOS added): its own encodings
    other_tok.add_bos_token = True
    lm = make_backend("bapo", other, other_tok, batch_size=8)
    assert backend.tokenizer_key(lm) != backend.tokenizer_key(make_backend("bapo", model, tok))


def test_kept_makes_once_and_drops_the_least_recently_used():
    from collections import OrderedDict

    from bapo_exp.evaluation.backend import kept

    cache, made, dropped = OrderedDict(), [], []

    def make(name):
        return lambda: made.append(name) or name

    for key in ("a", "b", "a", "c"):  # "a" used again: "b" is the least recently used
        kept(cache, key, make(key), limit=2, drop=dropped.append)
    assert made == ["a", "b", "c"] and dropped == ["b"] and list(cache) == ["a", "c"]
