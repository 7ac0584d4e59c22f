"""Evaluation and generation throughput: our lm-eval backend vs HFLM, our greedy engine vs
today's generation path, side by side in one run.

Run:  HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 .venv/bin/python benchmarks/eval_throughput.py
      [--quick] [--models tiny smollm2] [--threads 2] [--rounds 1] [--hf-batch-sizes 4 8 16 32]

1. Scoring (``lm.loglikelihood`` on the suite's lm-eval requests, built once, as
   ``evaluate`` builds them): HHH (all 221 comparisons) and MMLU 5-shot (4 subjects x
   ``--mmlu-limit`` questions, letter format), ``eval.backend=bapo`` (ours) against lm-eval's
   ``HFLM``. HFLM gets its best batch size: every ``--hf-batch-sizes`` is timed on a probe
   subset (HHH 5 per subset, MMLU 2 per subject) and the fastest is used. Then ``--rounds``
   rounds of (ours, HFLM), the order reversed every other round; the best wall and CPU time of
   each. Identical choices: every item's acc and acc_norm pick, ours vs HFLM.
2. Scorer FLOP utilisation: executed FLOPs (2 x body linear params x distinct body tokens +
   2 x LM head x head rows + 4 x heads x head dim x layers x causal attention pairs, counted
   by ``SCORER_STATS``) / wall (and CPU) time / the fp32 matmul peak measured here at the
   scorer's shapes (``mfu.mm_gflops``, best of N, same threads). HFLM's work is counted the
   same way from its inputs (each distinct context + continuation[:-1], LM head on every
   position, no padding), so ``work_ratio_hf_over_ours`` bounds the speed-up at equal
   efficiency.
3. Generation (SmolLM2, ``--gen-prompts`` DSP queries, chat template, ``--gen-new-tokens``):
   today's path (``generate_texts(engine="hf")``, ``model.generate``, batch 8) vs ours
   (``engine="auto"``, the KV-cache engine) at batch 8 and at 32 (the new default of
   reference.gen_batch_size and eval.gen_batch_size), and ``generate`` at 32 for the
   decomposition; identical texts required. Tokens = generated tokens (texts re-tokenised).
Models: the tiny test Llama (``TinyConfig`` with 4096 positions) and SmolLM2-135M-Instruct
(fp32). Writes benchmarks/results/eval_throughput.json. ``--quick`` (a smoke run): 2 items per
task, one HFLM batch size, 8 prompts x 16 tokens, SmolLM2 replaced by the tiny stand-in of
``common.smollm2_config``; written to runs/benchmarks_quick/.
"""

from __future__ import annotations

import argparse
import json
import os

from common import (
    CACHE,
    REPO,
    finish,
    load_smollm2,
    machine,
    matmul_params,
    set_quick,
    set_threads,
    smollm2_config,
    stamp,
)

