"""The study (issue 17): from the runs of ``make study`` to the verdicts, figures and tables.

    python -m bapo_exp.analysis.study runs/study --out runs/study/results   # make study does this
    python -m bapo_exp.analysis.study results/study --markdown         # README's results section

Two steps. ``collect`` reads the run folders into one tidy table, a row per (cell, evaluated
step), written as ``results/study/cells.csv`` and committed: the single source of every number
the study reports. ``analyse`` turns that table into the verdicts of each claim
(``verdicts.csv``), the figures and the markdown; the README's results section is that markdown
(``tests/test_readme.py`` checks that it is).

Columns of ``cells.csv``: ``cell`` (folder), ``base`` (the micro base's pretraining seed: the
random factor), ``seed`` (data order), ``method`` (a label with its setting: ``DPO``,
``BAPO lambda=0.01``, ``MRPO eps=0.1``, ``base`` for the untrained model), ``step`` (the
curve's strength; the base is step 0), ``x`` (generated personalisation: the share of greedy
answers on held-out prompts written in the preferred style), ``knowledge`` (the synthetic MMLU
in the neutral wording), ``knowledge_pref`` (the same questions in the preferred style's
wording), ``alignment`` (the synthetic HHH, pooled), ``pref_acc`` (held-out likelihood preference
accuracy), the design columns ``exposure`` (the preferred style's share of the base's
pretraining answers), ``n_pairs``, ``preferences``, ``k_prefs``, the measured heterogeneity
``distance`` (METHODS 7, per-token NLL of y_w minus y_b under the base) and ``clip_frac``
(MRPO: share of the second reference's log-probs CTRO clipped, mean over logged steps).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bapo_exp.analysis.claims import DESIGN
from bapo_exp.analysis.load import load_curves
from bapo_exp.multirun import REPORT, report_problems

KEYS = ["cell", "base", "seed", "method", "step"]
METRICS = ["x", "x_base", "knowledge", "knowledge_pref", "knowledge_all", "alignment",
           "pref_acc"]  # fmt: skip
ERRORS = ["x_se", "x_n", "knowledge_se", "knowledge_n", "alignment_se", "alignment_n"]
EXTRA = ["distance", "clip_frac", "base_fingerprint"]
COLUMNS = [*KEYS, *DESIGN, *METRICS, *ERRORS, *EXTRA]
SOURCE = {
    "x": "eval/gen/style_share",
    "x_base": "eval/gen/base_style_share",
    "knowledge": "eval/synthetic_knowledge/neutral/acc",
    "knowledge_all": "eval/synthetic_knowledge/acc",
    "alignment": "eval/synthetic_alignment/acc",
    "x_se": "eval/gen/style_share_stderr",
    "x_n": "eval/gen/n",
    "knowledge_se": "eval/synthetic_knowledge/neutral/acc_stderr",
    "knowledge_n": "eval/synthetic_knowledge/neutral/n",
    "alignment_se": "eval/synthetic_alignment/acc_stderr",
    "alignment_n": "eval/synthetic_alignment/n",
    "pref_acc": "eval/personal/pref_acc",
    "distance": "het/nll_distance",
}


def method_label(row: pd.Series) -> str:
    """``DPO``, ``BAPO lambda=0.01 margin=1``, ``MRPO eps=0.5``, ``base`` (a label per setting
    the study varies; settings left at their default are not named)."""
    name = row.get("method.name")
    if name == "none":
        return "base"
    if name == "bapo":
        parts = [f"BAPO lambda={_num(row['method.anchor.weight'])}"]
        if float(row.get("method.anchor.margin", 0) or 0):
            parts.append(f"margin={_num(row['method.anchor.margin'])}")
        for key, default in (("reduce", "sum"), ("type", "hinge"), ("prompts", "train")):
            value = row.get(f"method.anchor.{key}", default)
            if value != default:
                parts.append(f"{key}={value}")
        return " ".join(parts)
    if name == "mrpo":
        return f"MRPO eps={_num(row['method.ctro_eps'])}"
    if name == "dpo_rescaled":
        return f"DPO rescaled eps={_num(row['method.ctro_eps'])}"
    return str(name).upper()


def _num(value) -> str:
    return f"{float(value):g}"


def _clip_frac(run_dir: str) -> float:
    """MRPO's ``mrpo/clip_frac_1`` averaged over the logged training steps (NaN otherwise)."""
    path = Path(run_dir) / "train" / "metrics.jsonl"
    if not path.exists():
        return float("nan")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    values = [r["mrpo/clip_frac_1"] for r in rows if "mrpo/clip_frac_1" in r]
    return sum(values) / len(values) if values else float("nan")


def _first(df: pd.DataFrame, *columns: str) -> pd.Series:
    """The first of ``columns`` the table has, filled from the next ones where it is missing."""
    have = [c for c in columns if c in df]
    if not have:
        raise KeyError(f"none of {list(columns)} in the runs' configs")
    out = df[have[0]]
    for c in have[1:]:
        out = out.fillna(df[c])
    return out


