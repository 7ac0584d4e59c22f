"""BAPO vs DPO base-response drift on the same data and steps, through the real train stage.

    .venv/bin/python benchmarks/drift_bapo_vs_dpo.py [--steps 40] [--seeds 0 1 2] [--quick]

Tiny random model (debug=tiny), DSP "academy" pairs, one config per (method, seed); reports the
final fixed-probe drifts logp_theta(y) - logp_ref(y) of the base responses (summed and per
token), chosen and rejected responses, per run and as mean and spread (population std) over
seeds. Writes benchmarks/results/drift_bapo_vs_dpo.json. A measurement, not an assertion.
``--quick``: 2 steps, seed 0, written to runs/benchmarks_quick/ (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import results_dir, set_quick  # benchmarks/common.py (scripts run from here)
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
KEYS = ["probe/drift/base", "probe/drift/base_per_token", "probe/drift/chosen",
        "probe/drift/rejected", "reward_margin", "pref_acc", "loss"]  # fmt: skip


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from bapo_exp.run.register import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return OmegaConf.to_object(hydra_compose(config_name="config", overrides=overrides))


def one_run(method: str, seed: int, steps: int, cache: Path, out: Path) -> dict:
    from bapo_exp.run.main import run_stages, seed_everything
    from bapo_exp.tracking.run_dir import RunDir

    cfg = compose(["debug=tiny", f"method={method}", f"seed={seed}", "stages=[reference,train]",
                   f"paths.cache_dir={cache}", "data.preferences=[academy]", "data.n_train=32",
                   f"train.steps={steps}", "train.batch_size=4", "train.lr=1e-3",
                   "train.warmup_steps=0", "train.schedule=constant", "train.probe_size=16",
                   f"train.ckpt_every={steps + 1}", "model.max_response_tokens=32",
                   "model.max_prompt_tokens=32"])  # fmt: skip
    seed_everything(seed, cfg.model.threads)
    run = RunDir(out / f"{method}_seed{seed}")
    run_stages(cfg, run, {})
    last = json.loads((run.root / "train/metrics.jsonl").read_text().splitlines()[-1])
    return {k: last[k] for k in KEYS}


def spread(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.pstdev(values),
            "min": min(values), "max": max(values)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 steps, seed 0")
    args = ap.parse_args()
    set_quick(args.quick)
    if args.quick:
        args.steps, args.seeds = 2, [0]
    t0 = time.perf_counter()
    runs: dict[str, dict[int, dict]] = {"dpo": {}, "bapo": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for method in runs:
            for seed in args.seeds:
                runs[method][seed] = one_run(method, seed, args.steps, Path(tmp) / "cache",
                                             Path(tmp))  # fmt: skip
    summary = {m: {k: spread([r[k] for r in rs.values()]) for k in KEYS} for m, rs in runs.items()}
    gap = [runs["bapo"][s]["probe/drift/base"] - runs["dpo"][s]["probe/drift/base"]
           for s in args.seeds]  # fmt: skip
    result = {
        "setting": {"model": "tiny (debug=tiny, LoRA)", "data": "dsp academy, 32 train pairs",
                    "steps": args.steps, "batch_size": 4, "lr": 1e-3, "schedule": "constant",
                    "bapo_anchor": "default (hinge, weight 1, summed)", "seeds": args.seeds},
        "runs": runs, "summary": summary,
        "bapo_minus_dpo_base_drift_per_seed": gap,
        "bapo_base_drift_at_or_above_dpo_in_every_seed": all(g >= 0 for g in gap),
        "seconds": time.perf_counter() - t0,
    }  # fmt: skip
    path = results_dir() / "drift_bapo_vs_dpo.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(json.dumps(summary, indent=1), "\nwrote", path)  # noqa: T201 (a script, not the library)


if __name__ == "__main__":
    main()
