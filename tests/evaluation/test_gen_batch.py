"""Eval generations decode in batches sized for the model (``eval.gen_batch_size=null``)."""

from __future__ import annotations

from omegaconf import OmegaConf

from bapo_exp.stages.personal import gen_batch_size, gen_settings
from tests.conftest import compose_cfg


def test_null_batch_size_fills_the_token_budget() -> None:
    cfg = OmegaConf.to_object(compose_cfg(["experiment=study", "method=dpo"]))
    assert cfg.eval.gen_batch_size is None and cfg.eval.gen_token_budget == 16384
    # micro model: prompts up to 32 tokens, 24 new tokens -> 16384 // 56 prompts per batch
    assert gen_settings(cfg, is_base=False).batch_size == 292
    assert gen_batch_size(cfg, 256) == 16384 // (32 + 256)


def test_explicit_batch_size_wins() -> None:
    cfg = OmegaConf.to_object(compose_cfg(["experiment=study", "method=dpo",
                                           "eval.gen_batch_size=8"]))  # fmt: skip
    assert gen_settings(cfg, is_base=False).batch_size == 8
    real = OmegaConf.to_object(compose_cfg(["method=dpo"]))  # eval=default keeps its 32
    assert gen_settings(real, is_base=False).batch_size == 32
