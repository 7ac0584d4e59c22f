"""A study cell and a 20-cell grid, through the checkpoint path and the in-training path (issue 24).

    python benchmarks/study_cell.py [--quick] [--sizes next|current] [--grid-cells 20] [--before]
    (or python -m benchmarks.study_cell ...)

The same ``experiment=study method=dpo`` cell (micro base, DPO, 80 steps) runs side by side with
``eval.in_training=false`` (the eval stage loads each kept checkpoint: the path before issue 24)
and ``eval.in_training=true`` (the train stage scores the model in memory, tasks and requests
built once), each as its own ``python -m bapo_exp`` process, and reports per cell the wall time
split into start-up (process, imports, config), reference, train and eval, and eval's share.
Then a grid of ``--grid-cells`` cells (data orders ``seed=0..N-1`` on base 0) runs both ways
with ``hydra/launcher=local_joblib`` (2 reused worker processes). Last, two micro bases are
pretrained both ways: one portable process per base, and ``ensure_micro_bases`` (several
processes at once, each pretraining its share).

``--before`` adds a third way, the checkpoint path of main before issue 24 (``BEFORE``, a
``git archive`` run from its own folder). It is off by default: since then the study preset
(conf/experiment/study.yaml, issue 25) moved to a larger world with a 1,400-step base and 12
knowledge subjects, so the same overrides give that commit another cell (another world, 560
knowledge items instead of 840), whose reference stage pretrains its own base: its figures are
not like for like. The like-for-like comparison with it is the loaded run committed in
``915b027`` (BENCHMARKS.md, issue 24 section).

Both ways start from the same warm caches (base pretrained, reference stage run once: cells of
a study share their base), each from its own copy, so neither reads generations the other one
wrote. ``--sizes next`` (default) is the next study's evaluation as issue 24 set it: 8 points,
200 generation prompts, 70 questions per knowledge subject (840 items over the study's 12
subjects; 560 over the 8 it had then) and 200 alignment items (``SIZES``, the only place they
are set); ``current`` is conf/experiment/study.yaml as committed.
Writes ``benchmarks/results/study_cell.json`` (``study_cell_current.json`` for current sizes).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# benchmarks/kernels.py would shadow the `kernels` package that transformers imports
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))
from benchmarks.common import REPO, finish, machine, set_quick  # noqa: E402

SIZES = {
    # the next study's evaluation (issue 24): 8 points (7 + the final step 80); 50 held-out
    # entities x 4 facts = 200 generation prompts (every held-out pair kept); 75 - 5 dev = 70
    # questions x the study's 12 knowledge subjects = 840 items (8 subjects, 560 items, when
    # issue 24 set these); 64 + 56 + 80 = 200 alignment
    "next": [
        "eval.at_steps=[10,20,30,40,50,60,70]",
        "eval.gen_prompts=200",
        "data.world.n_entities=75",
        "data.heldout_frac=0.67",
        "data.n_heldout=null",
        "data.world.n_harmful_test=64",
        "data.world.n_unknown_test=56",
        "data.world.n_helpful_test=80",
    ],  # fmt: skip
    "current": [],  # conf/experiment/study.yaml
}
# --quick: the same code path on a world, base and run this small (a smoke run, not a figure)
QUICK = ["model.micro.steps=60", "train.steps=6", "eval.at_steps=[3]", "eval.gen_prompts=8",
         "data.world.n_entities=12", "data.world.n_unknown_train=4",
         "data.world.n_unknown_test=4", "data.world.n_harmful_train=8",
         "data.world.n_harmful_test=6", "data.world.n_helpful_test=6",
         "data.n_train=16"]  # fmt: skip
CELL = ["experiment=study", "method=dpo", "logger=none", "model.micro.seed=0"]
WAYS = {"checkpoints": "eval.in_training=false", "in_training": "eval.in_training=true"}
BEFORE = "ce7b3a5"  # main before issue 24: the checkpoint path as the issue measured it
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TQDM_DISABLE": "1",
       "WANDB_MODE": "disabled", "BAPO_N_JOBS": "2"}  # fmt: skip


def timed(cmd: list[str], log: Path, cwd: Path = REPO) -> dict:
    """Run ``cmd`` in ``cwd`` (the repository); wall and CPU seconds (children's user + system).
    ``python -m bapo_exp`` imports the package found in ``cwd`` first (the editable install's
    finder comes after the working directory), so a checkout of another commit runs its code."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, env=ENV, stdout=fh, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ... failed ({rc}); see {log}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def bapo(*args: str) -> list[str]:
    return [sys.executable, "-m", "bapo_exp", *args]


def split(run: Path, wall: float) -> dict:
    """Wall time of one cell by part; the points evaluated in training count as eval."""
    stage = {s: json.loads((run / s / "DONE").read_text())["seconds"]
             for s in ("reference", "train", "eval")}  # fmt: skip
    points = [json.loads(p.read_text()) for p in run.glob("train/eval_points/*/point.json")]
    spent = sum(p["seconds"] for p in points)
    out = {"startup_s": wall - sum(stage.values()), "reference_s": stage["reference"],
           "train_s": stage["train"] - spent, "eval_s": stage["eval"] + spent}  # fmt: skip
    if points and all("model_seconds" in p for p in points):  # in training, this code's runs
        # the evaluated model's forwards alone: eval's share if nothing else in eval took time
        model = sum(p["model_seconds"] for p in points)
        out["eval_model_s"] = model
        out["eval_share_floor"] = model / (wall - out["eval_s"] + model)
    out = {k: round(v, 3 if k.endswith("share_floor") else 2) for k, v in out.items()}
    out["points_in_training"] = len(points)  # 0 through the checkpoints
    out["eval_share"] = round(out["eval_s"] / wall, 3)
    out["eval_points"] = len(json.loads((run / "eval" / "summary.json").read_text())
                             .get("at_steps", [])) + 1  # fmt: skip
    return out


def numbers(run: Path) -> dict:
    """Every point's summary without paths and wall times, and every generations file."""
    out = {}
    for path in sorted((run / "eval").rglob("summary.json")):
        s = json.loads(path.read_text())
        out[str(path.relative_to(run))] = {
            k: v for k, v in s.items() if k != "ckpt_path" and not k.endswith("wall_time_s")
        }
    for path in sorted((run / "eval").rglob("generations.jsonl")):
        out[str(path.relative_to(run))] = path.read_text()
    return out


def warm_cache(tmp: Path, sizes: list[str], cache: Path) -> dict:
    """Pretrain the base and run the reference stage once (cold timings, unless ``cache``
    already holds them); every run then starts from a copy of ``cache``."""
    run = tmp / "warmup"
    t = timed(bapo(*CELL, *sizes, "stages=[reference]", f"hydra.run.dir={run}",
                   f"paths.cache_dir={cache}"), tmp / "warmup.log")  # fmt: skip
    ref = json.loads((run / "reference" / "DONE").read_text())["seconds"]
    shutil.copytree(cache, tmp / "cache")
    return {"warmup_wall_s": t["wall_s"], "reference_s": ref}


def export_before(tmp: Path) -> Path:
    """The repository at ``BEFORE`` (``git archive``: no worktree, nothing in .git changes)."""
    out = tmp / f"repo_{BEFORE}"
    out.mkdir()
    archive = subprocess.run(["git", "archive", BEFORE], cwd=REPO, check=True,
                             capture_output=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(out)], input=archive, check=True)
    return out


