"""Model FLOPs utilisation of our DPO step against an fp32 matmul peak measured here.

Run:  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mfu.py [--quick] [--threads 2]
      [--steps 8] [--pairs 8] [--max-len 128]

1. Peak: ``torch.mm`` at the model's own shapes (attention and MLP projections over the batch's
   padded tokens, the LM head over its response rows) and one 1024^3 square; best of N runs
   each, in GFLOP/s; the peak is the best of those.
2. Training: the 7.2M tiny Llama, DPO with precomputed references, the loop's ``train_step``,
   in three modes side by side (rounds in alternating order): the library default
   (``sdpa_unpadded``: padding-free, shared prompts), padding-free without prompt sharing, and
   the padded ``sdpa`` path.
   MFU = 6 * N * real tokens of the batch / step time / peak, with N = every parameter that
   does a matmul per token: all linear layers *and the LM head* (tied to the input embedding
   here, but it still does a (V, H) matmul), not the input embedding (a lookup), norms
   excluded. This is the issue's definition; it credits the head for prompt tokens we no
   longer compute (our head runs on response rows only). Reported beside it: the executed
   FLOPs (6 * body * the positions it runs on: distinct tokens, real tokens or padded
   positions by mode; + 6 * head * response tokens + attention on the padded (B, T, T)), and
   ``mfu_distinct``: 6 * N * the tokens the body actually ran (shared prompt tokens counted
   once), which does not credit prompt sharing.
3. Reference forward (no grad, ``score_seqs``): 2 * N * tokens / time / peak.
4. What limits it: one profiled step, self CPU time by kind (matmul, attention, optimizer,
   elementwise and the rest).
Figures use the best (min) step time against the best matmul run, both under the same load,
and the median beside. Writes benchmarks/results/mfu.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

from common import (
    OURS_ATTN,
    PAD_ID,
    TINY_BENCH,
    finish,
    machine,
    matmul_params,
    our_parts,
    set_quick,
    set_threads,
    synthetic_pairs,
    time_our_steps,
    tiny_bench_model,
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: QUICK_BENCH model, few steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--max-len", type=int, default=128)
    return p.parse_args()


def mm_gflops(m: int, k: int, n: int, repeats: int) -> float:
    """Best-of-``repeats`` fp32 GFLOP/s of an (m, k) @ (k, n) ``torch.mm``."""
    import torch

    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    torch.mm(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * m * k * n / best / 1e9


def matmul_peak(token_counts: tuple[int, ...], resp: int, repeats: int) -> dict:
    """Best GFLOP/s over the step's own matmul shapes (body at every token count given)."""
    h, i, v = TINY_BENCH["hidden_size"], TINY_BENCH["intermediate_size"], TINY_BENCH["vocab_size"]
    shapes = {}
    for tokens in token_counts:
        shapes |= {
            f"qkvo_{tokens}": (tokens, h, h),
            f"gate_up_{tokens}": (tokens, h, i),
            f"down_{tokens}": (tokens, i, h),
        }
    shapes |= {
        "lm_head": (resp, h, v),
        "lm_head_grad_w": (v, resp, h),
        "square_1024": (1024, 1024, 1024),
    }
    rates = {name: round(mm_gflops(*s, repeats), 1) for name, s in shapes.items()}
    return {"gflops_by_shape": rates, "shapes": shapes, "peak_gflops": max(rates.values())}


def profile_breakdown(parts, train_cfg, step: int) -> dict[str, float]:
    """Share of self CPU time of one step by kind of op."""
    from torch.profiler import ProfilerActivity, profile

    from bapo_exp.training.loop import train_step

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_step(parts, train_cfg, step)
    kinds = {"matmul": 0.0, "attention": 0.0, "optimizer": 0.0, "other": 0.0}
    for ev in prof.key_averages():
        name = ev.key
        if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
            kind = "matmul" if name in ("aten::mm", "aten::addmm", "aten::bmm") else None
        elif "scaled_dot_product" in name:
            kind = "attention"
        elif "_foreach" in name or "adam" in name.lower():
            kind = "optimizer"
        else:
            kind = "other"
        if kind:
            kinds[kind] += ev.self_cpu_time_total
    total = sum(kinds.values())
    return {k: round(v / total, 3) for k, v in kinds.items()}


