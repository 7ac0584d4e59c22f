"""The study (issue 25): from the runs of ``make study`` to the verdicts, figures and tables.

    python -m bapo_exp.analysis.study runs/study --out runs/study/results   # make study does this
    python -m bapo_exp.analysis.study results/study --markdown         # README's results section
    python -m bapo_exp.analysis.study runs/study --calibrate           # make study-calibrate

Two steps. ``collect`` reads the run folders into one tidy table, a row per (cell, evaluated
step) (``analysis.load.load_cells``; columns ``analysis.load.CELL_COLUMNS``), written as
``results/study/cells.csv`` and committed: the single source of every number the study reports.
``analyse`` turns that table, with the calibration's ``calibration/choice.json``, into the
verdicts (``verdicts.csv``), the figures and ``RESULTS.md``; the README's results section is
that markdown (``tests/test_readme.py`` checks that it is). The protocol is
``docs/STUDY_PROTOCOL.md``; ``meta.json`` records the commit of it the results were judged by.
``--calibrate`` makes the calibration's choice instead (``analysis.calibration``: calibration
bases only) and writes ``results/study/calibration/`` and the generated presets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bapo_exp.analysis.load import RUN_FILE_FIX, load_cells, read_cells
from bapo_exp.readback import read_json_file
from bapo_exp.run.multirun import REPORT, report_problems

PROTOCOL = "docs/STUDY_PROTOCOL.md"


def failed_cells(root: Path) -> list[str]:
    """Cells the multiruns under ``root`` reported failed or unfinished (``reports/*.json``, one
    per preset, written by make study; else the folder's last ``multirun_report.json``)."""
    reports = sorted((root / "reports").glob("*.json")) or [root / REPORT]
    return [
        f"{path.stem}: {problem.get('status')} {problem.get('run_dir')}"
        for path in reports
        for problem in report_problems(path)
    ]


def collect(root: str | Path, partial: bool = False) -> pd.DataFrame:
    """``cells.csv`` from the run folders under ``root`` (``runs/study``); refuses when a cell
    failed or did not finish (a verdict over the cells that happened to finish would be biased),
    unless ``partial``."""
    if (failed := failed_cells(Path(root))) and not partial:
        raise ValueError(
            f"{len(failed)} cell(s) failed or did not finish:\n  "
            + "\n  ".join(failed[:10])
            + "\nre-run make study (finished cells are skipped) or pass --partial"
        )
    cells = load_cells(root)
    if cells.empty:
        raise FileNotFoundError(f"no complete run under {root}: run `make study` first")
    return cells


REPO = Path(__file__).resolve().parents[2]  # the checkout: PROTOCOL is relative to it


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO)
    return out.stdout.strip() if out.returncode == 0 else ""


def _contains(commit: str, sha: str) -> bool:
    """Whether the history of ``commit`` (a run's ``git_sha``, maybe ``+dirty``) holds ``sha``."""
    ancestor = ["git", "merge-base", "--is-ancestor", sha, commit.split("+")[0]]
    return subprocess.run(ancestor, cwd=REPO, capture_output=True).returncode == 0


def protocol_record(run_shas: list[str]) -> dict:
    """The protocol as the runs' code held it: its newest commit that every run's commit
    contains (``protocol_sha``; without runs, or when none precedes them, its newest commit),
    whether there is one (``protocol_precedes_runs``), and the protocol's commits after it
    (``protocol_amended_after_runs``: amendments the runs could not see)."""
    commits = _git("log", "--format=%H", "--", PROTOCOL).split()
    if not commits or not run_shas:
        return {"protocol_sha": commits[0] if commits else None, "protocol_precedes_runs": None}
    frozen = next((c for c in commits if all(_contains(r, c) for r in run_shas)), None)
    later = commits[: commits.index(frozen)] if frozen else []
    return {"protocol_sha": frozen or commits[0], "protocol_precedes_runs": frozen is not None,
            "protocol_amended_after_runs": later}  # fmt: skip


def _runs_git_sha(root: Path, cells: list[str] | None = None) -> list[str]:
    """The commits the runs under ``root`` were made with (their ``env.json``); only the
    folders named in ``cells`` when given."""
    paths = Path(root).glob("*/env.json") if cells is None else (
        Path(root) / c / "env.json" for c in cells if (Path(root) / c / "env.json").exists()
    )  # fmt: skip
    shas = {read_json_file(p, what="run environment", fix=RUN_FILE_FIX).get("git_sha")
            for p in paths}  # fmt: skip
    return sorted(str(s) for s in shas if s)


def wall_text(seconds: float | None) -> str:
    if seconds is None:
        return "an unrecorded time"
    return f"{int(seconds) // 60} min {int(seconds) % 60} s"


def load_or_collect(
    root: Path, out: Path, wall: float | None, partial: bool = False
) -> tuple[pd.DataFrame, dict]:
    """From ``results/study`` (``cells.csv`` + ``meta.json``) or from run folders (then written
    to ``out``)."""
    if (root / "cells.csv").exists():
        return read_cells(root / "cells.csv"), json.loads((root / "meta.json").read_text())
    cells = collect(root, partial)
    # the protocol must precede the test runs; the calibration may precede its last revision
    # (protocol section 13 was written after the calibration, by design)
    shas = _runs_git_sha(root, sorted(set(cells.loc[cells["role"] == "test", "cell"])))
    cal = sorted(set(cells.loc[cells["role"] == "calibration", "cell"]))
    meta = {
        "n_cells": int(cells["cell"].nunique()),
        "wall_seconds": wall,
        "wall": wall_text(wall),
        "git_sha": _git("rev-parse", "HEAD") or None,
        "runs_git_sha": shas,
        "calibration_runs_git_sha": _runs_git_sha(root, cal),
        "unfinished_cells": len(failed_cells(root)),
        **protocol_record(shas),
    }
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "cells.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return read_cells(out / "cells.csv"), meta


