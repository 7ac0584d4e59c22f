"""Schedules, the resumable data order and checkpoint rotation."""

from __future__ import annotations

import math

import pytest
import torch

from bapo_exp.training import checkpoint as ckpt
from bapo_exp.training.optim import lr_factor
from bapo_exp.training.sampler import StepSampler


def test_warmup_then_cosine_reaches_zero() -> None:
    f = [lr_factor(s, total=10, warmup=2, schedule="cosine") for s in range(11)]
    assert f[0] == pytest.approx(0.5) and f[1] == pytest.approx(1.0)
    assert f[2] == pytest.approx(1.0) and f[10] == pytest.approx(0.0, abs=1e-12)
    assert f[6] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(f[1:], f[2:], strict=False))


def test_linear_and_constant() -> None:
    assert lr_factor(6, total=10, warmup=2, schedule="linear") == pytest.approx(0.5)
    assert lr_factor(9, total=10, warmup=0, schedule="constant") == 1.0
    with pytest.raises(ValueError, match="cosine"):
        lr_factor(5, total=10, warmup=0, schedule="step")


def test_sampler_is_seeded_covers_each_epoch_and_shards_exactly() -> None:
    s = StepSampler(n_examples=10, global_batch=4, seed=3)
    assert s.steps_per_epoch == 2
    epoch0 = s.global_indices(0) + s.global_indices(1)
    assert len(set(epoch0)) == 8  # no repeats within an epoch
    assert StepSampler(10, 4, seed=3).global_indices(5) == s.global_indices(5)  # pure in step
    assert s.global_indices(2) != s.global_indices(0)  # reshuffled per epoch
    world = [s.micro_batches(1, rank=r, world=2, accum=2) for r in range(2)]
    merged = sorted(i for r in world for mb in r for i in mb)
    assert merged == sorted(s.global_indices(1))


def test_sampler_refuses_too_little_data() -> None:
    with pytest.raises(ValueError, match="cannot fill one global batch"):
        StepSampler(3, 4, seed=0)


def test_checkpoints_rotate_and_skip_unreadable(tmp_path) -> None:
    for step in (2, 4, 6):
        ckpt.save_checkpoint(tmp_path, step, {"step": step, "w": torch.ones(2) * step}, keep=2)
    kept = ckpt.list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step_00000004", "step_00000006"]
    (kept[-1] / "state.pt").write_bytes(b"truncated")  # a kill during a write
    path, state = ckpt.latest(tmp_path)
    assert path == kept[0] and state["step"] == 4 and torch.equal(state["w"], torch.full((2,), 4.0))