def ways(tmp: Path, before: bool) -> dict[str, tuple[str | None, Path]]:
    """way -> (its eval.in_training override, the checkout it runs in)."""
    out: dict[str, tuple[str | None, Path]] = {w: (o, REPO) for w, o in WAYS.items()}
    if before:
        out = {f"before_{BEFORE}": (None, export_before(tmp)), **out}
    return out


def ratios(out: dict) -> None:
    """Wall and CPU time of each other way over the in-training path's (speedups)."""
    new = out["in_training"]
    for way in [w for w in out if w != "in_training" and isinstance(out[w], dict)]:
        tag = "" if way == "checkpoints" else f"_vs_{way.removeprefix('before_')}"
        out[f"speedup_wall{tag}"] = round(out[way]["wall_s"] / new["wall_s"], 2)
        out[f"speedup_cpu{tag}"] = round(out[way]["cpu_s"] / new["cpu_s"], 2)


def cells(tmp: Path, sizes: list[str], runs: dict) -> dict:
    out: dict = {}
    for way, (switch, cwd) in runs.items():
        cache = tmp / f"cache_{way}"
        shutil.copytree(tmp / "cache", cache)
        run = tmp / f"cell_{way}"
        cmd = [*CELL, *sizes, *([switch] if switch else []), f"hydra.run.dir={run}"]
        t = timed(bapo(*cmd, f"paths.cache_dir={cache}"), tmp / f"cell_{way}.log", cwd)
        out[way] = {**t, **split(run, t["wall_s"])}
        summary = json.loads((run / "eval" / "summary.json").read_text())
        out[way]["items"] = {k: summary.get(k) for k in ("synthetic_knowledge/n",
                             "synthetic_alignment/n", "gen/n")}  # fmt: skip
    new = numbers(tmp / "cell_in_training")
    out["identical_numbers"] = numbers(tmp / "cell_checkpoints") == new
    if (before := tmp / f"cell_before_{BEFORE}").exists():
        out[f"identical_numbers_to_{BEFORE}"] = numbers(before) == new
    ratios(out)
    return out


