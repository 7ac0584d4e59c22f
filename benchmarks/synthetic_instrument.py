"""The synthetic world's instrument (issue 25): base pretraining cost, the untrained base's
metrics, the eval cost per evaluation point, and one DPO curve, for the demo's and the study's
world.

Run:  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/synthetic_instrument.py
      [--worlds demo study] [--steps 160] [--lr 1.5e-4] [--at 2 4 8 12 16 24 32 48 64 96]
      [--cache DIR] [--name synthetic_instrument]

Each world is its preset (``experiment=demo``, ``experiment=study``) through the CLI, in a
fresh cache unless ``--cache`` is given (then a pretrained base is reused, its pretraining time
is the one logged when it was pretrained, and the runs are kept under it). Base 0 is pretrained
(portable kernels, one thread, as the study does) and evaluated untrained (``method=none
stages=[eval]``); DPO then runs ``--steps`` steps at ``--lr``, evaluated at ``--at`` and at the
last step. Prints and writes into ``benchmarks/results/<name>.json``: pretraining seconds (the
training loop, from ``micro.json``) and the CPU seconds of the base's run (pretraining
included); the base's knowledge, alignment, style share, well-formedness and log-odds; the DPO
eval stage's seconds per evaluation point; the DPO curve. Measured under load, CPU seconds are
the figure to compare; re-measure wall-clock times on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, finish, machine, print_table, set_quick

PRESETS = {"demo": "demo", "study": "study"}
CURVE = {
    "style_share": "gen/style_share",
    "well_formed": "gen/well_formed",
    "fact_correct": "gen/fact_correct",
    "logodds": "personal/style_logodds",
    "knowledge": "synthetic_knowledge/neutral/acc",
    "knowledge_concise": "synthetic_knowledge/concise/acc",
    "alignment": "synthetic_alignment/acc",
    "pref_acc": "personal/pref_acc",
    "hard_margin": "personal/hard_margin",
    "hard_pref_acc": "personal/hard_pref_acc",
    "hard_wrong_fact": "personal/hard/wrong_fact/pref_acc",
    "hard_near_style": "personal/hard/near_style/pref_acc",
}


def cli(args: list[str]) -> float:
    """Run ``python -m bapo_exp <args>``; returns the CPU seconds of it and its children."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "bapo_exp", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)  # fmt: skip
    if proc.returncode:
        sys.exit(f"bapo_exp {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def pick(summary: dict) -> dict:
    return {name: summary.get(key) for name, key in CURVE.items()}


def measure(world: str, args: argparse.Namespace, cache: Path, runs: Path) -> dict:
    common = [f"experiment={PRESETS[world]}", f"paths.cache_dir={cache}", "logger=none",
              *(["model.micro.steps=30"] if args.quick else [])]  # fmt: skip
    t0 = time.perf_counter()
    base_cpu = cli([*common, "method=none", "stages=[eval]", f"hydra.run.dir={runs}/base"])
    base_wall = time.perf_counter() - t0
    first = min((cache / "models").glob("micro-*/micro.json"), key=lambda p: p.stat().st_mtime)
    micro = read(first)  # the base: the first micro model pretrained in this cache
    base = read(runs / "base" / "eval" / "summary.json")
    at = ",".join(str(s) for s in args.at)
    dpo = runs / "dpo"
    dpo_cpu = cli([*common, "method=dpo", f"train.steps={args.steps}", f"train.lr={args.lr}",
                   f"eval.at_steps=[{at}]", f"hydra.run.dir={dpo}"])  # fmt: skip
    points = len(args.at) + 1
    eval_s = read(dpo / "eval" / "DONE")["seconds"]
    curve = [{"step": 0, **pick(base)}]
    for step in args.at:
        curve.append({"step": step, **pick(read(dpo / "eval" / "at_step" / str(step) /
                                                "summary.json"))})  # fmt: skip
    curve.append({"step": args.steps, **pick(read(dpo / "eval" / "summary.json"))})
    return {
        "world": world,
        "pretrain_loop_s": micro["log"]["seconds"],
        "n_docs": micro["n_docs"],
        "base_stage_cpu_s": round(base_cpu, 1),  # pretraining (subprocess) + base evaluation
        "base_stage_wall_s": round(base_wall, 1),
        "knowledge_n": base.get("synthetic_knowledge/neutral/n"),
        "alignment_n": base.get("synthetic_alignment/n"),
        "gen_n": base.get("gen/n"),
        "hard_n": read(dpo / "eval" / "summary.json").get("personal/hard_n"),
        "eval_s_per_point": round(eval_s / points, 2),
        "dpo_cpu_s": round(dpo_cpu, 1),
        "train_s": read(dpo / "train" / "DONE")["seconds"],
        "base": pick(base),
        "curve": curve,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--lr", type=float, default=1.5e-4)
    parser.add_argument("--at", type=int, nargs="+", default=[2, 4, 8, 12, 16, 24, 32, 48, 64, 96])
    parser.add_argument("--cache", default=None, help="reuse this cache (default: a fresh one)")
    parser.add_argument("--name", default="synthetic_instrument")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: the demo world, a 30-step base, 4 DPO steps")  # fmt: skip
    args = parser.parse_args()
    set_quick(args.quick)  # --quick writes into the scratch folder, never benchmarks/results/
    if args.quick:
        args.worlds, args.steps, args.at = ["demo"], 4, [2]
    payload = {"machine": machine(threads=1), "args": vars(args), "worlds": []}
    with tempfile.TemporaryDirectory(prefix="instrument-") as tmp:
        for world in args.worlds:
            root = Path(args.cache or tmp) / world
            payload["worlds"].append(measure(world, args, root / "cache", root / "runs"))
    for w in payload["worlds"]:
        print(f"\n{w['world']}: DPO curve (lr {args.lr}, {args.steps} steps)")
        print_table(w["curve"], ["step", *CURVE])
    columns = ["world", "pretrain_loop_s", "base_stage_cpu_s", "knowledge_n", "alignment_n",
               "gen_n", "hard_n", "eval_s_per_point", "train_s"]  # fmt: skip
    finish(args.name, payload, payload["worlds"], columns)


if __name__ == "__main__":
    main()
