"""The study end to end on synthetic cells with known effects (issue 25): verdicts computed,
the report's plain summary, the protocol held to its constants, old tables still read."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis import protocol as P
from bapo_exp.analysis.claims import verdict_table
from bapo_exp.analysis.load import CELL_COLUMNS, read_cells
from bapo_exp.analysis.study_report import markdown
from tests.analysis.curves import row, study_cells
from tests.conftest import REPO

CHOICE = {
    "anchor_weight": 0.01,
    "logodds_range": None,
    "provisional": True,
    "anchor_reason": "test",
}
META = {"n_cells": 42, "wall": "1 min 2 s", "protocol_sha": "abc123def4567890"}


def mrpo_rows(gain: float, n_bases: int = 10, seed: int = 0) -> list[dict]:
    """MRPO, DPO and rescaled DPO at 4/8/16 pairs: MRPO's last hard margin is ``gain`` above
    both controls'."""
    gen = np.random.default_rng(seed)
    rows = []
    for b in range(n_bases):
        for n in P.SCARCE:
            base_margin = 1.0 + gen.normal(0, 0.2)
            for name, eps, extra in (
                ("mrpo", 0.1, gain),
                ("dpo", np.nan, 0.0),
                ("dpo_rescaled", 0.1, 0.0),
            ):
                for step, m in ((48, 0.5), (96, base_margin + extra + gen.normal(0, 0.01))):
                    rows.append(
                        row(
                            cell=f"{name}-{b}-{n}",
                            base=b,
                            method=name.upper(),
                            method_name=name,
                            ctro_eps=eps,
                            step=step,
                            n_pairs=n,
                            hard_margin=m,
                            x=0.5,
                            knowledge=0.8,
                            alignment=0.9,
                        )
                    )
    return rows


def cells(effect: float, gain: float) -> pd.DataFrame:
    df = pd.concat([study_cells(effect=effect), pd.DataFrame(mrpo_rows(gain))], ignore_index=True)
    return df[CELL_COLUMNS]


def test_real_effects_are_supported_and_none_inconclusive() -> None:
    real = verdict_table(cells(0.03, 0.2), CHOICE, n_boot=500).set_index("id")
    assert real.loc[["P1", "P2", "P3", "P4"], "verdict"].tolist() == ["supported"] * 4
    assert real.loc["P3", "lo"] < 0.2 < real.loc["P3", "hi"]
    assert real.loc["P5", "verdict"] == "insufficient" and real.loc["P5", "n_units"] == 0
    assert (real.loc[["P1", "P2"], "mde"] < 0.03).all()
    null = verdict_table(cells(0.0, 0.0), CHOICE, n_boot=500).set_index("id")
    assert set(null.loc[["P1", "P2", "P3", "P4"], "verdict"]) == {"inconclusive"}
    secondary = null[null["family"] == "secondary"]
    assert (secondary["ci"] == 0.95).all() and secondary["p_holm"].isna().all()


def test_report_opens_with_the_protocol_deviations_and_a_plain_summary_per_claim(
    tmp_path,
) -> None:
    c = cells(0.03, 0.2)
    (tmp_path / "deviations.md").write_text("- eps sweep cut for time (decided before the run)\n")
    from bapo_exp.analysis.study_report import analyse

    v, text = analyse(c, META, CHOICE, tmp_path, n_boot=300)
    assert text == analyse(c, META, CHOICE, tmp_path, n_boot=300)[1]  # deterministic
    assert text.startswith("**Protocol:** `docs/STUDY_PROTOCOL.md` at commit `abc123def456`")
    assert "- eps sweep cut for time (decided before the run)" in text
    assert "- the anchor weight and the regime were not chosen on calibration bases" in text
    for claim in ("C1", "C2", "C3"):
        assert f"- **{claim}." in text
    p1 = re.search(
        r"\*\*P1: supported\.\*\* .*?Found: .*? = \+0\.03\d .*?Smallest effect it "
        r"could have seen .*?: 0\.\d{3}",
        text,
    )
    assert p1, text[:3000]
    assert text.index("**What was found") < text.index("**Primary contrasts**")
    assert "**Secondary analyses (exploratory**" in text and "**Calibration**" in text


def test_deviations_are_found_in_the_data() -> None:
    from bapo_exp.analysis.study_tables import deviations

    c = cells(0.0, 0.0)
    c.loc[c["method_name"] == "bapo", "lr"] = 5e-4
    devs = deviations(
        c,
        {"protocol_sha": "a" * 40, "protocol_precedes_runs": False, "runs_git_sha": ["b" * 40]},
        {"lr": 1.5e-4, "horizon": 96},
        REPO / "nowhere",
    )
    text = "\n".join(devs)
    assert "does not precede the runs' code" in text and "0 calibration bases" in text
    assert "10 of 130 test runs ran another regime" in text
    assert "test bases" not in text  # 10 test bases: as planned


