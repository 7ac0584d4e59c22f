"""The study's claims end to end on synthetic cells with a known effect (issue 17): the verdicts
are computed, not typed. A real effect is supported, no effect is inconclusive."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis.claims import verdict_table, with_base, with_losses
from bapo_exp.analysis.study import COLUMNS
from bapo_exp.analysis.study_report import markdown

STEPS = (0, 10, 20, 40, 80)


def cells(effect: float, n_bases: int = 5, noise: float = 0.004, seed: int = 0) -> pd.DataFrame:
    """DPO and BAPO curves per base (x rises with the step, knowledge falls with x); BAPO's
    knowledge is DPO's + ``effect`` at the same x. MRPO and its controls at 16/64/256 pairs, and
    DPO at four exposures whose knowledge loss grows with the distance."""
    rng = np.random.default_rng(seed)
    rows = []

    def add(base, method, step, x, knowledge, **design):
        rows.append({c: np.nan for c in COLUMNS} | {
            "cell": f"{method}-{base}-{design}", "base": base, "seed": 0, "method": method,
            "step": step, "x": x, "knowledge": knowledge, "alignment": knowledge,
            "pref_acc": 0.5 + x / 2, "exposure": 0.1, "n_pairs": 128, "preferences": "concise",
            "k_prefs": 1, "distance": 1.0, **design,
        })  # fmt: skip

    for b in range(n_bases):
        start = 0.9 + rng.normal(0, 0.02)
        add(b, "base", 0, 0.0, start)
        for exposure, distance in ((0.0, 2.0), (0.01, 1.5), (0.3, 0.5)):
            add(b, "base", 0, 0.0, start, exposure=exposure)
            add(b, "DPO", 80, 0.6, start - 0.1 * distance + rng.normal(0, noise),
                exposure=exposure, distance=distance)  # fmt: skip
        for step in STEPS[1:]:
            x = step / 100
            mean = start - 0.125 * x  # loss 0.1 after step 80 (x = 0.8): distance 1.0 below
            add(b, "DPO", step, x, mean + rng.normal(0, noise), distance=1.0)
            add(b, "BAPO lambda=0.1", step, x, mean + rng.normal(0, noise) + effect)
            for n in (16, 64, 256):
                add(b, "DPO", step, x, mean + rng.normal(0, noise), n_pairs=n)
                add(b, "MRPO eps=0.1", step, x, mean + rng.normal(0, noise) + effect, n_pairs=n)
    return pd.DataFrame(rows, columns=COLUMNS)


def rows(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    return table[table["claim"].str.startswith(prefix)]


def test_a_real_effect_is_supported_and_none_is_inconclusive() -> None:
    real = verdict_table(cells(effect=0.05), n_boot=400)
    anchored = rows(real, "A BAPO lambda=0.1 knowledge")
    matched = anchored[anchored["compare"] == "matched x"]
    assert (matched["verdict"] == "supported").all(), matched[["at", "verdict"]]
    assert matched["lo"].max() < 0.05 < matched["hi"].min()  # the interval holds the truth
    assert (rows(real, "M MRPO eps=0.1 vs DPO knowledge")["verdict"] == "supported").all()
    null = verdict_table(cells(effect=0.0), n_boot=400)
    assert set(rows(null, "A BAPO lambda=0.1 knowledge")["verdict"]) <= {"inconclusive"}


def test_a_trend_with_heterogeneity_is_found() -> None:
    table = verdict_table(cells(effect=0.0), n_boot=400)
    trend = rows(table, "H exposure DPO knowledge_loss")
    trend = trend[trend["at"] == 80]
    assert trend["verdict"].tolist() == ["supported"] and trend["estimate"].iloc[0] == (
        pytest.approx(0.1, abs=0.02)  # loss = 0.1 per nat of distance, by construction
    )


def test_the_trend_at_matched_personalisation_is_interpolated() -> None:
    """DPO reaches x = 0.6 after 80 steps from the base at x = 0: at x = 0.5 it has lost 5/6 of
    its final loss, 0.1 per nat of distance, so the slope at matched x is 0.1 * 5/6."""
    table = verdict_table(cells(effect=0.0), n_boot=400)
    trend = rows(table, "H exposure DPO knowledge_loss")
    matched = trend[trend["at"] == 0.5]
    assert matched["verdict"].tolist() == ["supported"]
    assert matched["estimate"].iloc[0] == pytest.approx(0.1 * 5 / 6, abs=0.02)


def test_base_rows_start_every_curve_of_their_base() -> None:
    df = with_base(cells(0.0), {"exposure": 0.1, "n_pairs": 128, "preferences": "concise"})
    starts = df[df["step"] == 0]
    assert set(starts["method"]) == {"base"} and len(starts) == 5  # one per (base, seed)
    losses = with_losses(cells(0.0))
    dpo = losses[(losses["method"] == "DPO") & (losses["exposure"] == 0.0)]
    assert (dpo["knowledge_loss"] - 0.2).abs().max() < 0.05


def test_markdown_is_deterministic_and_names_the_verdicts() -> None:
    c = cells(effect=0.05)
    meta = {"n_cells": 42, "wall": "1 min 2 s"}
    first, second = (markdown(c, verdict_table(c, n_boot=300), meta) for _ in range(2))
    assert first == second
    assert "`make study` ran 42 cells on 5 micro base models" in first
    assert "| lambda=0.1 | knowledge | +0.05" in first and "supported 5/5" in first


def test_failed_cells_are_refused_unless_partial_and_then_said(tmp_path) -> None:
    import json

    from bapo_exp.analysis.study import collect, main

    (tmp_path / "reports").mkdir()
    problem = {"status": "failed", "run_dir": str(tmp_path / "cell")}
    (tmp_path / "reports/study_dpo.json").write_text(json.dumps({"problems": [problem]}))
    with pytest.raises(ValueError, match="(?s)1 cell.*study_dpo: failed.*--partial"):
        collect(tmp_path)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2  # the CLI refuses too
    c = cells(effect=0.0)
    text = markdown(
        c, verdict_table(c, n_boot=50), {"n_cells": 1, "wall": "", "unfinished_cells": 1}
    )
    assert text.startswith("**Partial:** 1 cell(s) failed or did not finish")


def test_the_demo_is_placed_in_the_study_by_fingerprint_and_range() -> None:
    from bapo_exp.analysis.readme import demo_in_study

    study = cells(effect=0.0)
    study["base_fingerprint"] = "sha256:base" + study["base"].astype(str)
    main = (study["exposure"] == 0.1) & (study["n_pairs"] == 128) & (study["base"] == 0)
    demo = study[main & study["method"].isin(["base", "DPO"])].copy()
    assert "the study's base 0 (same weight fingerprint)" in demo_in_study(demo, study)
    assert "OUTSIDE" not in demo_in_study(demo, study)  # base 0's own runs are in the range
    demo.loc[demo["method"] == "DPO", "knowledge"] = 2.0
    demo["base_fingerprint"] = "sha256:another"
    text = demo_in_study(demo, study)
    assert "none of the study's bases" in text and "knowledge 2.000 (OUTSIDE" in text
