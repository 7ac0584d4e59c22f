"""The README's commands do what the README says (issue 22), through the real entrypoint:

- a run's console: our progress bars, our warnings and the result table; lm-eval's and
  transformers' bars and chatter, other libraries' warnings and our detail lines go to
  ``main.log`` only;
- the re-evaluation example ``bapo-exp eval <run> eval.limit=8`` on a ``debug=tiny`` run;
- a continuation longer than the model's window is refused before any model loads, with a
  remedy that works (also on a re-launch);
- the figure targets' smoke form (``make fig5 ARGS="debug=tiny"``,
  ``make fig-mrpo_references ARGS="debug=tiny"``), narrowed to one seed and preference."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV

pytestmark = pytest.mark.integration
MAX_LINES = 30  # a debug=tiny run printed 72 lines before (24 of them lm-eval's bare bars)
NOISE = (
    "Defaults list is missing `_self_`",  # Hydra, about our own config
    "model kwarg is not of type `str`",  # lm-eval, about how we pass our model
    "FutureWarning",  # transformers, through PEFT
    "Loading weights",  # transformers' progress bars
    "Writing model shards",
    "Tokenizing inputs",  # lm-eval's bars
    "DSP: no data.train_path",  # data detail, once per stage
)


def bapo(*args: str, cache: Path) -> tuple[int, str]:
    """Exit status and console text (bytes decoded as they are: a bar's \\r redraws stay on
    its terminal line)."""
    cmd = [sys.executable, "-m", "bapo_exp", *args, f"paths.cache_dir={cache}"]
    out = subprocess.run(cmd, cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, timeout=900)
    return out.returncode, (out.stdout + out.stderr).decode()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_cache) -> tuple[Path, str]:
    run = tmp_path_factory.mktemp("tiny") / "run"
    code, text = bapo("debug=tiny", "method=dpo", f"hydra.run.dir={run}", cache=tiny_cache)
    assert code == 0, text[-3000:]
    return run, text


def test_a_tiny_runs_console_is_short(tiny_run) -> None:
    run, text = tiny_run
    lines = [x for x in text.split("\n") if x.strip()]  # terminal lines
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    for noise in NOISE:
        assert not [x for x in lines if noise in x], f"{noise!r} on the console"
    bare = [x for x in lines if x.split("\r")[-1].lstrip().startswith(("0%|", "100%|"))]
    assert not bare, bare
    for ours in ("stage train: done", "train: 4 steps", "suite ", "held-out pref_acc"):
        assert ours in text, f"{ours!r} missing from the console"
    log = (run / "main.log").read_text()
    assert "model kwarg is not of type `str`" in log  # moved, not lost
    assert "DSP: no data.train_path" in log


def test_the_readme_reevaluation_example(tiny_run, tiny_cache, tmp_path) -> None:
    """``bapo-exp eval <run> eval.limit=8``: HHH's longest answers (2224 tokens of the tiny
    BPE) fit debug=tiny's window (4096), so every default suite is scored."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(tiny_run[0]), str(run)], check=True)
    code, text = bapo("eval", str(run), "eval.limit=8", cache=tiny_cache)
    assert code == 0, text[-3000:]
    summary = json.loads((run / "eval/summary.json").read_text())
    assert summary["hhh/n"] == 32 and summary["mmlu/n"] == 32  # 4 subsets / subjects x 8


def test_a_continuation_longer_than_the_window_is_refused_before_any_model_loads(
    tmp_path, tiny_cache
) -> None:
    narrow = ["debug=tiny", "model.tiny.max_position_embeddings=512", "eval.limit=8"]
    code, text = bapo(*narrow, "method=dpo", f"hydra.run.dir={tmp_path / 'new'}", cache=tiny_cache)
    assert code != 0 and "Traceback" not in text, text[-3000:]
    assert "hhh: 1 of 64 requests, up to 2224 tokens" in text and "stage reference" not in text
    assert not (tmp_path / "new").exists()  # refused before the run started
    # an existing run with that window: the remedy offered works on a re-launch
    run = tmp_path / "run"
    code, text = bapo(*narrow, "method=none", "stages=[eval]", "eval.suites=[mmlu]",
                      f"hydra.run.dir={run}", cache=tiny_cache)  # fmt: skip
    assert code == 0, text[-3000:]
    code, text = bapo("eval", str(run), "eval.suites=[mmlu,hhh]", "eval.limit=8", cache=tiny_cache)
    assert code != 0 and "Traceback" not in text and "window of 512 tokens" in text, text[-3000:]
    [remedy] = re.findall(r"\((eval\.suites=\[[^\]]*\]), also on a re-launch\)", text)
    assert remedy == "eval.suites=[mmlu]"
    code, text = bapo("eval", str(run), remedy, "eval.limit=8", cache=tiny_cache)
    assert code == 0, text[-3000:]


def make(target: str, args: str, runs: Path, figures: Path) -> str:
    venv = Path(sys.executable).parent.parent
    out = subprocess.run(["make", "-o", "install", target, f"ARGS={args}", f"RUNS={runs}",
                          f"FIGURES_OUT={figures}", f"VENV={venv}"], cwd=REPO,
                         env=SUBPROCESS_ENV, capture_output=True, text=True,
                         timeout=1800)  # fmt: skip
    said = out.stdout + out.stderr
    assert out.returncode == 0, said[-4000:]
    assert "Traceback" not in said and "huggingface.co" not in said
    return said


def test_figure_targets_smoke_form(tmp_path, tiny_cache) -> None:
    """The base model's cell runs the tiny model (a model sweep in the base_model preset beat
    debug=tiny and fetched Llama-2, issue 22), each figure is drawn, a retention figure with
    the base model's line, and no failed cell is left for the notebooks."""
    runs, figures = tmp_path / "runs", tmp_path / "figures"
    args = f"debug=tiny seed=0 data.preferences=[academy] paths.cache_dir={tiny_cache}"
    make("fig5", args, runs, figures)
    base = json.loads((runs / "base_model/multirun_report.json").read_text())
    assert base["counts"] == {"completed": 1}
    [cell] = [Path(j["run_dir"]) for j in base["jobs"]]
    assert "name: tiny" in (cell / ".hydra/config.yaml").read_text()
    said = make("fig-mrpo_references", args, runs, figures)
    assert re.search(r"base model: mmlu/humanities/acc=\d", said), said[-3000:]
    report = json.loads((runs / "mrpo_references/multirun_report.json").read_text())
    assert report["counts"] == {"completed": 2} and not report["problems"]
    names = sorted(Path(j["run_dir"]).name for j in report["jobs"])
    assert [n.split(",")[2] for n in names] == ["refs=mistral_7b_instruct+qwen2_5_7b@tiny",
                                                 "refs=mistral_7b_instruct@tiny"]  # fmt: skip
    for stem in ("fig5_drift", "mrpo_references"):
        assert (figures / f"{stem}.png").exists()
