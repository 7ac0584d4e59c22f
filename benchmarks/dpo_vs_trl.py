"""Our DPO step against TRL's DPOTrainer: same model, data, batch, lengths and reference mode.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/dpo_vs_trl.py [--model tiny|smollm2]
      [--quick] [--repeats 3] [--steps 10] [--warmup 3] [--threads 2] [--modes online precomputed]

Needs TRL (``pip install -e '.[bench]'``); without it ``--quick`` runs our side only and says
that TRL's was skipped (the full run stops, naming the install command). Every (framework,
reference mode) runs in its own fresh subprocess, repeated with the order alternating between
repeats, so ``ru_maxrss`` is that configuration's own and slow drifts of the machine's load
hit both frameworks alike.

Settings shared by both: fp32 on CPU, 8 pairs x up to 128 tokens of synthetic token ids
(identical ids, one micro-batch of 8 pairs, chosen and rejected in one concatenated forward),
AdamW lr 1e-4 constant, clip 1.0, beta 0.1, no dropout, no gradient checkpointing. Models:
``tiny`` = a 7.2M-parameter Llama trained in full (online reference = a frozen copy for both);
``smollm2`` = SmolLM2-135M-Instruct with LoRA r=16 on q,k,v,o (online reference = the policy
with the adapter disabled, for both). Ours runs the loop's own ``train_step`` (policy_batch ->
policy_logps -> dpo_loss -> backward -> clip -> step); TRL runs ``DPOTrainer.train`` on the
same ids (its text tokenisation skipped). Our side uses the library's default attention,
``sdpa_unpadded`` (padding-free; ``--attn sdpa`` for the padded path); TRL gets ``sdpa``
(TRL 1.16's ``DPOConfig.padding_free`` is disabled: it falls back to padding with a warning).
Step time = gap between consecutive step ends, warm-up steps dropped; the figure is the median.
Writes benchmarks/results/dpo_vs_trl[_<model>].json.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import (
    CACHE,
    OURS_ATTN,
    TINY_BENCH,
    TRL_ATTN,
    finish,
    is_quick,
    load_smollm2,
    machine,
    max_rss_mib,
    our_parts,
    reset_peak_rss,
    rss_mib,
    run_worker,
    set_quick,
    set_threads,
    smollm2_config,
    stamp,
    step_stats,
    synthetic_pairs,
    time_our_steps,
    tiny_bench_model,
    tiny_tokenizer,
)

LR, BETA = 1e-4, 0.1


# ---------------------------------------------------------------- workers (one config each)
def vocab_of(model: str) -> int:
    """Token ids are drawn below this (the quick SmolLM2 stand-in's tokenizer has 512)."""
    return TINY_BENCH["vocab_size"] if model == "tiny" or is_quick() else 49152


def ours(spec: dict) -> dict:
    """Set up our loop, then time ``train_step``."""
    import torch

    from bapo_exp.modeling.policy import make_policy
    from bapo_exp.modeling.reference_model import Reference
    from bapo_exp.stages.train import online_ref_fn

    pairs = synthetic_pairs(spec["pairs"], spec["max_len"], vocab_of(spec["model"]), spec["seed"])
    online = spec["mode"] == "online"
    if spec["model"] == "tiny":
        model = tiny_bench_model(spec["seed"], attn=spec["attn"])
        frozen = copy.deepcopy(model).eval().requires_grad_(False) if online else None
        refs = lambda m: Reference(None, str(CACHE), frozen)  # noqa: E731  (full FT: a copy)
    else:
        model, _ = load_smollm2(attn=spec["attn"])
        torch.manual_seed(spec["seed"])
        model = make_policy(model, smollm2_config()).model
        refs = lambda m: Reference(smollm2_config(), str(CACHE), m)  # noqa: E731 (adapter off)
    factory = (lambda m, table: online_ref_fn(refs(m), table, "sum")) if online else None
    parts, train_cfg = our_parts(model, pairs, "dpo", online_ref=factory, lr=LR, seed=spec["seed"])
    ref = parts.ref_fn(list(range(spec["pairs"])), None) if not online else None
    setup = rss_mib()
    reset_peak_rss()
    stamps = time_our_steps(parts, train_cfg, spec["warmup"] + spec["steps"])
    return {
        "setup_rss_mib": setup["VmRSS"],
        "train_peak_rss_mib": rss_mib()["VmHWM"],
        "ref_chosen": ref.role("chosen").tolist() if ref else None,
        **step_stats(stamps, spec["warmup"], spec["pairs"]),
    }


def trl_model(spec: dict):
    if spec["model"] == "tiny":
        return tiny_bench_model(spec["seed"], attn=TRL_ATTN), tiny_tokenizer()
    import peft
    import torch

    model, tok = load_smollm2(attn=TRL_ATTN)
    torch.manual_seed(spec["seed"])
    lora = smollm2_config().lora
    cfg = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, cfg), tok


