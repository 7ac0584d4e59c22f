"""A run's own files, damaged, are refused in one line naming the file and what to do, with
the run's files left as they were; what can be recomputed from the run is (issue 26).

Unit tests damage each kind of file (truncated, bytes flipped, invalid JSON or YAML); the
end-to-end tests re-launch a finished ``debug=tiny`` run through the real entrypoint."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bapo_exp.readback import (
    MANIFEST,
    DamagedFileError,
    load_saved_config,
    read_json_file,
    write_manifest,
)
from bapo_exp.tracking.run_dir import RunDir
from tests.conftest import REPO, SUBPROCESS_ENV, TIMING, metric_rows, require_shared
from tests.training.test_checkpoint_safety import Planted

YAML_DAMAGE = {
    "invalid": "method:\n  name: dpo\n  beta: [0.1\n",
    "bytes": b"\xff\xfe\x00method: dpo",
    "not_a_run": "- just\n- a list\n",
}


def one_line(err: pytest.ExceptionInfo, path: Path) -> str:
    text = str(err.value)
    assert "\n" not in text and text.startswith(str(path))
    return text


@pytest.mark.parametrize("damage", ['{"loss": 0.5', "[1, 2]", "\x00\x01"])
def test_a_damaged_stage_summary_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    run = RunDir(tmp_path)
    run.mark_done("train", {"loss": 0.5})
    (tmp_path / "train/summary.json").write_text(damage)
    with pytest.raises(DamagedFileError) as err:
        run.summary("train")
    text = one_line(err, tmp_path / "train/summary.json")
    assert "stage summary" in text and f"stages=[train] force=true hydra.run.dir={tmp_path}" in text


def test_an_unreadable_done_marker_still_marks_the_stage_done(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    run.mark_done("eval", {"acc": 1.0}, seconds=3.0)
    assert run.stage_seconds("eval") == 3.0
    for damage in ('{"seconds": 3', "[]", "\xff"):
        run.done_marker("eval").write_text(damage)
        assert run.is_done("eval") and run.stage_seconds("eval") is None


@pytest.mark.parametrize("damage", sorted(YAML_DAMAGE))
def test_a_damaged_saved_config_is_refused_in_one_line(tmp_path: Path, damage: str) -> None:
    path = tmp_path / ".hydra" / "config.yaml"
    path.parent.mkdir()
    data = YAML_DAMAGE[damage]
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    with pytest.raises(DamagedFileError) as err:
        load_saved_config(path)
    text = one_line(err, path)
    assert "damaged saved config" in text and "overrides.yaml" in text


def test_damaged_metrics_are_refused_naming_the_line(tmp_path: Path) -> None:
    from bapo_exp.analysis.load import load_metrics

    run = RunDir(tmp_path)
    for step in (1, 2, 3):
        run.append_jsonl("train/metrics.jsonl", {"step": step, "loss": 0.5})
    path = tmp_path / "train/metrics.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1][:9], lines[2]]) + "\n")
    with pytest.raises(DamagedFileError) as err:
        load_metrics(tmp_path)
    assert "training metrics: line 2 is not JSON" in one_line(err, path)


def test_a_record_appended_after_a_torn_line_stays_whole(tmp_path: Path) -> None:
    """``.hydra/relaunches.jsonl`` (and metrics.jsonl) after a kill mid-append."""
    run = RunDir(tmp_path)
    run.append_jsonl(".hydra/relaunches.jsonl", {"overrides": ["a=1"]})
    path = tmp_path / ".hydra/relaunches.jsonl"
    path.write_text(path.read_text() + '{"overrides": ["b')  # torn
    run.append_jsonl(".hydra/relaunches.jsonl", {"overrides": ["c=3"]})
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"overrides": ["a=1"]} and lines[1] == '{"overrides": ["b'
    assert json.loads(lines[2]) == {"overrides": ["c=3"]}


def test_a_damaged_multirun_report_is_refused_and_a_damaged_job_record_reported(
    tmp_path: Path, caplog
) -> None:
    from bapo_exp.run.multirun import REPORT, read_records, record_file, report_problems

    (tmp_path / REPORT).write_text('{"problems": [')
    with pytest.raises(DamagedFileError) as err:
        report_problems(tmp_path / REPORT)
    assert "multirun report" in one_line(err, tmp_path / REPORT)
    good, bad = record_file(tmp_path, 0), record_file(tmp_path, 1)
    good.parent.mkdir()
    good.write_text(json.dumps({"num": 0, "status": "completed"}))
    bad.write_text('{"num": 1, "sta')
    with caplog.at_level(logging.WARNING):
        records = read_records(tmp_path)
    assert [r["status"] for r in records] == ["completed", "unfinished"]
    assert records[1]["num"] == 1 and "damaged job record" in caplog.text


def test_a_damaged_saved_model_is_refused_before_any_work(tmp_path: Path) -> None:
    from bapo_exp.stages.evaluate import intact_model

    model = tmp_path / "checkpoints" / "final"
    model.mkdir(parents=True)
    (model / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 4)
    write_manifest(model)
    assert intact_model(str(model), RunDir(tmp_path)) == str(model)
    (model / "adapter_model.safetensors").write_bytes(bytes(range(256)) * 2)
    with pytest.raises(DamagedFileError) as err:
        intact_model(str(model), RunDir(tmp_path))
    text = one_line(err, model / "adapter_model.safetensors")
    assert "damaged saved model (512 bytes, 1024 when written)" in text
    assert "stages=[train,eval] force=true" in text


def test_show_refuses_a_damaged_summary_in_one_line_and_a_grid_table_names_it(tmp_path, caplog):
    from bapo_exp.run.report import grid_table

    run = RunDir(tmp_path / "cell")
    run.mark_done("eval", {"hhh/acc": 0.5, "hhh/n": 4})
    (run.root / "eval/summary.json").write_text('{"hhh/acc": 0.')
    out = subprocess.run([sys.executable, "-m", "bapo_exp", "show", str(run.root)], cwd=REPO,
                         env=SUBPROCESS_ENV, capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert out.stderr.startswith(f"bapo-exp: error: {run.root / 'eval/summary.json'}: damaged")
    with caplog.at_level(logging.WARNING):
        table = grid_table([{"run_dir": str(run.root), "status": "skipped"}])
    assert "damaged summary" in table.splitlines()[1] and "stage summary" in caplog.text


def test_json_of_another_shape_is_refused(tmp_path: Path) -> None:
    (tmp_path / "env.json").write_text('"a string"')
    expected = r"env.json: damaged run environment \(a JSON str, expected a dict\); restore it"
    with pytest.raises(DamagedFileError, match=expected):
        read_json_file(tmp_path / "env.json", what="run environment", fix="restore it")


# ---- end to end: a finished debug=tiny run, re-launched with one file damaged ---------------

SMALL = ["debug=tiny", "method=dpo", "train.steps=6", "eval.suites=[hhh]", "eval.limit=2",
         "eval.gen_prompts=2"]  # fmt: skip
ONE_THREAD = {**SUBPROCESS_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
VOLATILE = ("main.log", ".lock")  # written by every launch that gets as far as running


def bapo(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bapo_exp", *args, f"paths.cache_dir={cache}"],
        cwd=REPO, env=ONE_THREAD, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in VOLATILE}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tmp_path_factory, tiny_cache) -> Path:
    require_shared("dsp")
    run = tmp_path_factory.mktemp("finished") / "run"
    out = bapo(*SMALL, f"hydra.run.dir={run}", cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    return run


@pytest.fixture
def run(finished: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def refused(out: subprocess.CompletedProcess, path: Path, *words: str) -> None:
    """The launch failed with one line on stderr naming ``path`` (and ``words``)."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and "Traceback" not in out.stderr + out.stdout, out.stderr[-2000:]
    assert lines and lines[-1].startswith(f"bapo-exp: error: {path}"), out.stderr[-2000:]
    assert all(w in lines[-1] for w in words), lines[-1]


