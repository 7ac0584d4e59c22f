"""Generated personalisation through the eval stage on debug=tiny (DSP held-out prompts).

A trained LoRA policy (method=dpo) and the untrained base (method=none) both get
``eval/generations.jsonl`` and the ``gen/*`` metrics; the base model's are the frontier
baseline: its generations are y_b, so it wins exactly half of its duels.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bapo_exp.evaluation.items import select_items
from bapo_exp.evaluation.personalisation import STYLE_CHECKS
from bapo_exp.run.main import run_stages
from bapo_exp.stages.common import load_data
from bapo_exp.tracking.run_dir import RunDir
from tests.conftest import compose_cfg, require_shared

pytestmark = pytest.mark.integration

FIELDS = {"id", "preference", "prompt", "generation", "base", "chosen", "rejected", "pair_ids"}
RATES = ["gen/identical_to_base", "gen/style_share", "gen/base_style_share", "gen/style_gain",
         "gen/judge_score", "gen/base_judge_score", "gen/win_rate", "gen/judge_acc"]  # fmt: skip


def has_vowel(text: str, preference: str) -> bool:
    """Injected style check (the tiny model's answers are noise: any rule will do)."""
    return any(c in "aeiou" for c in text)


STYLE_CHECKS.register("has_vowel", has_vowel)  # eval.style_check=has_vowel (in-process runs)


def make_cfg(cache: Path, *overrides: str):
    require_shared("dsp")
    dcfg = compose_cfg(
        ["debug=tiny", f"paths.cache_dir={cache}", "data.preferences=[academy,business]",
         "data.n_train=4", "data.n_heldout=6", "train.steps=2", "eval.suites=[]",
         "eval.gen_prompts=3", "model.max_prompt_tokens=24", "model.max_response_tokens=8",
         "eval.style_check=has_vowel", "eval.judge=tiny", *overrides]
    )  # fmt: skip
    return OmegaConf.to_object(dcfg)


def read_rows(run: RunDir) -> list[dict]:
    return [json.loads(x) for x in (run.root / "eval/generations.jsonl").read_text().splitlines()]


def check_common(cfg, run: RunDir) -> tuple[list[dict], dict]:
    rows, summary = read_rows(run), run.summary("eval")
    items = select_items(load_data(cfg).heldout, cfg.eval.gen_prompts)
    assert [r["id"] for r in rows] == [it.id for it in items] and len(rows) == 3
    for row, it in zip(rows, items, strict=True):
        assert FIELDS | {"judge_gen", "judge_base", "gen_in_style", "base_in_style"} <= set(row)
        assert row["prompt"] == it.prompt and row["preference"] == it.preference
        assert row["chosen"] == list(dict.fromkeys(p.chosen for p in it.pairs))
        assert row["pair_ids"] == [p.id for p in it.pairs]
        assert row["gen_in_style"] == has_vowel(row["generation"], it.preference)
    for key in RATES:
        assert f"{key}_stderr" in summary, key
    share = sum(r["gen_in_style"] for r in rows) / len(rows)
    assert summary["gen/style_share"] == pytest.approx(share)
    assert summary["gen/judge_n_pairs"] == sum(len(it.pairs) for it in items)
    assert summary["personal/generated_evidence"] == "style"  # exact check beats the judge
    assert isinstance(summary["personal/generated_personalised"], bool | None)
    assert isinstance(summary["gen/judge_ok"], bool)
    return rows, summary


def test_trained_policy_generations(tmp_path: Path, tiny_cache: Path) -> None:
    cfg = make_cfg(tiny_cache, "method=dpo")
    run = RunDir(tmp_path / "dpo")
    run_stages(cfg, run, {})
    _, summary = check_common(cfg, run)
    assert summary["ckpt_path"] != "base"
    assert {"personal/pref_acc", "personal/pref_acc_stderr"} <= set(summary)
    assert isinstance(summary["personal/likelihood_only"], bool)


def test_exact_check_keeps_the_judge_out_of_the_way(tmp_path: Path, tiny_cache: Path) -> None:
    """Without eval.judge naming a model, an exact style check means no judge: no scoring, no
    'judge FAILED' warning in every cell."""
    cfg = make_cfg(tiny_cache, "method=none", "stages=[eval]", "eval.judge=null")
    run = RunDir(tmp_path / "nojudge")
    run_stages(cfg, run, {})
    summary = run.summary("eval")
    assert "exact style check" in summary["gen/judge_skipped"]
    assert "gen/judge_ok" not in summary and "gen/style_share" in summary
    assert summary["personal/generated_evidence"] == "style"


def test_base_model_reports_the_baseline(tmp_path: Path, tiny_cache: Path) -> None:
    cfg = make_cfg(tiny_cache, "method=none", "stages=[eval]")
    run = RunDir(tmp_path / "none")
    run_stages(cfg, run, {})
    rows, summary = check_common(cfg, run)
    assert summary["ckpt_path"] == "base" and "personal/pref_acc" not in summary
    assert all(r["generation"] == r["base"] for r in rows)
    assert summary["gen/win_rate"] == 0.5 and summary["gen/style_gain"] == 0.0
    assert summary["personal/generated_personalised"] in (False, None)
