"""The Hydra entrypoint end to end, in subprocesses: errors, run-directory contract, skipping."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV

ENV = SUBPROCESS_ENV


def bapo(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    extra = [f"paths.cache_dir={cache}"] if cache else []
    return subprocess.run(
        [sys.executable, "-m", "bapo_exp", *args, *extra],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def test_unknown_method_fails_listing_valid_methods() -> None:
    out = bapo("method=dop")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "method=dop: no such option (did you mean 'dpo'?)" in out.stderr
    assert "bapo" in out.stderr and "base_" not in out.stderr  # conf/ options only, no schemas


@pytest.mark.parametrize("override", ["train.lr=abc", "nonsense=1", "train.lrr=1"])
def test_bad_overrides_fail_at_composition(override: str) -> None:
    out = bapo("method=dpo", override)
    assert out.returncode != 0 and "Traceback" not in out.stdout
    assert "lr" in out.stderr or "nonsense" in out.stderr


def help_methods(text: str) -> list[str]:
    """The options listed under ``method (...)`` in ``--help``."""
    block = text.split("\n  method (required, no default)\n", 1)[1].split("\n  model (")[0]
    return [line.split()[0] for line in block.splitlines()]


def test_missing_method_is_named_with_the_methods_help_lists() -> None:
    """The "choose a method" error and --help list the same methods (issue 22: 6 against 8)."""
    import ast

    out = bapo()
    assert out.returncode != 0 and "choose a method: method=<name>" in out.stderr
    named = ast.literal_eval(out.stderr.split("one of ", 1)[1].split("]", 1)[0] + "]")
    assert named == help_methods(bapo("--help").stdout) and "bapo_light" in named


def test_help_needs_no_method_and_lists_only_real_options() -> None:
    out = bapo("--help")
    assert out.returncode == 0 and "Traceback" not in out.stderr
    methods = help_methods(out.stdout)
    assert methods == sorted(methods) and {"bapo", "bapo_light", "dpo", "mrpo"} <= set(methods)
    assert "base_dpo" not in out.stdout and "schema/" not in out.stdout  # no internal names


def test_help_describes_options_and_shows_defaults() -> None:
    """Each option with its file's first comment line, each group and key with its default."""
    out = bapo("--help").stdout
    assert "  model (default: smollm2_135m)" in out and "  method (required, no default)" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("dpo "))
    assert "Direct Preference Optimization" in line
    assert "steps=200" in out and "lr=5e-05" in out  # conf/train/default.yaml's values
    assert "suites=[mmlu, scienceqa, hhh]" in out


def test_misspelt_key_gets_the_closest_name() -> None:
    out = bapo("method=dpo", "train.stpes=3")
    assert out.returncode == 2 and "did you mean 'train.steps'" in out.stderr


@pytest.mark.integration
def test_make_wandb_sync_finds_offline_runs(tmp_path: Path) -> None:
    """wandb 0.31 removed `sync --sync-all`: the target passes the offline run folders."""
    runs = tmp_path / "runs" / "grid" / "cell"
    script = "import wandb; r = wandb.init(project='t', dir='.', mode='offline'); r.finish()"
    runs.mkdir(parents=True)
    subprocess.run([sys.executable, "-c", script], cwd=runs, env=ENV, check=True, timeout=300,
                   capture_output=True)  # fmt: skip
    out = subprocess.run(
        ["make", "-s", "wandb-sync", "WANDB_SYNC_FLAGS=--dry-run", f"RUNS={tmp_path / 'runs'}"],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "Would sync 1 run(s)" in out.stdout + out.stderr


@pytest.mark.integration
def test_run_directory_contract_and_skip(tmp_path: Path, tiny_cache: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["debug=tiny", "method=bapo", f"hydra.run.dir={run_dir}"]
    first = bapo(*args, cache=tiny_cache)
    assert first.returncode == 0, first.stderr[-3000:]
    for rel in [".hydra/config.yaml", ".hydra/overrides.yaml", "env.json", "main.log"]:
        assert (run_dir / rel).exists(), rel
    for stage in ["reference", "train", "eval"]:
        assert (run_dir / stage / "DONE").exists(), stage
        assert isinstance(json.loads((run_dir / stage / "summary.json").read_text()), dict)
    env = json.loads((run_dir / "env.json").read_text())
    assert {"git_sha", "git_dirty", "packages", "device"} <= set(env)
    rows = [json.loads(x) for x in (run_dir / "train/metrics.jsonl").read_text().splitlines()]
    assert rows and {"step", "loss", "pref_acc", "drift/base"} <= set(rows[-1])
    train = json.loads((run_dir / "train/summary.json").read_text())
    assert (run_dir / train["ckpt_path"]).is_dir()  # relative to the run directory
    stamp = (run_dir / "train/summary.json").stat().st_mtime_ns
    from bapo_exp.analysis.laptop import markdown, run_record

    record = run_record(run_dir)  # what make laptop reports, read from this run's files
    assert record["method"] == "bapo" and record["train_steps"] == len({r["step"] for r in rows})
    assert all(record["stage_seconds"][s] > 0 for s in ("reference", "train", "eval"))
    assert "| bapo |" in markdown({"runs": [record]})

    again = bapo(*args, cache=tiny_cache)
    assert again.returncode == 0
    assert "nothing to do" in again.stdout + again.stderr + (run_dir / "main.log").read_text()
    assert (run_dir / "train/summary.json").stat().st_mtime_ns == stamp


@pytest.mark.integration
def test_failing_stage_keeps_earlier_outputs(tmp_path: Path, tiny_cache: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["debug=tiny", "method=dpo", "train.batch_size=100000", f"hydra.run.dir={run_dir}"]
    ok = bapo(*args, "stages=[reference]", cache=tiny_cache)  # the batch is not used yet
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = bapo(*args, cache=tiny_cache)  # train cannot draw a batch of 100000 from 16 pairs
    assert bad.returncode != 0
    assert (run_dir / "reference/DONE").exists() and not (run_dir / "train/DONE").exists()
    assert "Traceback" in (run_dir / "main.log").read_text()


def test_the_entrypoint_and_its_plugins_load_without_torch() -> None:
    """``--help``, Hydra's composition and a grid's parent process never need torch (lazy)."""
    code = "import sys, bapo_exp.run.main; print(sorted(m for m in sys.modules if m == 'torch'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=SUBPROCESS_ENV,
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
