"""``bapo_exp.study``: the test grids run only on a committed, calibrated choice whose presets
are what it renders; ``choose`` is the one step that writes tracked files (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path

from bapo_exp.analysis.calibration import presets
from bapo_exp.study import CHOSEN, check_choice, main, regime_overrides, write_choice

CHOICE = {"lr": 1.5e-4, "horizon": 96, "eval_steps": [3, 6, 12, 24, 48, 96], "anchor_weight": 0.03,
          "calibration_bases": [100, 101]}  # fmt: skip


def calibrated(tmp_path: Path, **change) -> Path:
    source = tmp_path / "runs/study/results/calibration"
    source.mkdir(parents=True)
    (source / "choice.json").write_text(json.dumps({**CHOICE, **change}))
    (source / "regime.csv").write_text("lr\n0.00015\n")
    for rel in presets(CHOICE):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# the old preset\n")
    return source


def test_choose_copies_the_calibration_and_renders_the_presets(tmp_path: Path) -> None:
    source = calibrated(tmp_path)
    assert check_choice(tmp_path).endswith("run `make study-calibrate`, then `make study-choose`")
    write_choice(source, tmp_path)
    assert (tmp_path / CHOSEN / "regime.csv").read_text() == "lr\n0.00015\n"
    regime = (tmp_path / "conf/experiment/study_regime.yaml").read_text()
    assert "lr: 0.00015" in regime and "steps: 96" in regime and "[3, 6, 12, 24, 48]" in regime
    assert "weight: 0.03" in (tmp_path / "conf/method/bapo_study.yaml").read_text()
    assert check_choice(tmp_path) is None  # ready for the test grids


def test_the_test_grids_refuse_a_stale_or_provisional_choice(tmp_path: Path) -> None:
    write_choice(calibrated(tmp_path), tmp_path)
    rel = "conf/method/bapo_study.yaml"
    (tmp_path / rel).write_text((tmp_path / rel).read_text().replace("0.03", "0.1"))
    assert check_choice(tmp_path) == (
        f"{rel} differ from what {tmp_path / CHOSEN / 'choice.json'} renders: run "
        "`make study-choose`"
    )
    (tmp_path / CHOSEN / "choice.json").write_text(json.dumps({**CHOICE, "provisional": True}))
    assert "is provisional" in check_choice(tmp_path)


def test_the_anchor_grids_get_the_chosen_regime_as_overrides() -> None:
    assert regime_overrides(CHOICE) == ["train.lr=0.00015", "train.steps=96",
                                        "eval.at_steps=[3,6,12,24,48]"]  # fmt: skip


def test_test_refuses_before_any_grid_runs(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # no committed choice here
    assert main(["test", "--", "train.steps=2"]) == 2
    assert "choice.json is missing" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_the_test_step_writes_only_under_runs(tmp_path: Path, monkeypatch) -> None:
    """``make study`` (the test step) runs its grids and analysis into runs/study: with the
    subprocesses recorded instead of run, every ``--out`` is under runs/ and no file outside
    runs/ changes (only ``choose`` writes tracked files)."""
    import bapo_exp.study as study

    write_choice(calibrated(tmp_path), tmp_path)
    listed = "- R1: an outcome revised before any test-base run\n"
    (tmp_path / "results/study_calibration/deviations.md").write_text(listed)
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(study, "run", lambda *args: calls.append(args) or 0)
    assert main(["test", "--", "train.steps=2"]) == 0
    outs = [c[c.index("--out") + 1] for c in calls if "--out" in c]
    assert outs == ["runs/study/results"]
    grids = [c for c in calls if c[:2] == ("-m", "bapo_exp")]
    assert [c[3] for c in grids] == [f"experiment={p}" for p in study.TEST]
    assert all(c[-1] == "train.steps=2" for c in grids)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    changed = {p for p in after if before.get(p) != after[p]} | (set(before) - set(after))
    assert all(p.relative_to(tmp_path).parts[0] == "runs" for p in changed), changed
    assert (tmp_path / "runs/study/results/calibration/choice.json").exists()  # judged by
    assert (tmp_path / "runs/study/results/deviations.md").read_text() == listed  # reported
