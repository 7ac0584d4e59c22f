"""What ``experiment=laptop`` costs and reports, from its run directories (``make laptop``).

    python -m bapo_exp.analysis.laptop runs/laptop       # -> runs/laptop/results/summary.json

``make results`` copies ``runs/laptop/results/`` into the committed ``results/laptop/``.

Writes ``summary.json``: per run its method, each stage's wall seconds (from ``<stage>/DONE``),
the training pairs per second, the headline eval metrics with their chance flags, and the
machine (``env.json``). The README's "A real model on a laptop" table is generated from it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from bapo_exp.analysis.load import load_metrics, read_run
from bapo_exp.atomic import write_json_atomic
from bapo_exp.tracking.run_dir import RunDir

STAGES = ("reference", "train", "eval")
METRICS = ("mmlu/acc", "scienceqa/acc", "hhh/acc", "personal/pref_acc")


def run_record(root: Path) -> dict:
    """One run's costs and headline results; a stage that is not done is refused."""
    run = RunDir(root)
    missing = [s for s in STAGES if not run.is_done(s)]
    if missing:
        raise SystemExit(f"{root}: stages {missing} are not done; finish the run first")
    config = read_run(root)
    metrics = load_metrics(root)
    pairs_per_s = metrics["pairs_per_s"].dropna().tolist() if "pairs_per_s" in metrics else []
    evals = run.summary("eval") or {}
    chance = {m: bool(evals.get(m.replace("/acc", "/at_chance"))) for m in METRICS if "/acc" in m}
    env = run.read_json("env.json")
    return {
        "run": root.name,
        "method": config["method.name"],
        "model": config["model.name"],
        "stage_seconds": {s: run.stage_seconds(s) for s in STAGES},
        "train_steps": int(metrics["step"].nunique()),
        "train_pairs_per_s": statistics.median_high(pairs_per_s) if pairs_per_s else None,
        "eval": {m: evals.get(m) for m in METRICS},
        "eval_n": {m: evals.get(m.replace("/acc", "/n")) for m in METRICS if "/acc" in m},
        "at_chance": chance,
        "machine": {
            "cpu": env["device"].get("cpu"),
            "threads": env["device"].get("threads"),
            "torch": env.get("packages", {}).get("torch"),
        },
    }


def collect(folder: Path) -> list[dict]:
    runs = sorted(p.parent.parent for p in folder.glob("*/.hydra/config.yaml"))
    if not runs:
        raise SystemExit(f"{folder}: no runs (expected <run>/.hydra/config.yaml); run make laptop")
    return [run_record(r) for r in runs]


def markdown(summary: dict) -> str:
    """The README's table: one row per run, seconds per stage and the headline metrics."""
    runs = summary["runs"]
    machine = runs[0]["machine"]
    lines = [
        f"Measured by `make laptop` on {machine['cpu']} ({machine['threads']} threads), from a "
        "cold cache. Runs sharing a cache share the base responses, the reference log-probs and "
        "the converted model, so only the first run's reference stage pays for them. `*` marks "
        "a suite at chance (its `at_chance` flag):",
        "",
        "| method | reference s | train s (steps, pairs/s) | eval s | MMLU | ScienceQA | HHH | "
        "pref_acc (held-out pairs) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in runs:
        s, e = r["stage_seconds"], r["eval"]  # e: None where the run has no such metric
        cells = [_acc(r, m) for m in ("mmlu/acc", "scienceqa/acc", "hhh/acc")]
        lines.append(
            f"| {r['method']} | {_s(s['reference'])} | {_s(s['train'])} ({r['train_steps']}, "
            f"{r['train_pairs_per_s']:.2f}) | {_s(s['eval'])} | {' | '.join(cells)} | "
            f"{_num(e['personal/pref_acc'])} |"
        )
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _s(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds:.0f}"


def _acc(run: dict, metric: str) -> str:
    value = run["eval"][metric]
    star = "*" if run["at_chance"].get(metric) else ""
    return "n/a" if value is None else f"{_num(value)}{star} (n={run['eval_n'][metric]:.0f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bapo_exp.analysis.laptop", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("folder", type=Path, help="the laptop runs' folder (runs/laptop)")
    p.add_argument("--out", type=Path, default=None,
                   help="summary.json's folder (default: <folder>/results)")  # fmt: skip
    args = p.parse_args(argv)
    args.out = args.out or args.folder / "results"
    summary = {"runs": collect(args.folder)}
    write_json_atomic(args.out / "summary.json", summary)
    sys.stdout.write(markdown(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
