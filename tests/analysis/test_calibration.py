"""Calibration on calibration bases only (bapo_exp.analysis.calibration): the regime criterion,
the anchor-weight rule, the generated presets, and that no test base can move the choice."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.calibration import (
    choose,
    crossing,
    presets,
    regime_row,
    write,
)
from tests.analysis.curves import base_row, rise, run_rows
from tests.conftest import REPO

# lr -> speed of the style-share rise (t50 ~ 31 / speed steps), and whether it collapses
REGIMES = {
    (5e-5, 96): 0.3,
    (1e-4, 96): 0.7,
    (1.5e-4, 96): 1.0,
    (3e-4, 96): 2.0,
    (2e-4, 96): 1.2,
    (5e-5, 160): 0.3,
}
ANCHORS = {0.003: (0.01, 0.7), 0.01: (0.03, 0.7), 0.03: (0.06, 0.4), 0.1: (0.1, 0.2)}


def collapse(step: int) -> float:
    return -0.25 if step > 60 else 0.0


def calibration_cells(bases=(100, 101), knowledge_shift: float = 0.0) -> pd.DataFrame:
    """DPO at each candidate regime; at the 1e-4/96 regime also DPO beta 0.05/0.2 and BAPO at
    four anchor weights (effect, speed); lr 2e-4 peaks then collapses."""
    rows = []
    for b in bases:
        rows.append(base_row(b, 0.9 + knowledge_shift, 0.95))
        for seed in (0, 1):

            def dpo(x):
                return 0.9 + knowledge_shift - 0.3 * (x - 0.05), 0.95 - 0.1 * (x - 0.05)

            for (lr, h), speed in REGIMES.items():
                steps = P.eval_steps(h)
                rr = run_rows(
                    f"dpo-{b}-{seed}-{lr}-{h}",
                    b,
                    "DPO",
                    "dpo",
                    dpo,
                    speed,
                    steps=steps,
                    seed=seed,
                    lr=lr,
                    horizon=h,
                )
                if lr == 2e-4:
                    for r in rr:
                        r["x"] += collapse(r["step"])
                rows += rr
            regime = {"steps": P.eval_steps(96), "seed": seed, "lr": 1e-4, "horizon": 96}
            for beta, speed in ((0.05, 0.9), (0.2, 0.5)):
                rows += run_rows(
                    f"dpo-{b}-{seed}-b{beta}",
                    b,
                    f"DPO beta={beta}",
                    "dpo",
                    dpo,
                    speed,
                    beta=beta,
                    **regime,
                )
            for w, (effect, speed) in ANCHORS.items():

                def bapo(x, e=effect):
                    k, a = dpo(x)
                    return k + e, a + e

                rows += run_rows(
                    f"bapo-{b}-{seed}-{w}",
                    b,
                    f"BAPO lambda={w}",
                    "bapo",
                    bapo,
                    speed,
                    anchor_weight=w,
                    **regime,
                )
    return pd.DataFrame(rows)


def test_crossing_is_linear_between_evaluated_steps() -> None:
    steps, x = np.array([0, 10, 20]), np.array([0.1, 0.3, 0.7])
    assert crossing(steps, x, 0.5) == pytest.approx(15.0)
    assert crossing(steps, x, 0.05) == 0.0 and np.isnan(crossing(steps, x, 0.8))


def test_the_regime_criterion_item_by_item() -> None:
    steps = [0, *P.eval_steps(96)]
    curve = pd.DataFrame(
        {
            "step": steps,
            "x": [rise(s, 0.7) for s in steps],
            "n": 4,
            "well_formed": 1.0,
            "logodds": np.nan,
        }
    )
    ok = regime_row(curve, 96)
    assert ok["passes"] and 0.25 <= ok["t50_frac"] <= 0.75 and ok["points_before"] >= 4
    fast = regime_row(curve.assign(step=curve["step"] * 3), 96 * 3)
    assert fast["passes"]  # the same curve on a 3x longer horizon: same fraction
    early = regime_row(curve.assign(x=[rise(s, 2.0) for s in steps]), 96)
    assert not early["crosses_mid"] and not early["passes"]
    fall = curve.assign(x=[rise(s, 1.2) + collapse(s) for s in steps])
    assert not regime_row(fall, 96)["no_collapse"]
    degenerate = curve.assign(well_formed=[1.0] * 6 + [0.5] * 6)
    assert not regime_row(degenerate, 96)["no_collapse"]
    slow = regime_row(curve.assign(x=[rise(s, 0.3) for s in steps]), 96)
    assert not slow["reaches"]


def test_choice_on_calibration_bases() -> None:
    choice, regimes, anchors = choose(calibration_cells())
    assert (choice["lr"], choice["horizon"]) == (1e-4, 96)  # t50 / horizon closest to 0.5
    assert choice["eval_steps"] == P.eval_steps(96) and choice["calibration_bases"] == [100, 101]
    fails = regimes.set_index(["lr", "horizon"])["passes"]
    assert not fails[(3e-4, 96)] and not fails[(2e-4, 96)] and not fails[(5e-5, 96)]
    assert fails[(5e-5, 160)]  # slow, but passes on the longer horizon
    assert choice["anchor_weight"] == 0.01  # larger effects (0.03, 0.1) do not cover the range
    a = anchors.set_index("anchor_weight")
    assert a.loc[0.01, "covers_all"] and not a.loc[0.03, "covers_all"]
    assert a.loc[0.01, "gap_knowledge"] == pytest.approx(0.03, abs=0.01)
    assert choice["logodds_range"] is None and choice["het_range"] is None


def test_test_bases_never_change_the_choice() -> None:
    """Test-base rows with absurd values (a regime that passes better, an anchor weight with a
    huge gap that covers the range), even marked as calibration, change nothing."""
    cal = calibration_cells()
    absurd = calibration_cells(bases=(0, 1, 2), knowledge_shift=-5.0)
    absurd.loc[absurd["method_name"] == "bapo", "knowledge"] += 50.0
    absurd.loc[absurd["method_name"] == "bapo", "x"] = 0.99
    absurd["role"] = "calibration"
    first, r1, a1 = choose(cal)
    again, r2, a2 = choose(pd.concat([cal, absurd], ignore_index=True))
    assert first == again
    pd.testing.assert_frame_equal(r1, r2)
    pd.testing.assert_frame_equal(a1, a2)


def test_without_a_passing_regime_the_study_does_not_proceed() -> None:
    cells = calibration_cells()
    with pytest.raises(ValueError, match="no candidate regime passes"):
        choose(cells[cells["lr"].isin([3e-4, 2e-4]) | (cells["method_name"] == "none")])


def test_the_generated_presets_are_written_from_the_choice(tmp_path) -> None:
    choice, regimes, anchors = choose(calibration_cells())
    (tmp_path / "conf/experiment").mkdir(parents=True)
    (tmp_path / "conf/method").mkdir(parents=True)
    write(choice, regimes, anchors, tmp_path / "out", repo=tmp_path)
    regime = (tmp_path / "conf/experiment/study_regime.yaml").read_text()
    assert "  lr: 0.0001\n  steps: 96\n" in regime
    assert "at_steps: [3, 6, 12, 18, 24, 36, 48, 60, 72, 84]" in regime
    assert "weight: 0.01\n" in (tmp_path / "conf/method/bapo_study.yaml").read_text()
    assert json.loads((tmp_path / "out/choice.json").read_text()) == choice


def test_the_committed_presets_are_the_committed_choice() -> None:
    choice = json.loads((REPO / "results/study_calibration/choice.json").read_text())
    for rel, text in presets(choice).items():
        assert (REPO / rel).read_text() == text, f"{rel}: re-run the calibration"


def test_the_calibrate_command_writes_the_choice_and_leaves_conf_alone(tmp_path) -> None:
    from bapo_exp.analysis.study import main

    before = {p: p.read_text() for p in (REPO / "conf/experiment/study_regime.yaml",
                                          REPO / "conf/method/bapo_study.yaml")}  # fmt: skip
    calibration_cells().to_csv(tmp_path / "cells.csv", index=False)
    args = [str(tmp_path), "--calibrate", "--out", str(tmp_path / "out"), "--no-figures"]
    assert main([*args, "--no-presets", "--design", "n_pairs=128", "exposure=0.1"]) == 0
    choice = json.loads((tmp_path / "out/calibration/choice.json").read_text())
    assert (choice["lr"], choice["anchor_weight"]) == (1e-4, 0.01)
    assert choice["design"] == {"n_pairs": 128, "exposure": 0.1}
    assert {p: p.read_text() for p in before} == before
    assert main([*args, "--design", "colour=red"]) == 2  # a clear error, nothing written