def trl(spec: dict) -> dict:
    """Set up TRL's DPOTrainer on the same ids, then time ``train``."""
    import datasets
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    class Pretokenized(DPOTrainer):
        def _prepare_dataset(self, dataset, *args, **kwargs):  # the ids are given
            return dataset

    class Stamps(TrainerCallback):
        def __init__(self):
            self.t: list[tuple[float, float]] = []

        def on_step_begin(self, args, state, control, **kw):
            if not self.t:
                self.t.append(stamp())

        def on_step_end(self, args, state, control, **kw):
            self.t.append(stamp())

    pairs = synthetic_pairs(spec["pairs"], spec["max_len"], vocab_of(spec["model"]), spec["seed"])
    ds = datasets.Dataset.from_dict(
        {"prompt_ids": pairs.prompt, "chosen_ids": pairs.chosen, "rejected_ids": pairs.rejected}
    )
    model, tok = trl_model(spec)
    precompute = spec["mode"] == "precomputed"
    ref_model = None
    if spec["model"] == "tiny" and not precompute:
        ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    stamps = Stamps()
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(
            output_dir=tmp,
            per_device_train_batch_size=spec["pairs"],
            gradient_accumulation_steps=1,
            max_steps=spec["warmup"] + spec["steps"],
            learning_rate=LR,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            max_grad_norm=1.0,
            beta=BETA,
            bf16=False,
            fp16=False,
            gradient_checkpointing=False,
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            precompute_ref_log_probs=precompute,
            max_length=None,
            use_cpu=True,
            seed=spec["seed"],
            dataloader_num_workers=0,
            disable_dropout=True,
            optim="adamw_torch",
            data_seed=spec["seed"],
            disable_tqdm=True,
        )
        trainer = Pretokenized(
            model=model,
            ref_model=ref_model,
            args=args,
            train_dataset=ds,
            processing_class=tok,
            callbacks=[stamps],
        )
        ref = trainer.train_dataset["ref_chosen_logps"] if precompute else None
        setup = rss_mib()
        reset_peak_rss()
        trainer.train()
    return {
        "setup_rss_mib": setup["VmRSS"],
        "train_peak_rss_mib": rss_mib()["VmHWM"],
        "ref_chosen": list(ref) if ref is not None else None,
        **step_stats(stamps.t, spec["warmup"], spec["pairs"]),
    }


def worker(spec: dict) -> None:
    set_quick(spec["quick"])
    set_threads(spec["threads"])
    import torch

    torch.manual_seed(spec["seed"])
    out = (ours if spec["framework"] == "ours" else trl)(spec)
    out["process_peak_rss_mib"] = max_rss_mib()
    print(json.dumps(out))


# ---------------------------------------------------------------- driver
def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["tiny", "smollm2"], default="tiny")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 repeat, 2 steps, QUICK_BENCH model, 2 pairs x 32 tokens "
                   "(smollm2); our side only without TRL")  # fmt: skip
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", type=int, default=None, help="default 8 (--quick smollm2: 2)")
    p.add_argument("--max-len", type=int, default=None, help="default 128 (--quick smollm2: 32)")
    p.add_argument("--modes", nargs="+", default=["online", "precomputed"])
    p.add_argument("--attn", default=OURS_ATTN, help="our side's attention (TRL: sdpa)")
    p.add_argument("--tag", default="", help="suffix of the results file name")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args()


def plan(args: argparse.Namespace) -> dict:
    small = args.model == "tiny"
    d = {"repeats": 3 if small else 2, "steps": 10 if small else 3, "warmup": 3 if small else 1}
    if args.quick:
        d = {"repeats": 1, "steps": 2 if small else 1, "warmup": 1}
    return {k: getattr(args, k) if getattr(args, k) is not None else v for k, v in d.items()}


def worker_spec(args: argparse.Namespace) -> dict:
    """What every worker gets (``plan``'s steps; ``--quick`` SmolLM2: 2 pairs x 32 tokens)."""
    small_quick = args.quick and args.model != "tiny"
    args.pairs = args.pairs or (2 if small_quick else 8)
    args.max_len = args.max_len or (32 if small_quick else 128)
    p = plan(args)
    return {"model": args.model, "pairs": args.pairs, "max_len": args.max_len, "seed": 0,
            "threads": args.threads, "steps": p["steps"], "warmup": p["warmup"],
            "attn": args.attn, "quick": args.quick}  # fmt: skip


