"""Re-launching a finished run (issue 15.1): its saved config wins, a conflicting override fails
before any work with the run's files byte-identical, the supported re-evaluation reproduces
the original summary, and a failing re-evaluation puts the previous outputs back."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV

pytestmark = pytest.mark.integration
SMALL = ["debug=tiny", "method=dpo", "eval.suites=[hhh]", "eval.limit=2", "eval.gen_prompts=2"]


def bapo(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bapo_exp", *args, f"paths.cache_dir={cache}"],
        cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def snapshot(root: Path) -> dict[str, str]:
    """Content hash of every file under ``root``."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def numbers(summary: dict) -> dict:
    """A summary without timings and the (absolute) path of the scored checkpoint."""
    return {k: v for k, v in summary.items() if not k.endswith(("wall_time_s", "ckpt_path"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_cache) -> Path:
    """One finished debug=tiny run, copied afresh by each test."""
    run = tmp_path_factory.mktemp("finished") / "run"
    out = bapo(*SMALL, f"hydra.run.dir={run}", cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_conflicting_override_fails_before_work_and_changes_nothing(run, tiny_cache) -> None:
    before = snapshot(run)
    out = bapo("method=dpo", "model=smollm2_135m", "stages=[eval]", "force=true",
               f"hydra.run.dir={run}", cache=tiny_cache)  # fmt: skip
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "model.name: this run has 'tiny', the command asks 'smollm2_135m'" in out.stderr
    assert snapshot(run) == before  # main.log and .hydra/ included: nothing was written


def test_the_saved_config_wins_over_defaults_the_command_did_not_set(run, tiny_cache) -> None:
    """The README's old re-eval command without debug=tiny: the run's tiny model is used."""
    original = json.loads((run / "eval/summary.json").read_text())
    out = bapo("method=dpo", "stages=[eval]", "force=true", f"hydra.run.dir={run}",
               cache=tiny_cache)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert numbers(json.loads((run / "eval/summary.json").read_text())) == numbers(original)


def test_bapo_exp_eval_reproduces_the_summary_and_records_the_relaunch(run, tiny_cache) -> None:
    original = json.loads((run / "eval/summary.json").read_text())
    out = bapo("eval", str(run), cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert numbers(json.loads((run / "eval/summary.json").read_text())) == numbers(original)
    [record] = [json.loads(x) for x in (run / ".hydra/relaunches.jsonl").read_text().splitlines()]
    assert "stages=[eval]" in record["overrides"] and record["git_sha"] is not None


def test_bapo_exp_eval_takes_a_grid_cell_folder(run, tiny_cache) -> None:
    """A grid cell's folder is named ``key=value,key=value``: a Hydra override needs it quoted."""
    cell = run.parent / "method=dpo,seed=0"
    run.rename(cell)
    out = bapo("eval", str(cell), cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert len((cell / ".hydra/relaunches.jsonl").read_text().splitlines()) == 1


def test_reevaluation_with_new_eval_settings_updates_the_saved_config(run, tiny_cache) -> None:
    out = bapo("eval", str(run), "eval.limit=3", cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "limit: 3" in (run / ".hydra/config.yaml").read_text()
    assert json.loads((run / "eval/summary.json").read_text())["hhh/n"] == 12  # 4 subsets x 3


def test_reevaluation_saves_the_runs_stages_and_a_plain_relaunch_changes_nothing(
    run, tiny_cache
) -> None:
    """``bapo-exp eval`` is ``stages=[eval] force=true`` for this launch only (issue 22): the
    saved config keeps the run's stages and ``force: false``, so a later re-launch without
    overrides reports no change ("force: True -> False" before) and finds nothing to do."""
    from omegaconf import OmegaConf

    out = bapo("eval", str(run), "eval.limit=3", cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    saved = OmegaConf.load(run / ".hydra/config.yaml")
    assert list(saved.stages) == ["reference", "train", "eval"] and saved.force is False
    assert saved.eval.limit == 3  # the re-evaluation's own setting is kept
    before = (run / ".hydra/config.yaml").read_bytes()
    again = bapo("method=dpo", f"hydra.run.dir={run}", cache=tiny_cache)
    assert again.returncode == 0, again.stderr[-3000:]
    said = again.stdout + again.stderr
    assert "nothing to do" in said and "re-launch of" not in said
    assert (run / ".hydra/config.yaml").read_bytes() == before


def test_a_done_eval_is_not_silently_kept_under_other_settings(run, tiny_cache) -> None:
    before = snapshot(run)
    out = bapo("method=dpo", "eval.limit=3", f"hydra.run.dir={run}", cache=tiny_cache)
    assert out.returncode != 0 and "force=true" in out.stderr and "eval.limit" in out.stderr
    assert snapshot(run) == before


def test_failing_reevaluation_puts_the_previous_outputs_back(run, tiny_cache, tmp_path) -> None:
    (tmp_path / "not_a_model").mkdir()
    before = {k: v for k, v in snapshot(run).items() if k.startswith("eval/")}
    out = bapo("eval", str(run), f"eval.ckpt={tmp_path / 'not_a_model'}", cache=tiny_cache)
    assert out.returncode != 0
    after = {k: v for k, v in snapshot(run).items() if k.startswith("eval/")}
    assert after == before and not (run / ".previous").exists()
    assert (run / "eval/DONE").exists()


def test_missing_checkpoint_is_named_with_the_retrain_command(run, tiny_cache) -> None:
    shutil.rmtree(run / "checkpoints" / "final")
    out = bapo("eval", str(run), cache=tiny_cache)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert "the trained model to evaluate is missing" in out.stderr
    assert "stages=[train,eval] force=true" in out.stderr


def test_bad_input_in_a_new_run_leaves_no_run_directory(tmp_path, tiny_cache) -> None:
    runs = tmp_path / "runs"
    out = bapo("debug=tiny", "method=dpo", "data.preferences=[acadmy]",
               f"paths.runs_dir={runs}", cache=tiny_cache)  # fmt: skip
    assert out.returncode != 0 and "acadmy" in out.stderr and "academy" in out.stderr
    assert not any(p.is_file() for p in runs.rglob("*"))  # no empty runs/adhoc/<stamp>


@pytest.mark.parametrize("rank", ["0", "1"])
def test_only_the_main_process_claims_a_new_run_directory(tmp_path, monkeypatch, rank) -> None:
    """Under ``accelerate launch`` every process composes the config; a worker that wrote
    ``.hydra/`` first made the main process read a half-written "existing run" (CI, issue 18)."""
    from omegaconf import OmegaConf

    from bapo_exp.run.relaunch import fresh_run_subdir, is_new_run

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    root = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(tmp_path / "run")}}})
    answer = fresh_run_subdir(_root_=root)
    assert answer == (".hydra" if rank == "0" else None)
    assert fresh_run_subdir(_root_=root) == answer  # the first answer holds
    assert is_new_run(tmp_path / "run") is (rank == "0")


def test_a_launch_into_a_run_in_use_is_refused_and_changes_nothing(run, tiny_cache) -> None:
    """Two launches in one folder would train into one ``checkpoints/`` and move each other's
    outputs aside: the second one is refused, naming the first."""
    from bapo_exp.run.lock import run_lock

    with run_lock(run):  # stands for a launch of this run that is still running
        before = snapshot(run)
        out = bapo("eval", str(run), cache=tiny_cache)
        assert snapshot(run) == before
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"is in use by pid {os.getpid()}" in out.stderr
