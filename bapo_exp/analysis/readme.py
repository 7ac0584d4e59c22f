"""The README's generated sections (demo, study, laptop, performance), from committed files.

    python -m bapo_exp.analysis.readme            # rewrite them in README.md (make readme)
    python -m bapo_exp.analysis.readme --check    # exit 1 if README.md differs (tests do this)

``make demo``, ``make laptop`` and ``make study`` write their analysis into ``runs/<x>/results/``
only; ``make results`` copies it into the committed ``results/<x>/`` and then runs this, so a
main job never changes a tracked file and the README follows what is committed.

A section sits between ``<!-- generated:<name> -->`` and ``<!-- /generated:<name> -->``; its text
is computed only from ``results/<name>/`` (``cells.csv`` and ``meta.json``; the laptop's
``summary.json``) and ``benchmarks/results/*.json``, so no number or conclusion in it is typed by
hand and a test can hold the README to the data.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import pandas as pd

from bapo_exp.analysis.load import read_cells
from bapo_exp.analysis.protocol import on_test_bases
from bapo_exp.analysis.study_report import demo_markdown

REPO = Path(__file__).resolve().parents[2]


def demo_in_study(demo: pd.DataFrame, study: pd.DataFrame) -> str:
    """Where the demo sits in the study: which study base it is (by weight fingerprint) and
    whether its DPO run falls inside the study's range over bases at the same step."""
    from bapo_exp.analysis.protocol import MAIN

    base = demo[demo["method"] == "base"].iloc[0]
    study = on_test_bases(study)  # the calibration's runs ran other regimes
    bases = study[(study["method"] == "base") & (study["exposure"] == MAIN["exposure"])]
    same = bases.loc[bases["base_fingerprint"] == base["base_fingerprint"], "base"].tolist()
    which = (f"the study's base {same[0]} (same weight fingerprint)" if same else
             "none of the study's bases (another weight fingerprint)")  # fmt: skip
    dpo = study[(study["method"] == "DPO") & (study["n_pairs"] == MAIN["n_pairs"])
                & (study["exposure"] == MAIN["exposure"])
                & (study["preferences"] == MAIN["preferences"])]  # fmt: skip
    ours = demo[(demo["method"] == "DPO") & (demo["preferences"] == MAIN["preferences"])]
    parts = []
    for r in ours[ours["step"].isin(set(dpo["step"]))].to_dict("records"):
        at = dpo[dpo["step"] == r["step"]]
        for col, name in (("x", "style share"), ("knowledge", "knowledge"),
                          ("alignment", "alignment")):  # fmt: skip
            lo, hi = at[col].min(), at[col].max()
            inside = "inside" if lo <= r[col] <= hi else "OUTSIDE"
            parts.append(f"{name} {r[col]:.3f} ({inside} {lo:.3f}-{hi:.3f})")
        step = int(r["step"])
    start = untrained_style(base, study)
    if not parts:
        return f"The demo's base is {which}. {start}"
    return (
        f"The demo's base is {which}. {start} Its DPO run towards {MAIN['preferences']} after "
        f"{step} steps against the study's DPO runs after {step} steps, all bases and data orders "
        f"(the demo trains {int(demo['step'].max())} steps, the study "
        f"{int(dpo['step'].max())}, so their learning-rate schedules differ): "
        + ", ".join(parts)
        + "."
    )


def untrained_style(base: pd.Series, study: pd.DataFrame) -> str:
    """The demo's untrained style share beside the study's: the study quotes the mean over its
    bases (where "the untrained bases start"), each base has its own (issue 22: 0.057 vs 0.000)."""
    from bapo_exp.analysis.protocol import MAIN

    study = on_test_bases(study)
    start = study[(study["method"] == "base") & (study["exposure"] == MAIN["exposure"])
                  & study["base"].isin(study.loc[study["method"] == "DPO", "base"])]  # fmt: skip
    per_base = start[start["step"] == 0].groupby("base")["x"].mean()
    return (
        f"Untrained, it writes {base['x']:.3f} of its held-out answers in the "
        f"{MAIN['preferences']} style; the study's untrained bases write {per_base.min():.3f}-"
        f"{per_base.max():.3f} by base, {per_base.mean():.3f} on average (the test bases' "
        "untrained rows of cells.csv)."
    )


def study_markdown(folder: Path, cells: pd.DataFrame) -> str:
    """The study's section from ``folder``'s ``cells.csv``, ``meta.json`` and
    ``calibration/choice.json``."""
    from bapo_exp.analysis.study import read_choice
    from bapo_exp.analysis.study_report import analyse

    return analyse(cells, _meta(folder), read_choice(folder), folder)[1]


def _meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def sections(root: Path = REPO) -> dict[str, str]:
    """Each generated section's text, from ``root``'s results and benchmark results."""
    from bapo_exp.analysis import laptop, perf_report

    results = root / "results"
    demo = results / "demo"
    demo_cells = read_cells(demo / "cells.csv")
    study_cells = read_cells(results / "study" / "cells.csv")
    where = demo_in_study(demo_cells, study_cells)
    return {
        "demo": demo_markdown(demo_cells, _meta(demo)) + "\n" + where + "\n",
        "study": study_markdown(results / "study", study_cells),
        "laptop": laptop.markdown(json.loads((results / "laptop/summary.json").read_text())),
        "performance": perf_report.markdown(root / "benchmarks" / "results"),
    }


def pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- generated:{name} -->\n)(.*?)(<!-- /generated:{name} -->)", re.S)


def render(readme: str, texts: dict[str, str]) -> str:
    for name, text in texts.items():
        if not pattern(name).search(readme):
            raise ValueError(f"README has no <!-- generated:{name} --> section")
        readme = pattern(name).sub(lambda m, t=text: m.group(1) + t + m.group(3), readme)
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bapo_exp.analysis.readme", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    p.add_argument("--root", type=Path, default=REPO,
                   help="the checkout: README.md, results/ and benchmarks/results/ (default: "
                   "this package's)")  # fmt: skip
    args = p.parse_args(argv)
    readme = args.root / "README.md"
    old = readme.read_text()
    new = render(old, sections(args.root))
    if args.check:
        diff = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm=""))
        sys.stdout.write("\n".join(diff[:80]) + ("\n" if diff else "README is up to date\n"))
        return 1 if diff else 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