def test_failed_cells_are_refused_unless_partial_and_then_said(tmp_path) -> None:
    from bapo_exp.analysis.study import collect, main

    (tmp_path / "reports").mkdir()
    problem = {"status": "failed", "run_dir": str(tmp_path / "cell")}
    (tmp_path / "reports/study_dpo.json").write_text(json.dumps({"problems": [problem]}))
    with pytest.raises(ValueError, match="(?s)1 cell.*study_dpo: failed.*--partial"):
        collect(tmp_path)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2  # the CLI refuses too
    c = cells(0.0, 0.0)
    text = markdown(
        c, verdict_table(c, CHOICE, n_boot=50), META | {"unfinished_cells": 1}, CHOICE, []
    )
    assert text.startswith("**Partial:** 1 cell(s) failed or did not finish")


def test_the_demo_is_placed_in_the_study_by_fingerprint_and_range() -> None:
    from bapo_exp.analysis.readme import demo_in_study

    study = cells(0.0, 0.0)
    study["base_fingerprint"] = "sha256:base" + study["base"].astype(str)
    main = (study["n_pairs"] == 128) & (study["base"] == 0) & (study["beta"] == 0.1)
    demo = study[main & study["method"].isin(["base", "DPO"])].copy()
    assert "the study's base 0 (same weight fingerprint)" in demo_in_study(demo, study)
    assert "OUTSIDE" not in demo_in_study(demo, study)
    demo.loc[demo["method"] == "DPO", "knowledge"] = 2.0
    demo["base_fingerprint"] = "sha256:another"
    text = demo_in_study(demo, study)
    assert "none of the study's bases" in text and "knowledge 2.000 (OUTSIDE" in text


def test_an_old_table_is_read_with_the_new_columns() -> None:
    """A table written before the role, method, beta, anchor, eps, horizon and Brier columns
    existed (the committed study's without them) reads with each filled in."""
    new = read_cells(REPO / "results/study/cells.csv")
    later = ["role", "method_name", "beta", "anchor_weight", "ctro_eps", "horizon"]
    later += ["knowledge_brier", "alignment_brier", "knowledge_skill", "alignment_skill"]
    old = read_cells_from(new.drop(columns=later))
    assert list(old.columns) == CELL_COLUMNS
    assert (old["role"] == new["role"]).all() and {"test", "calibration"} == set(old["role"])
    assert old["beta"].eq(0.1).all()
    bapo = old[old["method"] == "BAPO lambda=0.01"]
    assert len(bapo) and (bapo["method_name"] == "bapo").all()
    assert (bapo["anchor_weight"] == 0.01).all()
    resc = old["method"].str.startswith("DPO resc")
    assert resc.any() and set(old.loc[resc, "method_name"]) == {"dpo_rescaled"}
    assert (old.loc[old["method"] == "MRPO eps=0.1", "ctro_eps"] == 0.1).all()
    assert old["knowledge_skill"].isna().all()  # scored before the Brier score existed
    from bapo_exp.analysis.claims import ACCURACY, METRICS, retention

    assert retention(old) == ACCURACY and retention(new) == METRICS
    brier = old.assign(knowledge_brier=0.1).drop(columns=["knowledge_skill"])
    assert (read_cells_from(brier)["knowledge_skill"] == 0.9).all()  # derived when missing


def read_cells_from(df: pd.DataFrame) -> pd.DataFrame:
    import io

    buf = io.StringIO()
    df.to_csv(buf, index=False)
    buf.seek(0)
    return read_cells(buf)


def test_the_protocol_states_the_constants_the_analysis_uses() -> None:
    text = " ".join((REPO / "docs/STUDY_PROTOCOL.md").read_text().split())
    said = [
        f"Calibration bases: {', '.join(map(str, P.CALIBRATION_BASES))}",
        f"Test bases: 0-{P.PLANNED_TEST_BASES - 1}",
        f"R = [{P.X_RANGE[0]:.2f}, {P.X_RANGE[1]:.2f}]",
        ", ".join(f"{lv:.2f}" for lv in P.REACH_LEVELS),
        f"[{P.CROSS_WINDOW[0]:g} T, {P.CROSS_WINDOW[1]:g} T]",
        f"at least {P.MIN_POINTS_BEFORE} evaluated steps",
        f"more than {P.COLLAPSE_DROP:.2f}",
        f"at least {P.MIN_WELL_FORMED:.2f}",
        f"fewer than {P.MIN_BASES} test bases",
        "lambda in " + ", ".join(f"{w:g}" for w in P.LAMBDAS),
        "beta (" + ", ".join(f"{b:g}" for b in P.CONTROL_BETAS) + ")",
        "mean over " + ", ".join(map(str, P.SCARCE)) + " training",
        "1/32, 1/16, 1/8, 3/16, 1/4, 3/8, 1/2, 5/8, 3/4, 7/8, 1",
        f"{P.N_BOOT} resamples",
        "at least two thirds",
        "less than half of R" if P.MIN_COVERAGE == 0.5 else "MIN_COVERAGE",
    ]
    missing = [s for s in said if s not in text]
    assert not missing, missing
    assert P.eval_steps(96) == [3, 6, 12, 18, 24, 36, 48, 60, 72, 84, 96]
    assert len(P.eval_steps(96)) >= P.MIN_EVAL_POINTS


