"""BAPO and MRPO (K = 2, 3) step time relative to DPO, precomputed references, the real loop.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/method_overhead.py [--quick]
      [--rounds 4] [--steps 3] [--threads 2] [--pairs 8] [--max-len 128]

One process, one policy per method (each a copy of the same 7.2M-parameter tiny Llama, full
fine-tuning), each driven by the loop's own ``train_step``. After one warm-up step per method,
the methods take turns: each round times ``--steps`` steps of every method, in an order that
rotates between rounds, so load changes on the machine hit all methods alike. The ratio to DPO
is taken within each round and the median over rounds is reported, for wall and CPU time.
BAPO also scores the base responses y_b (3 sequences per pair instead of 2), so its forward is
1.5x DPO's tokens; MRPO only reads K-1 more precomputed reference columns. Targets (issue #10):
MRPO K=3 <= 1.05x DPO, BAPO <= 1.6x. Writes benchmarks/results/method_overhead.json.
"""

from __future__ import annotations

import argparse
import copy
import statistics

from common import (
    TINY_BENCH,
    finish,
    machine,
    our_parts,
    set_quick,
    set_threads,
    stamp,
    synthetic_pairs,
    tiny_bench_model,
)

METHODS = {"dpo": ("dpo", 1), "bapo": ("bapo", 1), "mrpo_k2": ("mrpo", 2), "mrpo_k3": ("mrpo", 3)}
TARGETS = {"mrpo_k3": 1.05, "bapo": 1.6}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: QUICK_BENCH model, 1 round")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--steps", type=int, default=None, help="steps per method per round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    return p.parse_args()


def timed_steps(parts, train_cfg, start: int, n: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``n`` ``train_step`` calls."""
    from bapo_exp.training.loop import train_step

    wall, cpu = [], []
    for step in range(start, start + n):
        t0 = stamp()
        train_step(parts, train_cfg, step)
        t1 = stamp()
        wall.append(t1[0] - t0[0])
        cpu.append(t1[1] - t0[1])
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    args = parse_args()
    set_quick(args.quick)
    rounds = args.rounds or (1 if args.quick else 4)
    steps = args.steps or (1 if args.quick else 3)
    set_threads(args.threads)
    info = machine(args.threads)
    pairs = synthetic_pairs(args.pairs, args.max_len, TINY_BENCH["vocab_size"], seed=0)
    model = tiny_bench_model(0)
    built = {}
    for key, (method, k) in METHODS.items():
        built[key] = our_parts(copy.deepcopy(model), pairs, method, k_refs=k)
        timed_steps(*built[key], 0, 1)  # warm-up
    per_round: list[dict[str, tuple[float, float]]] = []
    keys = list(METHODS)
    for r in range(rounds):
        order = keys[r % len(keys) :] + keys[: r % len(keys)]
        per_round.append({key: timed_steps(*built[key], 1 + r * steps, steps) for key in order})
    table, summary = [], {}
    for key in keys:
        wall = [rd[key][0] / rd["dpo"][0] for rd in per_round]
        cpu = [rd[key][1] / rd["dpo"][1] for rd in per_round]
        summary[key] = {
            "step_s": statistics.median(rd[key][0] for rd in per_round),
            "cpu_s": statistics.median(rd[key][1] for rd in per_round),
            "ratio_wall": statistics.median(wall),
            "ratio_cpu": statistics.median(cpu),
            "ratio_wall_per_round": [round(x, 3) for x in wall],
            "ratio_cpu_per_round": [round(x, 3) for x in cpu],
            "target": TARGETS.get(key),
        }
        if key in TARGETS:
            summary[key]["target_met_wall"] = summary[key]["ratio_wall"] <= TARGETS[key]
            summary[key]["target_met_cpu"] = summary[key]["ratio_cpu"] <= TARGETS[key]
        table.append(
            {
                "method": key,
                **{
                    k: summary[key][k]
                    for k in ("step_s", "cpu_s", "ratio_wall", "ratio_cpu", "target")
                },
            }
        )
    payload = {
        "benchmark": "method_overhead",
        "machine": info,
        "settings": {
            "rounds": rounds,
            "steps_per_round": steps,
            "pairs": args.pairs,
            "max_len": args.max_len,
            "reference": "precomputed",
            "model": f"tiny bench Llama {'(quick) ' if args.quick else ''}"
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M, full fine-tuning, fp32",
            "quick": args.quick,
        },
        "data": pairs.token_counts(),
        "summary": summary,
    }
    finish(
        "method_overhead",
        payload,
        table,
        ["method", "step_s", "cpu_s", "ratio_wall", "ratio_cpu", "target"],
    )


if __name__ == "__main__":
    main()
