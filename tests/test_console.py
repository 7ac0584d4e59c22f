"""What a run prints (issue 22): our progress bars, our warnings and the result table; lm-eval's
and transformers' bars and chatter, other libraries' warnings and our modules' detail lines
go to the run's ``main.log`` only."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV

MAX_LINES = 30  # a debug=tiny run printed 71 lines before (24 of them lm-eval's bare bars)
NOISE = (
    "Defaults list is missing `_self_`",  # Hydra, about our own config
    "model kwarg is not of type `str`",  # lm-eval, about how we pass our model
    "FutureWarning",  # transformers, through PEFT
    "Loading weights",  # transformers' progress bars
    "Writing model shards",
    "Tokenizing inputs",  # lm-eval's bars
    "DSP: no data.train_path",  # data detail, once per stage
)


@pytest.mark.integration
def test_a_tiny_runs_console_is_short(tmp_path: Path, tiny_cache: Path) -> None:
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "bapo_exp", "debug=tiny", "method=dpo",
           f"hydra.run.dir={run_dir}", f"paths.cache_dir={tiny_cache}"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, timeout=600)
    text = (out.stdout + out.stderr).decode()  # bytes: a bar's \r redraws stay on its line
    assert out.returncode == 0, text[-3000:]
    lines = [x for x in text.split("\n") if x.strip()]  # terminal lines
    assert len(lines) <= MAX_LINES, "\n".join(lines)
    for noise in NOISE:
        assert not [x for x in lines if noise in x], f"{noise!r} on the console"
    bare = [x for x in lines if x.split("\r")[-1].lstrip().startswith(("0%|", "100%|"))]
    assert not bare, bare
    for ours in ("stage train: done", "train: 4 steps", "suite ", "train:", "held-out pref_acc"):
        assert ours in text, f"{ours!r} missing from the console"
    log = (run_dir / "main.log").read_text()
    assert "model kwarg is not of type `str`" in log  # moved, not lost
    assert "DSP: no data.train_path" in log
