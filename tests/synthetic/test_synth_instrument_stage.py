"""The instrument through the stages (issue 25): a small MRPO run of the study's presets writes
the references' disagreement (reference stage) and the new eval keys at every evaluation point
(final and ``eval.at_steps``), through the eval stage's own functions."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bapo_exp.evaluation.items import select_items
from bapo_exp.run.main import run_stages
from bapo_exp.stages.common import load_data
from bapo_exp.tracking.run_dir import RunDir
from tests.conftest import compose_cfg

pytestmark = pytest.mark.integration

SMALL = [
    "data.world.n_entities=12", "data.world.n_attributes=3", "data.world.n_unknown_train=4",
    "data.world.n_unknown_test=4", "data.world.n_harmful_train=8", "data.world.n_harmful_test=6",
    "data.world.n_helpful_test=6", "model.tiny.vocab_size=300", "model.tiny.hidden_size=32",
    "model.tiny.num_layers=1", "model.tiny.intermediate_size=64", "model.micro.steps=3",
    "model.micro.kernels=native", "reference_substitute=tiny", "eval.suites=[]",
    "train.steps=2", "eval.at_steps=[1]", "data.n_train=4", "method.ctro_eps=0.5",
]  # fmt: skip
CURVE = ["gen/well_formed", "gen/style_share_well_formed", "gen/fact_correct",
         "personal/style_logodds", "personal/style_pref_prob"]  # fmt: skip
PAIRS = ["personal/hard_margin", "personal/hard_pref_acc"]  # final only: study's curve_pairs=false


def test_mrpo_run_logs_disagreement_and_instrument_keys(tmp_path: Path) -> None:
    cfg = OmegaConf.to_object(compose_cfg(
        ["experiment=study_mrpo", f"paths.cache_dir={tmp_path / 'cache'}", *SMALL]))  # fmt: skip
    assert cfg.train.batch_size == 4  # ${min:16,${data.n_train}}
    run = RunDir(tmp_path / "run")
    run_stages(cfg, run, {})
    ref = run.summary("reference")
    assert ref["n_references"] == 2 and ref["mrpo/ref_disagreement"] > 0
    assert math.isfinite(ref["mrpo/ref_disagreement_stderr"])
    data = load_data(cfg)
    prompts = {e.prompt for e in data.heldout}
    held_facts = len(prompts)  # one prompt per held-out fact
    assert cfg.eval.curve_pairs is False
    for summary, final in ((run.summary("eval"), True),
                           (run.read_json("eval/at_step/1/summary.json"), False)):  # fmt: skip
        keys = CURVE + PAIRS if final else CURVE
        assert all((key in summary) == final for key in PAIRS), summary.keys()
        for key in keys:
            assert key in summary and f"{key}_stderr" in summary, key
        # a share among the well-formed generations is undefined when there is none (3 steps
        # of pretraining rarely give one)
        none_formed = summary["gen/well_formed"] == 0
        assert math.isnan(summary["gen/style_share_well_formed"]) == none_formed
        assert all(math.isfinite(summary[k]) for k in keys if k != "gen/style_share_well_formed")
        if final:
            assert summary["personal/hard_n"] == 2 * held_facts  # two hard pairs per fact
        assert summary["gen/n"] == len(select_items(data.heldout, cfg.eval.gen_prompts))
        assert summary["gen/n"] == held_facts  # every held-out prompt is asked