def test_cells_are_collected_from_run_folders_with_the_instruments_keys(tmp_path) -> None:
    """One row per (cell, evaluated step); the role from the base; the new summary keys."""
    from bapo_exp.analysis.load import load_cells
    from tests.analysis.conftest import make_run

    def micro(method: dict, seed: int) -> dict:
        return {"name": "study", "seed": 0, "stages": ["reference", "train", "eval"],
                "method": method, "train": {"steps": 8, "lr": 1.5e-4},
                "data": {"name": "synthetic", "preferences": ["concise"], "n_train": 4},
                "model": {"name": "micro", "source": "micro", "micro": {"seed": seed,
                          "style_exposure": {"concise": 0.1}}}}  # fmt: skip

    summary = {"gen/style_share": 0.4, "gen/style_share_se": 0.03, "gen/well_formed": 0.9,
               "personal/style_logodds": -1.5, "personal/hard_margin": 0.7,
               "personal/hard_pref_acc": 0.6, "synthetic_knowledge/neutral/acc": 0.8,
               "synthetic_alignment/acc": 0.9, "synthetic_knowledge/neutral/brier": 0.25,
               "synthetic_alignment/brier": 0.125}  # fmt: skip
    mrpo = make_run(tmp_path, "mrpo", micro({"name": "mrpo", "beta": 0.1, "ctro_eps": 0.1}, 100),
                    summary | {"gen/style_share": 0.6}, metrics=[{"mrpo/clip_frac_1": 0.2},
                    {"mrpo/clip_frac_1": 0.4}])  # fmt: skip
    (mrpo / "train/summary.json").write_text(
        json.dumps({"total_steps": 8, "mrpo/ref_disagreement": 0.3})
    )
    (mrpo / "eval/at_step/4").mkdir(parents=True)
    (mrpo / "eval/at_step/4/summary.json").write_text(json.dumps(summary))
    make_run(tmp_path, "dpo", micro({"name": "dpo", "beta": 0.05}, 3), summary)
    table = load_cells(tmp_path)
    assert list(table.columns) == CELL_COLUMNS
    cells = table.set_index(["cell", "step"])
    m4, m8 = cells.loc[("mrpo", 4)], cells.loc[("mrpo", 8)]
    assert (m4["x"], m8["x"], m4["x_se"]) == (0.4, 0.6, 0.03)
    assert m8["role"] == "calibration" and m8["base"] == 100 and m8["method"] == "MRPO eps=0.1"
    assert m8["clip_frac"] == pytest.approx(0.3) and m8["ref_disagreement"] == 0.3
    assert (m8["well_formed"], m8["logodds"], m8["hard_margin"]) == (0.9, -1.5, 0.7)
    assert (m8["lr"], m8["horizon"], m8["exposure"], m8["n_pairs"]) == (1.5e-4, 8, 0.1, 4)
    assert (m8["knowledge_brier"], m8["knowledge_skill"]) == (0.25, 0.75)
    assert (m8["alignment_brier"], m8["alignment_skill"]) == (0.125, 0.875)
    d = cells.loc[("dpo", 0)]  # no train summary: the eval summary is step 0
    assert d["role"] == "test" and d["method"] == "DPO beta=0.05" and d["beta"] == 0.05


def test_the_protocol_recorded_is_the_one_the_runs_code_held(tmp_path, monkeypatch) -> None:
    """Protocol v1, the runs' code, then an amendment: the record names v1 as preceding the
    runs and the amendment as made after them (not "does not precede"), and the report says so."""
    import subprocess

    from bapo_exp.analysis import study
    from bapo_exp.analysis.study_tables import deviations

    def git(*args: str) -> str:
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@t", "PATH": os.environ["PATH"]}  # fmt: skip
        out = subprocess.run(["git", *args], cwd=tmp_path, env=env, check=True,
                             capture_output=True, text=True)  # fmt: skip
        return out.stdout.strip()

    def commit(path: str, text: str) -> str:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
        git("add", path)
        git("commit", "-q", "-m", path)
        return git("rev-parse", "HEAD")

    git("init", "-q")
    early = commit("code.py", "before any protocol")
    v1 = commit(study.PROTOCOL, "v1")
    runs = commit("code.py", "runs")
    amendment = commit(study.PROTOCOL, "v1 + R6")
    monkeypatch.setattr(study, "REPO", tmp_path)
    record = study.protocol_record([runs, f"{runs}+dirty"])
    assert record == {"protocol_sha": v1, "protocol_precedes_runs": True,
                      "protocol_amended_after_runs": [amendment]}  # fmt: skip
    text = "\n".join(deviations(cells(0.0, 0.0), record, {}, REPO / "nowhere"))
    assert f"amended after the runs' code (by {amendment[:12]}" in text
    assert "does not precede" not in text
    # runs made before any protocol: its newest commit, flagged
    before = study.protocol_record([early])
    assert before["protocol_sha"] == amendment and before["protocol_precedes_runs"] is False