def grids(tmp: Path, sizes: list[str], n: int, runs_in: dict) -> dict:
    out: dict = {}
    seeds = ",".join(str(i) for i in range(n))
    for way, (switch, cwd) in runs_in.items():
        cache = tmp / f"gridcache_{way}"
        shutil.copytree(tmp / "cache", cache)
        runs = tmp / f"grid_{way}"
        cmd = ["-m", *CELL, *sizes, *([switch] if switch else []), f"seed={seeds}",
               "hydra/launcher=local_joblib", f"paths.runs_dir={runs}"]  # fmt: skip
        t = timed(bapo(*cmd, f"paths.cache_dir={cache}"), tmp / f"grid_{way}.log", cwd)
        report = json.loads((runs / "study" / "multirun_report.json").read_text())
        out[way] = {**t, "cells": report["counts"]}
    ratios(out)
    return out


PRETRAIN = """
import json, sys, dataclasses
from bapo_exp.synthetic import MicroTrainConfig, WorldConfig, micro_model_config
from bapo_exp.synthetic.pretrain import ensure_micro_base, ensure_micro_bases
steps, n, together, cache = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
specs = [(WorldConfig(), micro_model_config(seed=100 + b),
          MicroTrainConfig(steps=steps, seed=100 + b, progress=False)) for b in range(n)]
if together:
    ensure_micro_bases(specs, cache, processes=2)
else:
    for spec in specs:
        ensure_micro_base(*spec, cache)
"""


def pretraining(tmp: Path, n: int, steps: int) -> dict:
    """``n`` bases (seeds 100..) of the default world, one process per base, then together."""
    out: dict = {"bases": n, "steps": steps}
    for way, flag in (("one_process_per_base", "0"), ("together", "1")):
        cmd = [sys.executable, "-c", PRETRAIN, str(steps), str(n), flag, str(tmp / f"bases_{way}")]
        out[way] = timed(cmd, tmp / f"bases_{way}.log")
        out[way]["per_base_wall_s"] = round(out[way]["wall_s"] / n, 1)
    same = [sorted(p.name for p in (tmp / f"bases_{w}").glob("micro-*"))
            for w in ("one_process_per_base", "together")]  # fmt: skip
    out["same_folders"] = same[0] == same[1]
    out["speedup_wall"] = round(
        out["one_process_per_base"]["wall_s"] / out["together"]["wall_s"], 2
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke: a tiny world, 1-cell grid, no --before"
    )
    parser.add_argument("--sizes", choices=list(SIZES), default="next")
    parser.add_argument("--grid-cells", type=int, default=20)
    parser.add_argument("--pretrain-bases", type=int, default=2)
    parser.add_argument("--keep", help="keep the runs in this folder (default: a temporary one)")
    parser.add_argument("--cache", help="warm-up cache folder, kept (default: a fresh one)")
    parser.add_argument(
        "--before",
        action="store_true",
        help=f"add a third way: the checkpoint path at commit {BEFORE} (not the same cell since "
        "the study preset changed: see the module docstring)",
    )
    args = parser.parse_args()
    set_quick(args.quick)  # --quick writes into the scratch folder, never benchmarks/results/
    n_grid = 1 if args.quick else args.grid_cells
    sizes = QUICK if args.quick else SIZES[args.sizes]
    payload: dict = {"machine": machine(1), "settings": {
        "sizes": args.sizes, "overrides": [*CELL, *sizes], "grid_cells": n_grid,
        "launcher": "local_joblib, 2 workers", "quick": args.quick, "before": BEFORE}}  # fmt: skip
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="study_cell_"))
    tmp.mkdir(parents=True, exist_ok=True)
    payload["warmup"] = warm_cache(tmp, sizes, Path(args.cache or tmp / "warm_cache"))
    runs = ways(tmp, args.before and not args.quick)
    payload["cell"] = cells(tmp, sizes, runs)
    payload["grid"] = grids(tmp, sizes, n_grid, runs)
    payload["pretraining"] = pretraining(tmp, args.pretrain_bases, 20 if args.quick else 800)
    rows = [{"way": w, **{k: v for k, v in payload["cell"][w].items() if k != "items"}}
            for w in runs]  # fmt: skip
    for w in runs:
        rows.append({"way": f"grid of {n_grid}: {w}", **payload["grid"][w]})
    name = "study_cell" if args.sizes == "next" else f"study_cell_{args.sizes}"
    finish(name, payload, rows, ["way", "wall_s", "cpu_s", "startup_s", "reference_s",
                                 "train_s", "eval_s", "eval_share", "eval_model_s",
                                 "eval_share_floor", "eval_points"])  # fmt: skip
    print(json.dumps({k: payload[k] for k in ("cell", "grid", "pretraining")}, indent=1))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
