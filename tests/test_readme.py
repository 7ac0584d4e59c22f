"""The README's generated sections equal what the generator computes from the committed results
(results/demo, results/study, results/laptop, benchmarks/results): no number or conclusion there
is typed by hand (issue 17)."""

from __future__ import annotations

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
