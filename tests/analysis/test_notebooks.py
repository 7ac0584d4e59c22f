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


def test_frontier_notebook_runs_on_results(toy_runs: Path, tmp_path: Path) -> None:
    nb = json.loads((REPO / "notebooks" / "frontier.ipynb").read_text())
    cells = [c for c in code_cells(nb) if "IPython" not in c]
    cells[0] = cells[0].replace('Path("../runs/frontier")', f'Path("{toy_runs}")')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        scope: dict = {}
        for src in cells:
            exec(compile(src, "frontier.ipynb", "exec"), scope)
    finally:
        os.chdir(cwd)
    assert len(scope["runs"]) == 8 and (tmp_path / "figures" / "frontier.png").stat().st_size > 0
