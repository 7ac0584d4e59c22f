"""Print a results folder's aggregated table and draw its figure.

python -m bapo_exp.analysis runs/frontier --figure frontier --out notebooks/figures
python -m bapo_exp.analysis runs/fig2_knowledge_retention          # figure from the preset name

A figure is drawn only from what was measured: no complete trained run, a metric no run has,
or a forgetting figure without the base model's run is an error that says which command
produces what is missing; nothing is written then.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from bapo_exp.analysis.aggregate import BASE_METHOD
from bapo_exp.analysis.figures import FIGURES, figure_for, render
from bapo_exp.analysis.load import load_runs

NEEDS_BASE = ("heterogeneity",)  # figures of forgetting = base score - trained score


class AnalysisError(ValueError):
    """A usage error: printed as one line, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bapo_exp.analysis", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("root", type=Path, help="results folder of a grid, e.g. runs/fig5_drift")
    p.add_argument(
        "--figure",
        default="auto",
        choices=["auto", *FIGURES],
        help="what to draw (auto: the figure of the preset that made the runs)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=Path("notebooks/figures"),
        help="folder for <name>.png|pdf and <name>_table.csv",
    )
    p.add_argument("--name", default=None, help="file stem of the figure (default: the runs' name)")
    p.add_argument(
        "--x",
        default=None,
        help="personalisation column of a frontier (default: eval/gen/style_share, "
        "else eval/gen/win_rate, else eval/personal/pref_acc)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="columns to plot, e.g. eval/hhh/acc (default: the figure's own)",
    )
    p.add_argument(
        "--base",
        type=Path,
        default=None,
        help="folder of the base-model runs (method=none); default <root>/../base_model",
    )
    p.add_argument(
        "--partial",
        action="store_true",
        help="draw although the last multirun of the folder has failed or unfinished "
        "cells (multirun_report.json); by default that is an error",
    )
    p.add_argument("--duplicates", choices=["error", "first", "keep"], default="error",
                   help="runs with equal configs: refuse (default), keep the first complete one "
                   "of each group, or keep all (each with a warning)")  # fmt: skip
    return p


def load_with_base(root: Path, base: Path | None, duplicates: str = "error") -> pd.DataFrame:
    """Complete runs under ``root`` plus the base-model runs of the same models."""
    df = load_runs(root, duplicates=duplicates)
    incomplete = df[df["status"] != "complete"]
    if len(incomplete):
        sys.stderr.write(
            f"{len(incomplete)} incomplete run(s) left out:\n"
            + incomplete[["run_dir", "missing"]].to_string(index=False)
            + "\n"
        )
    df = df[df["status"] == "complete"]
    base = base or root.parent / "base_model"
    if base.is_dir() and base.resolve() != root.resolve():
        b = load_runs(base, complete_only=True, duplicates=duplicates)
        b = b[(b["method.name"] == BASE_METHOD) & b["model.name"].isin(df["model.name"])]
        df = pd.concat([df, b], ignore_index=True)
    return df


def base_command(model: str) -> str:
    return (
        f"python -m bapo_exp -m experiment=base_model model={model}   (add the grid's own "
        "overrides, e.g. debug=tiny; or make <figure target>, which runs it first)"
    )


def failed_cells(root: Path) -> list[str]:
    """Cells of the folder's last multirun that failed or did not finish."""
    from bapo_exp.run.multirun import REPORT, report_problems

    return [f"{p.get('status')}: {p.get('run_dir')} {p.get('error', '')}".strip()
            for p in report_problems(root / REPORT)]  # fmt: skip


def check_runs(df: pd.DataFrame, figure: str, root: Path, partial: bool = False) -> None:
    """Refuse a figure that would be empty, made of NaN or silently missing cells."""
    if not partial and (failed := failed_cells(root)):
        raise AnalysisError(
            f"{len(failed)} cell(s) of the last multirun in {root} failed or did not finish, so "
            "the figure would miss them:\n  "
            + "\n  ".join(failed[:10])
            + "\nre-run the grid (finished cells are skipped) or pass --partial"
        )
    trained = df[df["method.name"] != BASE_METHOD] if len(df) else df
    if trained.empty:
        raise AnalysisError(
            f"no complete trained run under {root} (see its multirun_report.json for the "
            "failed cells); nothing drawn"
        )
    if FIGURES[figure].kind in NEEDS_BASE:
        have = set(df.loc[df["method.name"] == BASE_METHOD, "model.name"])
        if missing := sorted(set(trained["model.name"]) - have):
            raise AnalysisError(
                f"figure {figure} shows forgetting against the base model, and there is no "
                f"base-model run for {missing}; produce it with:\n  {base_command(missing[0])}"
            )


def draw(args: argparse.Namespace) -> int:
    df = load_with_base(args.root, args.base, args.duplicates)
    figure = figure_for(df) if args.figure == "auto" else args.figure
    if args.figure == "auto":
        sys.stdout.write(f"figure: {figure} (--figure chooses another: {sorted(FIGURES)})\n")
    check_runs(df, figure, args.root, args.partial)
    metrics = tuple(args.metrics) if args.metrics else None
    table, files = render(df, figure, args.out, x=args.x, metrics=metrics, name=args.name)
    stem = os.path.commonprefix([f.stem for f in files]).rstrip("_") or figure
    csv = args.out / f"{stem}_table.csv"
    table.to_csv(csv, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        sys.stdout.write(compact(table).to_string(index=False) + "\n")
    sys.stdout.write(base_line(df, [c for c in table if f"{c}_se" in table]))
    sys.stdout.write("".join(f"wrote {f}\n" for f in [*files, csv]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return draw(args)
    except (FileNotFoundError, KeyError, ValueError) as exc:  # AnalysisError, duplicates too
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        sys.stderr.write(f"error: {message}\n")
        return 2


def base_line(df: pd.DataFrame, metrics: list[str]) -> str:
    """The untrained base model's scores on the same metrics (the reference line)."""
    base = df[df["method.name"] == BASE_METHOD]
    have = [m for m in metrics if m in base]
    if base.empty or not have:
        return "base model: no method=none run found (see the preset header)\n"
    means = {m: pd.to_numeric(base[m], errors="coerce").mean() for m in have}
    shown = [f"{m.removeprefix('eval/')}={v:.3f}" for m, v in means.items() if pd.notna(v)]
    return "base model: " + ", ".join(shown) + "\n" if shown else ""  # e.g. drift: not scored


def compact(table: pd.DataFrame) -> pd.DataFrame:
    """The aggregated table for a terminal: ``mean +- se`` per metric (mean alone for one run),
    ``eval/`` and ``/acc`` dropped from the column names; the full table is in the CSV."""
    metrics = [c for c in table if f"{c}_se" in table]
    keys = [c for c in table if c not in metrics and not c.endswith(("_se", "_n"))]
    out = table[keys].copy()
    for m in metrics:
        name = m.removeprefix("eval/").removeprefix("train/")
        out[name] = [
            f"{v:.3f}" if pd.isna(se) else f"{v:.3f}+-{se:.3f}"
            for v, se in zip(table[m], table[f"{m}_se"], strict=True)
        ]
    return out
