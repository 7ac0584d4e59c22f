"""Loading, the policy (LoRA / full) and its main reference (PITFALLS #2)."""

from __future__ import annotations

import copy

import pytest
import torch

from bapo_exp.modeling.load import ensure_pad_token, load_model
from bapo_exp.modeling.policy import make_policy
from bapo_exp.modeling.reference_model import Reference
from bapo_exp.modeling.scoring import score_texts
from bapo_exp.modeling.tokenize import Tokenization
from tests.modeling.conftest import tiny_cfg


def perturb_lora(model, scale: float = 0.5) -> None:
    """Make the adapter non-zero (a fresh LoRA has B = 0, so the policy equals the base)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)


def scores(model, tok, pairs) -> torch.Tensor:
    return score_texts(model, Tokenization(tok), *pairs, batch_size=5)[0]


def test_load_model_modes_dtype_and_pad(model_cache):
    model, tok = load_model(tiny_cfg(), model_cache)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    assert tok.pad_token is not None and tok.padding_side == "right"  # untouched default
    cfg = tiny_cfg()
    cfg.dtype, cfg.gradient_checkpointing = "bfloat16", True
    trainable, _ = load_model(cfg, model_cache, trainable=True)
    assert trainable.training and trainable.is_activation_checkpointing
    assert next(trainable.parameters()).dtype == torch.bfloat16
    cfg.dtype = "float8"
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model(cfg, model_cache)


def test_missing_pad_token_becomes_eos(tiny):
    tok = copy.deepcopy(tiny[1])
    tok.pad_token = None
    assert ensure_pad_token(tok).pad_token == tok.eos_token


def test_lora_family_default_targets_and_trainable_params(tiny):
    model, _ = tiny
    cfg = tiny_cfg()
    cfg.lora.target_modules = []
    policy = make_policy(model, cfg, None)
    targets = set(policy.model.peft_config["default"].target_modules)
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj"}
    trainable = [n for n, p in policy.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_disabled_adapter_reference_equals_base_exactly(tiny, pairs):
    model, tok = tiny
    base = scores(model, tok, pairs)
    policy = make_policy(model, tiny_cfg(), None)
    perturb_lora(policy.model)
    assert not torch.allclose(scores(policy.model, tok, pairs), base)
    ref = policy.reference(tiny_cfg(), "unused", tok)
    assert torch.equal(scores(ref, tok, pairs), base)
    assert policy.model.training  # the reference call restored the training mode
    assert any(p.requires_grad for n, p in policy.model.named_parameters() if "lora_" in n)
    assert scores(policy.model, tok, pairs).ne(base).any()  # adapter enabled again


def test_full_finetune_reference_is_a_frozen_copy(tiny, pairs):
    model, tok = tiny
    base = scores(model, tok, pairs)
    cfg = tiny_cfg()
    cfg.finetune = "full"
    with pytest.raises(RuntimeError, match="frozen initial model"):
        make_policy(model, cfg, None).reference(cfg, "unused", tok)
    policy = make_policy(model, cfg, None, keep_frozen_reference=True)
    assert all(p.requires_grad for p in policy.model.parameters())
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.05)
    assert torch.equal(scores(policy.reference(cfg, "unused", tok), tok, pairs), base)


def test_continued_adapter_is_the_reference(tiny, pairs, model_cache, tmp_path):
    model, tok = tiny
    base = scores(model, tok, pairs)
    trained = make_policy(model, tiny_cfg(), None)
    perturb_lora(trained.model)
    trained.model.save_pretrained(tmp_path / "adapter")
    adapted = scores(trained.model, tok, pairs)

    fresh, _ = load_model(tiny_cfg(), model_cache, trainable=True)
    policy = make_policy(fresh, tiny_cfg(), str(tmp_path / "adapter"), keep_frozen_reference=True)
    assert not policy.reference_is_disabled_adapter
    perturb_lora(policy.model, scale=1.0)  # training moves the policy on
    online = scores(policy.reference(tiny_cfg(), model_cache, tok), tok, pairs)
    torch.testing.assert_close(online, adapted, atol=1e-5, rtol=0)
    assert not torch.allclose(online, base)
    # before training, the train stage's reference 0 is the policy with its adapter on
    again, _ = load_model(tiny_cfg(), model_cache, trainable=True)
    start = make_policy(again, tiny_cfg(), str(tmp_path / "adapter"))
    stage_ref = Reference(tiny_cfg(), model_cache, start.model, tok, adapter_on=True)
    torch.testing.assert_close(scores(stage_ref, tok, pairs), adapted, atol=1e-5, rtol=0)