def step_times(parts, train_cfg, steps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds of ``steps`` timed steps after 2 warm-up steps."""
    stamps = time_our_steps(parts, train_cfg, 2 + steps)
    wall = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)][2:]
    cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False)][2:]
    return wall, cpu


# name -> (attention, share prompts); the first is the library default.
MODES = {"shared": (OURS_ATTN, True), "unshared": (OURS_ATTN, False), "padded": ("sdpa", False)}


@contextmanager
def prompt_sharing(on: bool) -> Iterator[None]:
    """Padding-free forwards with prompt sharing on or off (the library always shares; this
    benchmark switches it off to measure what it buys)."""
    import bapo_exp.modeling.scoring as scoring
    from bapo_exp.modeling.unpad import unpadded_inputs

    scoring.unpadded_inputs = partial(unpadded_inputs, share_prompts=on)
    try:
        yield
    finally:
        scoring.unpadded_inputs = unpadded_inputs


def timed_modes(pairs, steps: int, rounds: int = 2) -> tuple[dict, dict]:
    """Step times of every mode in ``MODES``, side by side: ``rounds`` rounds, the order
    reversed every other round, each mode on its own copy of the same seeded model."""
    parts = {m: our_parts(tiny_bench_model(0, attn=a), pairs, "dpo") for m, (a, _) in MODES.items()}
    times = {m: ([], []) for m in MODES}
    order = list(MODES)
    for rnd in range(rounds):
        for m in order if rnd % 2 == 0 else order[::-1]:
            with prompt_sharing(MODES[m][1]):
                wall, cpu = step_times(*parts[m], steps)
            times[m][0].extend(wall)
            times[m][1].extend(cpu)
    return parts, times


def flops(n: dict, counts: dict, body_tokens: int) -> dict[str, float]:
    """Model FLOPs: 6N per token of the batch (the issue's definition) and per token the body
    actually ran (``min(body_tokens, tokens)``: shared prompt tokens not counted again);
    executed FLOPs: body on ``body_tokens`` positions, head on response rows, attention on the
    padded (B, T, T) in every mode."""
    layers, h = TINY_BENCH["num_hidden_layers"], TINY_BENCH["hidden_size"]
    attn = 6 * 2 * layers * h * counts["sequences"] * counts["max_len"] ** 2  # QK^T and PV, x3
    n_mm = n["body_linear"] + n["lm_head"]
    return {
        "model": 6 * n_mm * counts["tokens"],
        "distinct": 6 * n_mm * min(body_tokens, counts["tokens"]),
        "executed": 6 * n["body_linear"] * body_tokens
        + 6 * n["lm_head"] * counts["response_tokens"]
        + attn,
    }


def mode_result(times, fl: dict, pk: float, threads: int) -> dict:
    wall, cpu = times
    best, med = min(wall), statistics.median(wall)
    return {
        "step_s_best": best,
        "step_s_median": med,
        "cpu_s_median": statistics.median(cpu),
        "model_flops_per_step": fl["model"],
        "executed_flops_per_step": fl["executed"],
        "mfu_best": fl["model"] / best / pk,
        "mfu_median": fl["model"] / med / pk,
        "mfu_distinct_median": fl["distinct"] / med / pk,
        # On-CPU time: robust to other jobs' load; per-thread peak assumes linear scaling.
        "mfu_cpu_time": fl["model"] / statistics.median(cpu) / (pk / threads),
        "executed_utilisation_best": fl["executed"] / best / pk,
    }


def main() -> None:
    args = parse_args()
    set_quick(args.quick)
    steps = args.steps or (4 if args.quick else 8)
    set_threads(args.threads)
    info = machine(args.threads)
    pairs = synthetic_pairs(args.pairs, args.max_len, TINY_BENCH["vocab_size"], seed=0)
    counts = pairs.token_counts()
    padded = counts["sequences"] * counts["max_len"]  # one batch, padded to its longest
    peak = matmul_peak((counts["tokens"], padded), counts["response_tokens"],
                       5 if args.quick else 20)  # fmt: skip
    pk = peak["peak_gflops"] * 1e9
    parts, times = timed_modes(pairs, max(2, steps // 2), 1 if args.quick else 2)
    ours = parts["shared"]
    n = matmul_params(ours[0].accelerator.unwrap_model(ours[0].model))
    shared = shared_tokens(parts["shared"][0], args.pairs)
    body_tokens = {"shared": counts["tokens"] - shared, "unshared": counts["tokens"],
                   "padded": padded}  # fmt: skip
    by_mode = {
        m: mode_result(times[m], flops(n, counts, body_tokens[m]), pk, args.threads) for m in MODES
    }
    res = {
        "params": n,
        "n_matmul": n["body_linear"] + n["lm_head"],
        "tokens": counts,
        "padded_tokens": padded,
        "shared_prompt_tokens": shared,
        "modes": {m: {"attention": a, "share_prompts": sh} for m, (a, sh) in MODES.items()},
        **by_mode["shared"],
        "unshared": by_mode["unshared"],
        "padded_path": by_mode["padded"],
        "speedup_over_padded_median": {
            m: by_mode["padded"]["step_s_median"] / by_mode[m]["step_s_median"] for m in MODES
        },
        "target_mfu": 0.6,
    }
    ref = reference_forward(ours[0], 2 if args.quick else 5)
    res["reference_forward_s_best"] = ref
    res["reference_mfu_best"] = 2 * res["n_matmul"] * counts["tokens"] / ref / pk
    res["target_met"] = res["mfu_median"] >= 0.6
    res["target_met_distinct"] = res["mfu_distinct_median"] >= 0.6
    res["profile_share"] = profile_breakdown(*ours, 100)
    keys = ("step_s_best", "step_s_median", "mfu_best", "mfu_median", "mfu_distinct_median",
            "executed_utilisation_best")  # fmt: skip
    table = [{"quantity": f"{m}_{k}", "value": by_mode[m][k]} for m in MODES for k in keys]
    table += [{"quantity": k, "value": res[k]} for k in ("shared_prompt_tokens",
              "reference_mfu_best")]  # fmt: skip
    table.append({"quantity": "matmul_peak_gflops", "value": peak["peak_gflops"]})
    table += [{"quantity": f"share_{k}", "value": v} for k, v in res["profile_share"].items()]
    payload = {
        "benchmark": "mfu",
        "machine": info,
        "peak": peak,
        "result": res,
        "settings": {
            "steps": steps,
            "pairs": args.pairs,
            "max_len": args.max_len,
            "model": TINY_BENCH,
            "dtype": "float32",
            "quick": args.quick,
        },
    }
    finish("mfu", payload, table, ["quantity", "value"])


def shared_tokens(parts, pairs: int) -> int:
    """Prompt tokens of the step's batch that prompt sharing does not run again."""
    from bapo_exp.modeling.unpad import unpadded_inputs
    from bapo_exp.training.forward import policy_batch

    return unpadded_inputs(policy_batch(parts.data, list(range(pairs)), False)).shared


def reference_forward(parts, repeats: int) -> float:
    """Best wall time of one no-grad reference forward over the step's 2*B sequences."""
    import torch

    from bapo_exp.modeling.scoring import score_seqs

    seqs = parts.data.chosen + parts.data.rejected
    best = float("inf")
    model = parts.accelerator.unwrap_model(parts.model)
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            score_seqs(model, seqs, pad_id=PAD_ID, batch_size=len(seqs), side="right")
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    main()
