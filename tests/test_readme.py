"""The README's generated sections equal what the generator computes from the committed results
(results/demo, results/study): no number or conclusion there is typed by hand (issue 17)."""

from __future__ import annotations

import pytest

from tests.conftest import REPO


def test_readme_sections_are_the_generators_output() -> None:
    from bapo_exp.analysis.readme import main, pattern

    readme = (REPO / "README.md").read_text()
    for name in ("demo", "study"):
        assert pattern(name).search(readme), f"README lacks the generated {name} section"
        if not (REPO / "results" / name / "cells.csv").exists():
            pytest.fail(f"results/{name}/cells.csv is not committed")
    assert main(["--check"]) == 0, "README differs from the results: run `make readme`"