@pytest.mark.integration
@pytest.mark.parametrize("damage", ["config", "summary", "model"])
def test_a_damaged_run_file_refuses_a_relaunch_and_changes_nothing(run, tiny_cache, damage):
    target = {"config": run / ".hydra/config.yaml", "summary": run / "train/summary.json",
              "model": run / "checkpoints/final/adapter_model.safetensors"}[damage]  # fmt: skip
    data = bytearray(target.read_bytes())
    if damage == "model":  # one byte flipped: the same size
        data[len(data) // 2] ^= 0xFF
    else:  # cut, and invalid
        data = data[: len(data) // 2] + bytearray(b"\n: [")
    target.write_bytes(bytes(data))
    before = {**files(run), "main.log": (run / "main.log").read_bytes()}
    out = bapo("eval", str(run), cache=tiny_cache)
    what = {"config": "damaged saved config", "summary": "damaged stage summary",
            "model": "damaged saved model (contents differ"}[damage]  # fmt: skip
    refused(out, target, what)
    assert {**files(run), "main.log": (run / "main.log").read_bytes()} == before


@pytest.mark.integration
def test_a_planted_checkpoint_refuses_the_resume_and_runs_nothing(run, tiny_cache) -> None:
    import torch

    from bapo_exp.training.checkpoint import load_state

    marker = run.parent / "ran"
    newest = run / "checkpoints/step_00000004"
    state = load_state(newest / "state.pt")
    torch.save({**state, "x": Planted(marker)}, newest / "state.pt")
    write_manifest(newest)  # whoever planted it rewrote the manifest too
    (run / "train/DONE").unlink()
    before = files(run)
    out = bapo(*SMALL, "stages=[train]", f"hydra.run.dir={run}", cache=tiny_cache)
    refused(out, newest / "state.pt", "pickled code", "system", f"delete {newest}")
    assert not marker.exists() and files(run) == before


@pytest.mark.integration
def test_a_damaged_newest_checkpoint_resumes_from_the_one_before(run, finished, tiny_cache):
    """The newest checkpoint's bytes flipped and metrics.jsonl torn: the resume starts from
    the checkpoint before, rewrites the metrics, and ends with the uninterrupted run's rows."""
    newest = run / "checkpoints/step_00000004/state.pt"
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data))
    metrics = run / "train/metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-20])
    for stage in ("train", "eval"):
        (run / stage / "DONE").unlink()
    out = bapo(*SMALL, "stages=[train]", f"hydra.run.dir={run}", cache=tiny_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "step_00000004 is damaged (state.pt: contents differ" in out.stdout
    assert "resumed from checkpoint at step 2" in (run / "main.log").read_text()
    assert metric_rows(run, TIMING) == metric_rows(finished, TIMING)
    assert MANIFEST in os.listdir(run / "checkpoints/step_00000004")  # written again
