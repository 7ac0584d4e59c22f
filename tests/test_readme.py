"""The README's generated sections equal what the generator computes from the committed results
(results/demo, results/study, results/laptop, benchmarks/results): no number or conclusion there
is typed by hand (issue 17)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_readme_sections_are_the_generators_output() -> None:
    from bapo_exp.analysis.readme import main, pattern

    readme = (REPO / "README.md").read_text()
    sources = {
        "demo": "results/demo/cells.csv",
        "study": "results/study/cells.csv",
        "laptop": "results/laptop/summary.json",
        "performance": "benchmarks/results/mfu.json",
    }
    for name, source in sources.items():
        assert pattern(name).search(readme), f"README lacks the generated {name} section"
        if not (REPO / source).exists():
            pytest.fail(f"{source} is not committed")
    assert main(["--check"]) == 0, "README differs from the results: run `make readme`"


MAIN_JOBS = ("demo", "laptop")  # make study: tests/test_study_orchestration.py


def _dry_run(*targets: str) -> str:
    """The shell commands ``make`` would run for ``targets`` (``install`` taken as done)."""
    import subprocess

    out = subprocess.run(["make", "-n", "-o", "install", *targets], cwd=REPO,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout


def test_main_jobs_write_only_into_runs() -> None:
    """``make demo`` then ``make test`` must pass with a clean tree (issue 22): the main jobs'
    analyses write under runs/ (git-ignored), never the committed results/ or the README."""
    import re

    for target in MAIN_JOBS:
        commands = _dry_run(target)
        outs = re.findall(r"--out\s+(\S+)", commands)
        assert outs, f"make {target} runs no analysis with --out:\n{commands}"
        assert all(o.startswith("runs/") for o in outs), f"make {target} writes to {outs}"
        assert not re.search(r"(^|\s)results/", commands), f"make {target} touches results/"
        assert "analysis.readme" not in commands, f"make {target} rewrites the README"


def test_make_results_commits_a_jobs_results_and_its_readme_section(tmp_path) -> None:
    """``make results`` copies runs/<x>/results into results/<x> and regenerates the README
    from it; a job without runs/<x>/results keeps its committed results."""
    import json
    import shutil
    import subprocess
    import sys

    from bapo_exp.analysis.readme import main

    for part in ("README.md", "Makefile", "results", "benchmarks/results"):
        src, dst = REPO / part, tmp_path / part
        if src.is_dir():
            shutil.copytree(src, dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    summary = json.loads((REPO / "results/laptop/summary.json").read_text())
    summary["runs"][0]["stage_seconds"]["train"] = 12345.0
    new = tmp_path / "runs/laptop/results/summary.json"
    new.parent.mkdir(parents=True)
    new.write_text(json.dumps(summary))
    venv = Path(sys.executable).parent.parent
    proc = subprocess.run(["make", "-o", "install", "results", f"VENV={venv}"], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "results/demo kept" in proc.stdout
    assert json.loads((tmp_path / "results/laptop/summary.json").read_text()) == summary
    assert (tmp_path / "results/demo/cells.csv").read_bytes() == (
        REPO / "results/demo/cells.csv"
    ).read_bytes()
    assert "| 12345 (" in (tmp_path / "README.md").read_text()
    assert main(["--check", "--root", str(tmp_path)]) == 0


def test_demo_and_study_report_the_untrained_style_share_consistently() -> None:
    """The study said "the untrained bases start at 0.057", the demo's base (study base 0)
    showed 0.000 (issue 22): the first is the mean over bases. The demo's section says both,
    computed from the committed cells."""
    from bapo_exp.analysis.protocol import MAIN
    from bapo_exp.analysis.readme import pattern
    from bapo_exp.analysis.study import read_cells

    demo = read_cells(REPO / "results/demo/cells.csv")
    study = read_cells(REPO / "results/study/cells.csv")
    study = study[study["role"] == "test"]  # the bases table lists the test bases
    start = study[(study["method"] == "base") & (study["exposure"] == MAIN["exposure"])
                  & study["base"].isin(study.loc[study["method"] == "DPO", "base"])]  # fmt: skip
    per_base = start[start["step"] == 0].groupby("base")["x"].mean()
    own = demo.loc[demo["method"] == "base", "x"].iloc[0]
    section = pattern("demo").search((REPO / "README.md").read_text()).group(2)
    assert (
        f"Untrained, it writes {own:.3f} of its held-out answers in the concise style; the "
        f"study's untrained bases write {per_base.min():.3f}-{per_base.max():.3f} by base, "
        f"{per_base.mean():.3f} on average"
    ) in section
    study_section = pattern("study").search((REPO / "README.md").read_text()).group(2)
    for base, x in per_base.items():  # the study's bases table: each base's own untrained share
        assert re.search(rf"^\| {base} \| {x:.3f} \|", study_section, re.M), base
