"""Print a results folder's aggregated table and draw its figure.

python -m bapo_exp.analysis runs/frontier --figure frontier --out notebooks/figures
python -m bapo_exp.analysis runs/fig2_knowledge_retention          # figure from the preset name
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from bapo_exp.analysis.figures import FIGURES, figure_for, render
from bapo_exp.analysis.load import load_runs


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bapo_exp.analysis", description=__doc__)
    p.add_argument("root", type=Path, help="results folder, e.g. runs/fig5_drift")
    p.add_argument("--figure", default="auto", choices=["auto", *FIGURES])
    p.add_argument("--out", type=Path, default=Path("notebooks/figures"))
    p.add_argument("--name", default=None, help="file stem of the figure (default: the runs' name)")
    p.add_argument("--x", default=None, help="personalisation column for the frontier")
    p.add_argument("--metrics", nargs="+", default=None, help="columns to plot, e.g. eval/hhh/acc")
    p.add_argument(
        "--base",
        type=Path,
        default=None,
        help="folder of base-model runs (method=none); default <root>/../base_model",
    )
    return p.parse_args(argv)


def load_with_base(root: Path, base: Path | None) -> pd.DataFrame:
    """Complete runs under ``root`` plus the base-model runs of the same models."""
    df = load_runs(root)
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
        b = load_runs(base, complete_only=True)
        b = b[(b["method.name"] == "none") & b["model.name"].isin(df["model.name"])]
        df = pd.concat([df, b], ignore_index=True)
    return df


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    df = load_with_base(args.root, args.base)
    if df.empty:
        sys.stderr.write(f"no complete run under {args.root}\n")
        return 1
    figure = figure_for(df) if args.figure == "auto" else args.figure
    metrics = tuple(args.metrics) if args.metrics else None
    try:
        table, files = render(df, figure, args.out, x=args.x, metrics=metrics, name=args.name)
    except (KeyError, ValueError) as exc:  # a metric or figure the runs cannot give
        sys.stderr.write(f"error: {exc}\n")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = os.path.commonprefix([f.stem for f in files]).rstrip("_") or figure
    csv = args.out / f"{stem}_table.csv"
    table.to_csv(csv, index=False)
    with pd.option_context("display.width", 250, "display.max_columns", 50):
        sys.stdout.write(compact(table).to_string(index=False) + "\n")
    sys.stdout.write(base_line(df, [c for c in table if f"{c}_se" in table]))
    sys.stdout.write("".join(f"wrote {f}\n" for f in [*files, csv]))
    return 0


def base_line(df: pd.DataFrame, metrics: list[str]) -> str:
    """The untrained base model's scores on the same metrics (the reference line)."""
    base = df[df["method.name"] == "none"]
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
