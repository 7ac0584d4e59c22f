"""Notebooks: one per figure, valid nbformat-4 JSON, no committed outputs, and their code runs
against a results folder (here the hand-written toy runs)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import CONF, REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_clean_and_paired_with_a_preset(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4 and nb["cells"][0]["cell_type"] == "markdown"
    assert (CONF / "experiment" / f"{path.stem}.yaml").exists()
    assert "make " in "".join(nb["cells"][0]["source"])
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert c["outputs"] == [] and c["execution_count"] is None
            compile("".join(c["source"]), str(path), "exec")


def execute(path: Path, results: Path, figures: Path) -> None:
    """Run every cell of ``path`` in a real kernel (nbconvert), on the ``results`` folder."""
    nbformat = pytest.importorskip("nbformat")
    from nbconvert.preprocessors import ExecutePreprocessor

    nb = nbformat.read(path, as_version=4)
    env = {"BAPO_RESULTS": str(results), "BAPO_FIGURES": str(figures)}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the parameters
    try:
        ExecutePreprocessor(timeout=300, kernel_name="python3").preprocess(
            nb, {"metadata": {"path": str(figures.parent)}}
        )
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_frontier_notebook_runs_on_results(toy_runs: Path, tmp_path: Path) -> None:
    execute(REPO / "notebooks" / "frontier.ipynb", toy_runs, tmp_path / "figures")
    assert (tmp_path / "figures" / "frontier.png").stat().st_size > 0


def test_demo_notebook_runs_on_demo_shaped_results(demo_runs: Path, tmp_path: Path) -> None:
    """The demo's files (synthetic suites, style share, base model under the same folder)."""
    execute(REPO / "notebooks" / "demo.ipynb", demo_runs, tmp_path / "figures")
    assert sorted(p.name for p in (tmp_path / "figures").glob("demo*.png")) == [
        "demo_concise.png",
        "demo_poetic.png",
    ]