def summarise(
    runs: list[dict], modes: list[str], frameworks: tuple[str, ...]
) -> tuple[dict, list[dict]]:
    """Per configuration medians, and per mode the ours/TRL ratios of each repeat's pair."""
    table, ratios = [], {}
    for mode in modes:
        for fw in frameworks:
            rs = [r for r in runs if r["framework"] == fw and r["mode"] == mode]
            table.append(
                {
                    "framework": fw,
                    "reference": mode,
                    "pairs_per_s": statistics.median(r["pairs_per_s"] for r in rs),
                    "step_s": statistics.median(r["step_s_median"] for r in rs),
                    "pairs_per_cpu_s": statistics.median(r["pairs_per_cpu_s"] for r in rs),
                    "train_peak_mib": max(r["train_peak_rss_mib"] for r in rs),
                    "process_peak_mib": max(r["process_peak_rss_mib"] for r in rs),
                    "setup_mib": max(r["setup_rss_mib"] for r in rs),
                }
            )
        if "trl" not in frameworks:
            continue
        pairs = [
            (o, t)
            for o in runs
            for t in runs
            if o["repeat"] == t["repeat"]
            and o["mode"] == t["mode"] == mode
            and o["framework"] == "ours"
            and t["framework"] == "trl"
        ]
        speed = [o["pairs_per_s"] / t["pairs_per_s"] for o, t in pairs]
        cpu = [o["pairs_per_cpu_s"] / t["pairs_per_cpu_s"] for o, t in pairs]
        ratios[mode] = {
            "speed_ours_over_trl": statistics.median(speed),
            "speed_per_repeat": [round(x, 3) for x in speed],
            "cpu_speed_ours_over_trl": statistics.median(cpu),
            "train_peak_ours_over_trl": statistics.median(
                o["train_peak_rss_mib"] / t["train_peak_rss_mib"] for o, t in pairs
            ),
            "process_peak_ours_over_trl": statistics.median(
                o["process_peak_rss_mib"] / t["process_peak_rss_mib"] for o, t in pairs
            ),
            "target_speed": 1.8,
        }
        ratios[mode]["speed_target_met"] = ratios[mode]["speed_ours_over_trl"] >= 1.8
        ratios[mode]["memory_target_met"] = ratios[mode]["train_peak_ours_over_trl"] <= 1.0
    return ratios, table


def same_references(runs: list[dict]) -> float | None:
    """Largest |ours - TRL| precomputed reference log-prob: the two saw the same model and ids."""
    o = next((r["ref_chosen"] for r in runs if r["framework"] == "ours" and r["ref_chosen"]), None)
    t = next((r["ref_chosen"] for r in runs if r["framework"] == "trl" and r["ref_chosen"]), None)
    return max(abs(a - b) for a, b in zip(o, t, strict=True)) if o and t else None


def frameworks_to_run(quick: bool) -> tuple[str, ...]:
    """Ours and TRL; without TRL installed, ours alone in a quick run, else an error."""
    import importlib.util

    if importlib.util.find_spec("trl") is not None:
        return ("ours", "trl")
    if not quick:
        raise SystemExit("dpo_vs_trl: TRL is not installed; pip install -e '.[bench]'")
    print("dpo_vs_trl --quick: TRL is not installed (pip install -e '.[bench]'): TRL's side "
          "skipped, ours runs alone, no ratio", file=sys.stderr)  # fmt: skip
    return ("ours",)


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    set_quick(args.quick)
    frameworks = frameworks_to_run(args.quick)
    p, base = plan(args), worker_spec(args)
    info = machine(args.threads)
    configs = [(fw, mode) for mode in args.modes for fw in frameworks]
    runs = []
    for rep in range(p["repeats"]):
        for fw, mode in configs if rep % 2 == 0 else configs[::-1]:
            t0 = time.perf_counter()
            res = run_worker(Path(__file__), {**base, "framework": fw, "mode": mode})
            runs.append(
                {
                    **res,
                    "framework": fw,
                    "mode": mode,
                    "repeat": rep,
                    "wall_s": round(time.perf_counter() - t0, 1),
                }
            )
            print(
                f"repeat {rep} {fw:4s} {mode:11s} {res['pairs_per_s']:.2f} pairs/s "
                f"train peak {res['train_peak_rss_mib']:.0f} MiB",
                file=sys.stderr,
            )
    ratios, table = summarise(runs, args.modes, frameworks)
    payload = {
        "benchmark": "dpo_vs_trl",
        "settings": {
            **base,
            "repeats": p["repeats"],
            "lr": LR,
            "beta": BETA,
            "dtype": "float32",
            "cache": str(CACHE),
        },
        "data": synthetic_pairs(args.pairs, args.max_len, vocab_of(args.model), 0).token_counts(),
        "machine": info,
        "summary": table,
        "ratios": ratios,
        "max_abs_ref_logp_diff_ours_vs_trl": same_references(runs),
        "runs": runs,
    }
    name = "dpo_vs_trl" if args.model == "tiny" else f"dpo_vs_trl_{args.model}"
    name += f"_{args.tag}" if args.tag else ""
    cols = [
        "framework",
        "reference",
        "pairs_per_s",
        "pairs_per_cpu_s",
        "step_s",
        "train_peak_mib",
        "process_peak_mib",
        "setup_mib",
    ]
    for mode, r in ratios.items():
        print(
            f"{mode}: ours/TRL speed x{r['speed_ours_over_trl']:.2f} wall, "
            f"x{r['cpu_speed_ours_over_trl']:.2f} CPU time (target >= 1.8), "
            f"training peak memory x{r['train_peak_ours_over_trl']:.2f} (target <= 1.0)"
        )
    finish(name, payload, table, cols)


if __name__ == "__main__":
    main()