def read_choice(folder: Path) -> dict:
    """``<folder>/calibration/choice.json``; without one, the legacy anchor weight, flagged as
    not calibrated (a deviation the report lists)."""
    from bapo_exp.analysis.protocol import LEGACY_ANCHOR

    path = folder / "calibration" / "choice.json"
    if path.exists():
        return json.loads(path.read_text())
    return {
        "provisional": True,
        "anchor_weight": LEGACY_ANCHOR,
        "logodds_range": None,
        "anchor_reason": f"no calibration: the legacy weight {LEGACY_ANCHOR:g}",
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bapo_exp.analysis.study",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "root",
        type=Path,
        help="runs/study (run folders) or results/study (its cells.csv, meta.json)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where cells.csv, meta.json, verdicts.csv, RESULTS.md and the figures go "
        "(default: root, when it is a results folder)",
    )
    p.add_argument(
        "--wall-seconds",
        type=float,
        default=None,
        help="the study's wall time, recorded in meta.json (make study passes it)",
    )
    p.add_argument(
        "--markdown", action="store_true", help="print the results section (the README's) to stdout"
    )
    p.add_argument("--no-figures", action="store_true", help="skip the figures (faster)")
    p.add_argument(
        "--partial",
        action="store_true",
        help="analyse the finished cells although some failed or did not finish "
        "(recorded in meta.json and printed with the results)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="the demo's results: its table (printed) and frontier figures, no verdicts",
    )
    p.add_argument("--n-boot", type=int, default=None, help="bootstrap resamples (protocol's)")
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="choose the regime and the anchor weight on the calibration bases; "
        "writes <out>/calibration/ (default out: results/study) and the presets",
    )
    p.add_argument(
        "--no-presets",
        action="store_true",
        help="with --calibrate: leave conf/ alone (another grid than the study's)",
    )
    p.add_argument(
        "--design",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="with --calibrate: the main design point over the protocol's, for "
        "another grid, e.g. preferences=academy exposure=none (none: no filter)",
    )
    return p


def demo(args: argparse.Namespace, cells: pd.DataFrame, meta: dict, out: Path) -> int:
    """``make demo``'s last step: print the table, draw the frontier per preference."""
    from bapo_exp.analysis.study_figures import demo as demo_figures
    from bapo_exp.analysis.study_report import demo_markdown

    text = demo_markdown(cells, meta)
    (out / "DEMO.md").write_text(text)
    sys.stdout.write(text)
    if not args.no_figures:
        for path in demo_figures(cells, out):
            sys.stdout.write(f"wrote {path}\n")
    return 0


def parse_design(pairs: list[str]) -> dict | None:
    """``["preferences=academy", "exposure=none"]`` -> ``{"preferences": "academy",
    "exposure": None}`` (numbers as numbers)."""
    import yaml

    from bapo_exp.analysis.protocol import MAIN

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in MAIN:
            raise ValueError(f"--design {pair!r}: expected KEY=VALUE with KEY in {list(MAIN)}")
        out[key] = None if value.lower() in ("none", "null") else yaml.safe_load(value)
    return out or None


def calibrate(args: argparse.Namespace) -> int:
    """``--calibrate``: the choice from the calibration bases, its tables, figure, presets."""
    from bapo_exp.analysis.calibration import calibration_rows, choose, write
    from bapo_exp.analysis.study_figures import calibration

    try:
        cells = (
            read_cells(args.root / "cells.csv")
            if (args.root / "cells.csv").exists()
            else collect(args.root, args.partial)
        )  # refuses when a cell failed
        choice, regimes, anchors = choose(cells, parse_design(args.design))
    except (FileNotFoundError, KeyError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    out = (args.out or Path("results/study")) / "calibration"
    paths = write(choice, regimes, anchors, out, presets_too=not args.no_presets)
    if not args.no_figures:
        paths += calibration(calibration_rows(cells), choice, regimes, anchors, out)
    sys.stdout.write("".join(f"wrote {p}\n" for p in paths))
    sys.stdout.write(json.dumps(choice, indent=1, sort_keys=True) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bapo_exp.analysis.study_report import analyse

    args = build_parser().parse_args(argv)
    if args.calibrate:
        return calibrate(args)
    out = args.out or args.root
    try:
        cells, meta = load_or_collect(args.root, out, args.wall_seconds, args.partial)
    except (FileNotFoundError, KeyError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    if args.demo:
        return demo(args, cells, meta, out)
    choice = read_choice(out if (out / "calibration").exists() else args.root)
    extra = {} if args.n_boot is None else {"n_boot": args.n_boot}
    verdicts, text = analyse(cells, meta, choice, out, **extra)
    if args.markdown:
        sys.stdout.write(text)
    out.mkdir(parents=True, exist_ok=True)
    verdicts.assign(per_base=verdicts["per_base"].map(json.dumps)).to_csv(
        out / "verdicts.csv", index=False
    )
    (out / "RESULTS.md").write_text(text)
    if not args.no_figures:
        from bapo_exp.analysis.study_figures import draw_all

        draw_all(cells, verdicts, choice, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