MMLU = ["philosophy", "marketing", "high_school_geography", "astronomy"]  # one per group
SUITES = {"hhh": ("hhh", None, 0, None), "mmlu_5shot": ("mmlu", "mmlu_limit", 5, MMLU)}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small subsets, one HFLM batch size")
    p.add_argument("--models", nargs="+", default=["tiny", "smollm2"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--hf-batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--token-budget", type=int, default=2048)
    p.add_argument("--mmlu-limit", type=int, default=10, help="questions per MMLU subject")
    p.add_argument("--gen-prompts", type=int, default=32)
    p.add_argument("--gen-new-tokens", type=int, default=64)
    p.add_argument("--no-gen", action="store_true")
    p.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    return p.parse_args()


def load(name: str):
    if name == "smollm2":
        return load_smollm2(trainable=False)
    from bapo_exp.config import ModelConfig, TinyConfig
    from bapo_exp.modeling.load import load_model

    # The tiny byte-level BPE makes HHH texts long: room for them (RoPE, no learned positions).
    tiny = TinyConfig(max_position_embeddings=4096)
    return load_model(ModelConfig(name="tiny", source="tiny", pretrained="tiny", tiny=tiny), CACHE)


def timed(backend: str, model, tok, instances, **kw) -> tuple[list, float, float]:
    from bapo_exp.evaluation.backend import make_backend

    lm = make_backend(backend, model, tok, **kw)
    t0, c0 = stamp()
    out = lm.loglikelihood(instances, disable_tqdm=True)
    t1, c1 = stamp()
    return out, t1 - t0, c1 - c0


def best_hf_batch(model, tok, probe: list, sizes: list[int]) -> tuple[int, dict]:
    """HFLM's fastest batch size on the probe requests (wall time)."""
    times = {bs: timed("hf", model, tok, probe, batch_size=bs)[1] for bs in sizes}
    return min(times, key=times.get), {str(k): round(v, 3) for k, v in times.items()}


def work(model, stats, hf: tuple[int, int]) -> dict:
    """Executed FLOPs of our scorer (from its counters) and of HFLM's inputs (full LM head)."""
    n = matmul_params(model)
    cfg = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    attn = 4 * cfg.num_attention_heads * head_dim * cfg.num_hidden_layers
    ours = (2 * n["body_linear"] * stats.body_tokens + 2 * n["lm_head"] * stats.head_rows
            + attn * stats.attention_pairs)  # fmt: skip
    hf_flops = 2 * (n["body_linear"] + n["lm_head"]) * hf[0] + attn * hf[1]
    return {"ours_executed_flops": ours, "hf_executed_flops": hf_flops,
            "body_tokens": stats.body_tokens, "head_rows": stats.head_rows,
            "attention_pairs": stats.attention_pairs, "hf_input_tokens": hf[0],
            "hf_attention_pairs": hf[1]}  # fmt: skip


def hf_inputs(model, tok, instances) -> tuple[int, int]:
    """Tokens and causal attention pairs HFLM runs: each distinct context + continuation[:-1]
    once (its one-token cache key), without its padding."""
    from bapo_exp.evaluation.backend import make_backend
    from bapo_exp.modeling.continuations import causal_pairs, truncate_like_hflm

    lm = make_backend("hf", model, tok)
    seen = set()
    for inst in instances:
        ctx, cont = lm._encode_pair(*inst.args)
        ctx, cont = truncate_like_hflm(ctx, cont, lm.max_length)
        seen.add((*ctx, *cont[:-1]))
    return sum(len(s) for s in seen), sum(causal_pairs(len(s), len(s)) for s in seen)


def peak_gflops(model, budget: int, repeats: int) -> dict:
    from mfu import mm_gflops

    cfg = (model.get_base_model() if hasattr(model, "get_base_model") else model).config
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    shapes = {"qkvo": (budget, h, h), "gate_up": (budget, h, i), "down": (budget, i, h),
              "lm_head": (budget // 2, h, v), "square_1024": (1024, 1024, 1024)}  # fmt: skip
    rates = {k: round(mm_gflops(*s, repeats), 1) for k, s in shapes.items()}
    return {"gflops_by_shape": rates, "peak_gflops": max(rates.values())}


def compare_results(tasks, instances, ours: list, ref: list) -> dict:
    from bapo_exp.evaluation.requests import item_picks

    picks_o, picks_r = item_picks(tasks, instances, ours), item_picks(tasks, instances, ref)
    return {
        "items": len(picks_r),
        "identical_choices": picks_o == picks_r,
        "max_abs_logprob_diff": max(abs(a[0] - b[0]) for a, b in zip(ours, ref, strict=True)),
        "is_greedy_identical": [a[1] for a in ours] == [b[1] for b in ref],
    }


def side_by_side(model, tok, instances, hf_bs: int, args) -> dict:
    """``--rounds`` rounds of (ours, HFLM), order alternating; best wall and CPU of each."""
    from bapo_exp.modeling.continuations import SCORER_STATS

    runs = {"ours": [], "hf": []}
    for rnd in range(args.rounds):
        for who in ("ours", "hf") if rnd % 2 == 0 else ("hf", "ours"):
            if who == "ours":
                SCORER_STATS.reset()
                res = timed("bapo", model, tok, instances, token_budget=args.token_budget)
            else:
                res = timed("hf", model, tok, instances, batch_size=hf_bs)
            runs[who].append(res)
    best = {w: (min(r[1] for r in rs), min(r[2] for r in rs)) for w, rs in runs.items()}
    return {"results": {w: rs[0][0] for w, rs in runs.items()}, "best": best,
            "stats": SCORER_STATS}  # fmt: skip


def measure_suite(name: str, model, tok, args, peak: float) -> dict:
    from bapo_exp.evaluation.requests import build_requests

    suite, limit, shots, subjects = SUITES[name]
    limit = getattr(args, limit) if isinstance(limit, str) else limit
    limit = 2 if args.quick else limit
    instances, tasks = build_requests(args.data_root, suite, limit=limit, num_fewshot=shots,
                                      subjects=subjects)  # fmt: skip
    probe, _ = build_requests(args.data_root, suite, limit=5 if suite == "hhh" else 2,
                              num_fewshot=shots, subjects=subjects)  # fmt: skip
    sizes = args.hf_batch_sizes[:1] if args.quick else args.hf_batch_sizes
    hf_bs, sweep = best_hf_batch(model, tok, probe, sizes)
    sbs = side_by_side(model, tok, instances, hf_bs, args)
    (ow, oc), (hw, hc) = sbs["best"]["ours"], sbs["best"]["hf"]
    items = len({(i.task_name, i.doc_id) for i in instances})
    fl = work(model, sbs["stats"], hf_inputs(model, tok, instances))
    return {
        "suite": name, "items": items, "requests": len(instances), "hf_batch_size": hf_bs,
        "hf_batch_sweep_wall_s": sweep, "ours_wall_s": round(ow, 3), "hf_wall_s": round(hw, 3),
        "ours_cpu_s": round(oc, 3), "hf_cpu_s": round(hc, 3),
        "ours_items_per_s": items / ow, "hf_items_per_s": items / hw,
        "speedup_wall": hw / ow, "speedup_cpu": hc / oc, **fl,
        "work_ratio_hf_over_ours": fl["hf_executed_flops"] / fl["ours_executed_flops"],
        "scorer_utilisation_wall": fl["ours_executed_flops"] / ow / peak,
        "scorer_utilisation_cpu": fl["ours_executed_flops"] / oc / (peak / args.threads),
        **compare_results(tasks, instances, sbs["results"]["ours"], sbs["results"]["hf"]),
    }  # fmt: skip


def generation(model, tok, args) -> list[dict]:
    """Today's path vs ours on DSP queries (see the module docstring, part 3)."""
    from bapo_exp.modeling.generate import generate_texts
    from bapo_exp.modeling.tokenize import Tokenization

    path = os.path.join(args.data_root, "dsp", "domain_specific_preference.test.json")
    with open(path) as fh:
        queries = [r["query"] for r in json.load(fh)[: args.gen_prompts]]
    tz = Tokenization.from_config(tok, smollm2_config())  # the config the model was loaded with
    prompts = [tz.render(q) for q in queries]
    runs = [
        ("today: generate, batch 8", "hf", 8),
        ("ours, batch 8", "auto", 8),
        ("ours, batch 32 (new default)", "auto", 32),
        ("generate, batch 32", "hf", 32),
    ]
    rows, texts = [], {}
    for label, engine, bs in runs:
        t0, c0 = stamp()
        texts[label] = generate_texts(model, tok, prompts, max_new_tokens=args.gen_new_tokens,
                                      batch_size=bs, engine=engine, desc=label)  # fmt: skip
        t1, c1 = stamp()
        wall, cpu = t1 - t0, c1 - c0
        n = sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts[label])
        rows.append({"run": label, "engine": engine, "batch_size": bs, "wall_s": round(wall, 2),
                     "cpu_s": round(cpu, 2), "tokens": n, "tokens_per_s": n / wall,
                     "tokens_per_cpu_s": n / cpu})  # fmt: skip
    base = rows[0]
    for r in rows:
        r["speedup_wall_vs_today"] = r["tokens_per_s"] / base["tokens_per_s"]
        r["speedup_cpu_vs_today"] = r["tokens_per_cpu_s"] / base["tokens_per_cpu_s"]
        r["identical_texts_to_today"] = texts[r["run"]] == texts[base["run"]]
    return rows


def main() -> None:
    args = parse_args()
    set_quick(args.quick)
    if args.quick:
        args.mmlu_limit, args.gen_prompts, args.gen_new_tokens = 2, 8, 16
    set_threads(args.threads)
    info = machine(args.threads)
    scoring, gen, peaks = [], [], {}
    for name in args.models:
        model, tok = load(name)
        peaks[name] = peak_gflops(model, args.token_budget, 3 if args.quick else 10)
        pk = peaks[name]["peak_gflops"] * 1e9
        label = f"{name} (quick: tiny stand-in)" if args.quick and name == "smollm2" else name
        for suite in SUITES:
            scoring.append({"model": label, **measure_suite(suite, model, tok, args, pk)})
            print(json.dumps(scoring[-1]), flush=True)
        if name == "smollm2" and not args.no_gen:
            gen = generation(model, tok, args)
    payload = {"benchmark": "eval_throughput", "machine": info, "scoring": scoring,
               "generation": gen, "matmul_peak": peaks,
               "settings": {k: v for k, v in vars(args).items()},
               "targets": {"hhh_speedup": 3.0, "mmlu_5shot_speedup": 1.5,
                           "generation_speedup": 2.0}}  # fmt: skip
    cols = [
        "model",
        "suite",
        "items",
        "hf_batch_size",
        "ours_items_per_s",
        "hf_items_per_s",
        "speedup_wall",
        "speedup_cpu",
        "identical_choices",
        "scorer_utilisation_cpu",
    ]
    finish("eval_throughput", payload, scoring, cols)
    if gen:
        from common import print_table

        print_table(gen, ["run", "tokens", "wall_s", "cpu_s", "tokens_per_s",
                          "speedup_wall_vs_today", "speedup_cpu_vs_today",
                          "identical_texts_to_today"])  # fmt: skip


if __name__ == "__main__":
    main()
