"""Switches that must not change the numbers: online vs precomputed reference log-probs
(METHODS §5, for LoRA and for full fine-tuning) and gradient checkpointing."""

from __future__ import annotations

from pathlib import Path

import pytest

from bapo_exp.run.main import run_stages
from bapo_exp.tracking.run_dir import RunDir
from tests.training.test_loop import make_cfg, rows

pytestmark = pytest.mark.integration

# A high constant learning rate: after a step the policy is far from the reference, so an online
# reference that followed the policy (instead of staying frozen) would show in every row.
MOVING = ["method=bapo", "train.steps=3", "train.lr=2e-3", "train.warmup_steps=0",
          "train.schedule=constant", "model.max_response_tokens=32",
          "model.max_prompt_tokens=32"]  # fmt: skip
KEYS = ["loss", "reward_margin", "rewards/chosen", "rewards/rejected", "probe/drift/base"]


def train_rows(tmp: Path, cache: Path, name: str, *overrides: str) -> list[dict]:
    run = RunDir(tmp / name)
    run_stages(make_cfg(tmp, cache, *MOVING, *overrides), run, {})
    return rows(run)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_online_reference_equals_precomputed(tmp_path: Path, tiny_cache: Path, finetune) -> None:
    """Full fine-tuning keeps a frozen copy of the initial model as its online reference."""
    ft = [f"model.finetune={finetune}"]
    cached = train_rows(tmp_path, tiny_cache, "cached", *ft)
    online = train_rows(tmp_path, tiny_cache, "online", *ft, "reference.precompute=false")
    assert online[0]["loss"] == pytest.approx(0.693147, abs=1e-4)  # policy == reference
    for a, b in zip(cached, online, strict=True):  # padding differs: float32 rounding only
        for k in KEYS:
            assert a[k] == pytest.approx(b[k], abs=1e-4), (a["step"], k)
    assert abs(online[-1]["reward_margin"]) > 5e-4  # moved: a reference that followed gives 0


def test_gradient_checkpointing_changes_nothing(tmp_path, tiny_cache, monkeypatch) -> None:
    import bapo_exp.modeling.load as load

    seen: list[bool] = []
    real = load.load_model

    def recording(*args, **kw):  # what the train stage's policy reports
        model, tok = real(*args, **kw)
        if kw.get("trainable"):
            seen.append(bool(model.is_activation_checkpointing))
        return model, tok

    monkeypatch.setattr(load, "load_model", recording)
    plain = train_rows(tmp_path, tiny_cache, "plain", "model.finetune=full")
    ckpt = train_rows(tmp_path, tiny_cache, "ckpt", "model.finetune=full",
                      "model.gradient_checkpointing=true")  # fmt: skip
    assert seen == [False, True]  # the switch reaches the trained model
    for a, b in zip(plain, ckpt, strict=True):
        for k in [*KEYS, "grad_norm"]:
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-7), (a["step"], k)
