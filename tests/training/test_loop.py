"""The training loop on the tiny model: it learns, it resumes bitwise, it stops on NaN."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from bapo_exp.run.main import run_stages
from bapo_exp.tracking.run_dir import RunDir
from tests.conftest import compose_cfg, require_shared

pytestmark = pytest.mark.integration


def make_cfg(tmp: Path, cache: Path, *overrides: str):
    require_shared("dsp")
    dcfg = compose_cfg(
        ["debug=tiny", f"paths.cache_dir={cache}", "data.preferences=[academy]", "eval.suites=[]",
         "eval.personalisation=false", *overrides]
    )  # fmt: skip
    return OmegaConf.to_object(dcfg)


def rows(run: RunDir) -> list[dict]:
    return [json.loads(x) for x in (run.root / "train/metrics.jsonl").read_text().splitlines()]


OVERFIT = ["model.finetune=full", "data.n_train=8", "train.batch_size=8", "train.steps=12",
           "train.lr=2e-3", "train.warmup_steps=0", "train.schedule=constant",
           "model.max_response_tokens=32", "model.max_prompt_tokens=32"]  # fmt: skip


@pytest.mark.parametrize("method", ["dpo", "bapo", "mrpo"])
def test_overfit_eight_pairs(tmp_path: Path, tiny_cache: Path, method: str) -> None:
    extra = []
    if method == "mrpo":  # a second tiny reference with another seed (same tokenizer)
        extra = ["method.references=[{name: tiny2, source: tiny, pretrained: tiny, "
                 "use_chat_template: false, max_prompt_tokens: 32, max_response_tokens: 32, "
                 "tiny: {seed: 1}}]"]  # fmt: skip
    cfg = make_cfg(tmp_path, tiny_cache, f"method={method}", *OVERFIT, *extra)
    run = RunDir(tmp_path / "run")
    run_stages(cfg, run, {})
    history = rows(run)
    first, last = history[0], history[-1]
    assert abs(first["reward_margin"]) < 1e-3  # policy == main reference at step 0
    if method != "mrpo":  # MRPO's virtual reference mixes in another model: not ln 2
        assert first["loss"] == pytest.approx(0.693147, abs=1e-4)
    assert last["reward_margin"] > first["reward_margin"] + 1.0
    assert last["pref_acc"] == 1.0


def test_kill_and_resume_is_bitwise(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    args = ["method=bapo", "train.steps=6", "train.ckpt_every=2", "train.log_every=1",
            "model.max_response_tokens=32", "model.max_prompt_tokens=32"]  # fmt: skip
    full = RunDir(tmp_path / "full")
    run_stages(make_cfg(tmp_path, tiny_cache, *args), full, {})

    import bapo_exp.training.loop as loop

    real_step = loop.train_step

    def dying_step(p, cfg, step):
        if step == 5:  # after the step-4 checkpoint, before the end
            raise KeyboardInterrupt("simulated kill")
        return real_step(p, cfg, step)

    cut = RunDir(tmp_path / "cut")
    monkeypatch.setattr(loop, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_stages(make_cfg(tmp_path, tiny_cache, *args), cut, {})
    assert not cut.is_done("train") and (cut.root / "checkpoints/step_00000004").exists()
    monkeypatch.setattr(loop, "train_step", real_step)
    run_stages(make_cfg(tmp_path, tiny_cache, *args), cut, {})
    a, b = rows(full), rows(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]  # no duplicated rows after resume
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # bitwise on CPU
    assert a[-1]["grad_norm"] == b[-1]["grad_norm"]


def test_nan_loss_names_step_and_examples(tmp_path: Path, tiny_cache: Path, monkeypatch) -> None:
    import torch

    import bapo_exp.training.loop as loop
    from bapo_exp.training.loop import NonFiniteError

    real = loop.micro_step

    def poisoned(p, idx, scale):
        for prm in p.model.parameters():
            if prm.requires_grad:
                with torch.no_grad():
                    prm.fill_(float("nan"))
                break
        return real(p, idx, scale)

    monkeypatch.setattr(loop, "micro_step", poisoned)
    cfg = make_cfg(tmp_path, tiny_cache, "method=dpo", "train.steps=3", *OVERFIT[-2:])
    with pytest.raises(NonFiniteError, match=r"step 1: non-finite loss .*dsp/academy/q"):
        run_stages(cfg, RunDir(tmp_path / "nan"), {})  # steps count from 1, as in metrics.jsonl


@pytest.mark.parametrize("lr", [3e37, 1e38])
def test_an_overflowing_update_names_its_step_and_keeps_the_last_good_checkpoint(
    tmp_path, tiny_cache, lr
):
    """lr=3e37 makes the first update's parameters infinite; lr=1e38 overflows inside AdamW.
    Either way the error names the step in metrics.jsonl's numbering, no row or checkpoint of
    that step is written, and the last checkpoint holds finite weights."""
    from bapo_exp.training import checkpoint as ckpt
    from bapo_exp.training.loop import NonFiniteError

    cfg = make_cfg(tmp_path, tiny_cache, "method=dpo", "train.steps=6", "train.ckpt_every=1",
                   "train.warmup_steps=0", "train.schedule=constant", f"train.lr={lr}")  # fmt: skip
    run = RunDir(tmp_path / "overflow")
    with pytest.raises(NonFiniteError, match=r"step (\d+): ") as err:
        run_stages(cfg, run, {})
    failed = int(re.search(r"step (\d+)", str(err.value)).group(1))
    rows = [json.loads(x) for x in run.path("train/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, failed))
    saved = ckpt.list_checkpoints(run.root / "checkpoints")
    assert [int(p.name.split("_")[1]) for p in saved][-1:] == ([failed - 1] if failed > 1 else [])
    for path in saved:
        state = ckpt.load_state(path / "state.pt")
        assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_bapo_anchors_on_a_prompt_file(tmp_path: Path, tiny_cache: Path) -> None:
    """method.anchor.prompts=file (design, METHODS §3): the anchor holds the base responses to
    the file's prompts (cycled over the pairs), not to the training prompts; the drift probes
    still use each pair's own base response."""
    from bapo_exp.stages.common import anchor_prompts_of, load_data, reference_tables

    prompts = ["What is a lake?", "Name a colour.", "Say hello."]
    (tmp_path / "anchors.json").write_text(json.dumps(prompts))
    args = ["method=bapo", "train.steps=2", "method.anchor.weight=1.0",
            "model.max_response_tokens=16", "model.max_prompt_tokens=16"]  # fmt: skip
    cfg = make_cfg(tmp_path, tiny_cache, *args, "method.anchor.prompts=file",
                   f"method.anchor.prompt_file={tmp_path / 'anchors.json'}")  # fmt: skip
    data = load_data(cfg)
    anchors = anchor_prompts_of(cfg, len(data.train))
    assert anchors[:4] == [*prompts, prompts[0]]
    tables = reference_tables(cfg, data)
    assert tables.train.roles == ("chosen", "rejected", "base", "anchor")
    assert set(prompts) <= set(tables.base)  # y_b generated for the anchor prompts too
    assert not torch.equal(tables.train.role("anchor"), tables.train.role("base"))
    run_stages(cfg, RunDir(tmp_path / "file"), {})
    own = make_cfg(tmp_path, tiny_cache, *args)
    run_stages(own, RunDir(tmp_path / "train"), {})
    by_file, by_train = rows(RunDir(tmp_path / "file")), rows(RunDir(tmp_path / "train"))
    assert by_file[0]["loss"] == pytest.approx(by_train[0]["loss"])  # policy == ref at step 1
    assert by_file[0]["anchor/delta"] == by_train[0]["anchor/delta"] == 0.0
    assert by_file[1]["anchor/delta"] != by_train[1]["anchor/delta"]  # other sequences held