def tidy(curves: pd.DataFrame) -> pd.DataFrame:
    """The raw curves (``load_curves``) as the study's columns (module docstring)."""
    prefs = curves["data.preferences"].astype(str)
    out = pd.DataFrame(
        {
            "cell": curves["run_dir"].map(lambda p: Path(p).name),
            "base": curves["model.micro.seed"].astype(int),
            "seed": curves["seed"].astype(int),
            "method": curves.apply(method_label, axis=1),
            "step": curves["step"].astype(int),
            "exposure": pd.to_numeric(
                _first(
                    curves,
                    "model.micro.style_exposure.concise",
                    "data.world.style_exposure.concise",
                )
            ),
            "n_pairs": pd.to_numeric(curves["data.n_train"]),
            "preferences": prefs,
            "k_prefs": prefs.str.count(",") + 1,
        }
    )
    for col, key in SOURCE.items():
        out[col] = pd.to_numeric(curves.get(key), errors="coerce")
    wording = "eval/synthetic_knowledge/" + prefs.str.split(",").str[0] + "/acc"
    out["knowledge_pref"] = [curves.at[i, w] if w in curves else None for i, w in wording.items()]
    out["clip_frac"] = curves["run_dir"].map(_clip_frac)
    out["base_fingerprint"] = curves.get("eval/base_fingerprint")
    return out[COLUMNS].sort_values(KEYS).reset_index(drop=True)


def failed_cells(root: Path) -> list[str]:
    """Cells the multiruns under ``root`` reported failed or unfinished (``reports/*.json``, one
    per preset, written by make study; else the folder's last ``multirun_report.json``)."""
    reports = sorted((root / "reports").glob("*.json")) or [root / REPORT]
    return [f"{path.stem}: {problem.get('status')} {problem.get('run_dir')}"
            for path in reports for problem in report_problems(path)]  # fmt: skip


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
    curves = load_curves(root)
    if curves.empty:
        raise FileNotFoundError(f"no complete run under {root}: run `make study` first")
    return tidy(curves)


def read_cells(path: str | Path) -> pd.DataFrame:
    """``cells.csv`` as written by :func:`collect` (the committed source of the results)."""
    return pd.read_csv(path, dtype={"preferences": str, "base_fingerprint": str})


def _git_sha() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent)  # fmt: skip
    return out.stdout.strip() or None


def _runs_git_sha(root: Path) -> list[str]:
    """The commits the runs under ``root`` were made with (their ``env.json``)."""
    shas = {json.loads(p.read_text()).get("git_sha") for p in Path(root).glob("*/env.json")}
    return sorted(str(s) for s in shas if s)


def wall_text(seconds: float | None) -> str:
    return (
        "an unrecorded time"
        if seconds is None
        else f"{int(seconds) // 60} min {int(seconds) % 60} s"
    )


def load_or_collect(
    root: Path, out: Path, wall: float | None, partial: bool = False
) -> tuple[pd.DataFrame, dict]:
    """From ``results/study`` (``cells.csv`` + ``meta.json``) or from run folders (then written
    to ``out``)."""
    if (root / "cells.csv").exists():
        return read_cells(root / "cells.csv"), json.loads((root / "meta.json").read_text())
    cells = collect(root, partial)
    meta = {"n_cells": int(cells["cell"].nunique()), "wall_seconds": wall, "wall": wall_text(wall),
            "git_sha": _git_sha(), "runs_git_sha": _runs_git_sha(root),
            "unfinished_cells": len(failed_cells(root))}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    cells.to_csv(out / "cells.csv", index=False)
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return read_cells(out / "cells.csv"), meta


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bapo_exp.analysis.study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "root",
        type=Path,
        help="runs/study (run folders) or results/study (its cells.csv and meta.json)",
    )
    p.add_argument("--out", type=Path, default=None,
                   help="where cells.csv, meta.json, verdicts.csv, RESULTS.md and the figures go "
                   "(default: root, when it is a results folder)")  # fmt: skip
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
        help="analyse the finished cells although some failed or did not finish (recorded in "
        "meta.json and printed with the results)",
    )
    p.add_argument(
        "--demo",
        action="store_true",
        help="the demo's results: its table (printed) and frontier figures, no verdicts",
    )
    return p


def demo(args: argparse.Namespace, cells: pd.DataFrame, meta: dict, out: Path) -> int:
    """``make demo``'s last step: print the table, draw the frontier per preference."""
    from bapo_exp.analysis.readme import demo_markdown
    from bapo_exp.analysis.study_figures import demo as demo_figures

    text = demo_markdown(cells, meta)
    (out / "DEMO.md").write_text(text)
    sys.stdout.write(text)
    if not args.no_figures:
        for path in demo_figures(cells, out):
            sys.stdout.write(f"wrote {path}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    from bapo_exp.analysis.claims import verdict_table
    from bapo_exp.analysis.study_report import markdown

    args = build_parser().parse_args(argv)
    out = args.out or args.root
    try:
        cells, meta = load_or_collect(args.root, out, args.wall_seconds, args.partial)
    except (FileNotFoundError, KeyError, ValueError) as err:
        sys.stderr.write(f"error: {err}\n")
        return 2
    if args.demo:
        return demo(args, cells, meta, out)
    verdicts = verdict_table(cells)
    text = markdown(cells, verdicts, meta)
    if args.markdown:
        sys.stdout.write(text)
    out.mkdir(parents=True, exist_ok=True)
    verdicts.assign(per_base=verdicts["per_base"].map(json.dumps)).to_csv(
        out / "verdicts.csv", index=False
    )
    (out / "RESULTS.md").write_text(text)
    if not args.no_figures:
        from bapo_exp.analysis.study_figures import draw_all

        draw_all(cells, verdicts, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
