"""HHH evaluation throughput (comparisons per second) through our lm-eval tasks.

Run:  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/eval_throughput.py
      [--quick] [--models tiny smollm2] [--limit-tiny 0] [--limit-smollm2 10] [--threads 2]

Each model is scored on HHH (``bapo_exp.evaluation.harness.evaluate``, suite ``hhh``, lm-eval's
``HFLM`` on the in-memory model, batch size 8) once with limit 1 as a warm-up (task building,
first-call overheads), then with the limit per HHH subset (0 = all 221 comparisons). A
comparison is one HHH item: two candidate answers scored by log-likelihood. Models: the
package's tiny test Llama (``TinyConfig`` with 4096 positions, its own tokenizer) and
SmolLM2-135M-Instruct (fp32).
Writes benchmarks/results/eval_throughput.json.
"""

from __future__ import annotations

import argparse
import time

from common import CACHE, REPO, finish, load_smollm2, machine, set_threads


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="limits 5 (tiny) and 2 (smollm2)")
    p.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    p.add_argument("--limit-tiny", type=int, default=0, help="per HHH subset; 0 = all")
    p.add_argument("--limit-smollm2", type=int, default=10, help="per HHH subset; 0 = all")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    return p.parse_args()


def load(name: str):
    if name == "smollm2":
        return load_smollm2(trainable=False)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.config import TinyConfig
    from bapo_exp.modeling.tiny import ensure_tiny

    # The tiny byte-level BPE makes HHH texts long: room for them (RoPE, no learned positions).
    folder = ensure_tiny(TinyConfig(max_position_embeddings=4096), CACHE / "models")
    return AutoModelForCausalLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(
        folder
    )


def measure(name: str, limit: int | None, args: argparse.Namespace) -> dict:
    from bapo_exp.evaluation import evaluate, flatten

    model, tok = load(name)
    kw = {"suites": ["hhh"], "data_root": args.data_root, "batch_size": args.batch_size}
    evaluate(model, tok, limit=1, **kw)  # warm-up
    t0 = time.perf_counter()
    c0 = time.process_time()
    record = evaluate(model, tok, limit=limit, **kw)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    flat = flatten(record)
    subsets = [k for k in flat if k.startswith("hhh/") and k.endswith("/n") and k.count("/") == 2]
    n = int(sum(flat[k] for k in subsets))  # per subset only: "hhh/n" is their total
    acc = {k: round(v, 4) for k, v in flat.items() if k.count("/") == 1}
    return {
        "model": name,
        "limit_per_subset": limit,
        "comparisons": n,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "comparisons_per_s": n / wall,
        "comparisons_per_cpu_s": n / cpu,
        "harness_wall_time_s": record["hhh"].get("wall_time_s"),
        "accuracy": acc,
        "params": sum(p.numel() for p in model.parameters()),
    }


def main() -> None:
    args = parse_args()
    set_threads(args.threads)
    info = machine(args.threads)
    limits = {"tiny": args.limit_tiny or None, "smollm2": args.limit_smollm2 or None}
    if args.quick:
        limits = {"tiny": 5, "smollm2": 2}
    rows = [measure(name, limits[name], args) for name in args.models]
    payload = {
        "benchmark": "eval_throughput",
        "machine": info,
        "results": rows,
        "settings": {"batch_size": args.batch_size, "suite": "hhh"},
    }
    cols = [
        "model",
        "limit_per_subset",
        "comparisons",
        "wall_s",
        "comparisons_per_s",
        "comparisons_per_cpu_s",
    ]
    finish("eval_throughput", payload, rows, cols)


if __name__ == "__main__":
    main()
