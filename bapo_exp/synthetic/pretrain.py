"""Pretrain a micro Llama on the synthetic world's corpus (the base model of the CPU demo).

    from bapo_exp.synthetic import MicroTrainConfig, WorldConfig, ensure_micro_base
    from bapo_exp.synthetic import micro_model_config
    path = ensure_micro_base(WorldConfig(), micro_model_config(), MicroTrainConfig(), "runs/cache")

CPU, a 0.56M-parameter Llama by default, a 1k byte-level BPE trained on the world
(``train_tokenizer``), AdamW with warmup + cosine, causal LM loss on whole documents (or
responses only). Seeded and
deterministic on CPU for a fixed thread count. The result is saved with ``save_pretrained`` to
``<cache_dir>/micro-<hash>`` keyed by (world config, model config, training config, tokenizer);
a finished folder (``READY``) is reused. MRPO's extra references: call again with another
``seed``/``steps`` or another ``style_exposure``; the tokenizer depends on neither.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bapo_exp.config import TinyConfig
from bapo_exp.folders import build_folder, is_ready
from bapo_exp.modeling.tiny import build_tiny_model, corpus_digest, train_tokenizer
from bapo_exp.synthetic.corpus import Doc, build_corpus, tokenizer_corpus
from bapo_exp.synthetic.world import WorldConfig, generate_world, world_key

log = logging.getLogger(__name__)
MICRO_VERSION = 1


@dataclass
class MicroTrainConfig:
    steps: int = 800
    batch_size: int = 32
    lr: float = 3e-3
    min_lr_frac: float = 0.1  # cosine decays to lr * min_lr_frac
    warmup_steps: int = 50
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    seed: int = 0  # data order (the weights' init seed is TinyConfig.seed)
    loss_on: str = "all"  # all (whole document) | response
    max_len: int = 192  # documents are truncated from the right (none is this long by default)
    threads: int = 1  # torch threads while training (not part of the cache key)
    progress: bool = True  # tqdm bar (not part of the cache key)
    # portable: pretrain in a subprocess with PORTABLE_ENV, the same base on every Intel x86-64
    # CPU (+25% CPU time); native: this process's kernels (docs/REPRODUCIBILITY.md)
    kernels: str = "portable"


# Kernel dispatch pinned before torch is imported: torch's vectorised kernels (softmax) at AVX2
# and MKL's conditional numerical reproducibility at AVX2 (matrix multiplies), one thread.
PORTABLE_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "OMP_NUM_THREADS": "1"}


def micro_model_config(**overrides: int) -> TinyConfig:
    """The default micro Llama: 1k vocab, hidden 128, 2 layers, MLP 384 (0.56M parameters).

    Measured on the default world: wide-and-shallow learns the facts in fewer CPU seconds than
    hidden 96 x 4 layers (0.98 vs 0.89 option accuracy after 750 steps, half the time per step).
    """
    base = dict(
        vocab_size=1024,
        hidden_size=128,
        num_layers=2,
        num_heads=4,
        intermediate_size=384,
        max_position_embeddings=256,
        seed=0,
    )
    return TinyConfig(**{**base, **overrides})


def _hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def ensure_micro_tokenizer(world_cfg: WorldConfig, vocab_size: int, cache_dir: str | Path) -> Path:
    """Train (once) the world's BPE tokenizer; keyed by its training text and vocab size."""
    lines = tokenizer_corpus(generate_world(world_cfg))
    key = _hash({"corpus": corpus_digest(lines), "vocab": vocab_size, "v": MICRO_VERSION})
    out = Path(cache_dir) / f"microtok-{key}"
    return build_folder(
        out, lambda tmp: train_tokenizer(lines, vocab_size).save_pretrained(tmp), stamp=key
    )


def encode_docs(docs: list[Doc], tok, max_len: int, loss_on: str = "all"):
    """Token ids and loss masks: prefix and response tokenized separately, EOS appended.

    Returns:
        list of ``(ids, mask)`` int lists of equal length (``mask`` 1 = trained token).
    """
    out = []
    for doc in docs:
        pre = tok(doc.prefix, add_special_tokens=False)["input_ids"] if doc.prefix else []
        resp = tok(doc.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        ids = (pre + resp)[:max_len]
        trained = 0 if loss_on == "response" else 1
        mask = ([trained] * len(pre) + [1] * len(resp))[:max_len]
        out.append((ids, mask))
    return out


def _batches(encoded, batch_size: int, seed: int):
    """Endless length-bucketed batches: shuffle, sort within windows of 8 batches, shuffle."""
    rng = random.Random(f"batches:{seed}")
    while True:
        order = list(range(len(encoded)))
        rng.shuffle(order)
        window = batch_size * 8
        batches = []
        for start in range(0, len(order), window):
            chunk = sorted(order[start : start + window], key=lambda i: len(encoded[i][0]))
            batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
        rng.shuffle(batches)
        yield from batches


def _collate(encoded, idx: list[int], pad_id: int):
    import torch

    width = max(len(encoded[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    attn = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        seq, mask = encoded[i]
        n = len(seq)
        ids[row, :n] = torch.tensor(seq)
        attn[row, :n] = 1
        labels[row, :n] = torch.tensor([t if m else -100 for t, m in zip(seq, mask, strict=True)])
    return ids, attn, labels


def lr_at(step: int, cfg: MicroTrainConfig) -> float:
    """Linear warmup then cosine decay to ``lr * min_lr_frac``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def pretrain(model, encoded, cfg: MicroTrainConfig, pad_id: int) -> dict:
    """Train ``model`` in place on ``encoded`` documents; returns a small training log."""
    import torch
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
        weight_decay=0.0,
    )
    model.train()
    batches = _batches(encoded, cfg.batch_size, cfg.seed)
    curve, tokens, t0 = [], 0, time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="pretrain micro", disable=not cfg.progress, mininterval=2)
    for step in bar:
        ids, attn, labels = _collate(encoded, next(batches), pad_id)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
        opt.step()
        tokens += int(attn.sum())
        if step % 50 == 0 or step == cfg.steps - 1:
            curve.append({"step": step, "loss": round(loss.item(), 4)})
            bar.set_postfix(loss=f"{loss.item():.3f}")
    seconds = time.perf_counter() - t0
    model.eval()
    return {
        "seconds": round(seconds, 1),
        "tokens": tokens,
        "tokens_per_s": round(tokens / seconds),
        "final_loss": curve[-1]["loss"],
        "curve": curve,
    }


def micro_key(
    world_cfg: WorldConfig, model_cfg: TinyConfig, train_cfg: MicroTrainConfig, tokenizer_dir: Path
) -> str:
    train = {k: v for k, v in asdict(train_cfg).items() if k not in ("threads", "progress")}
    return _hash(
        {
            "world": world_key(world_cfg),
            "model": asdict(model_cfg),
            "train": train,
            "tokenizer": tokenizer_dir.name,
            "v": MICRO_VERSION,
        }
    )


def ensure_micro_base(
    world_cfg: WorldConfig,
    model_cfg: TinyConfig,
    train_cfg: MicroTrainConfig,
    cache_dir: str | Path,
) -> Path:
    """Pretrain (once) a micro base model on the world of ``world_cfg``; return its folder.

    The folder holds the model and tokenizer (``from_pretrained``-ready), ``micro.json`` (the
    configs, parameter count and training log) and ``READY``.
    """
    import torch
    from transformers import AutoTokenizer

    tok_dir = ensure_micro_tokenizer(world_cfg, model_cfg.vocab_size, cache_dir)
    out = base_folder((world_cfg, model_cfg, train_cfg), cache_dir, tok_dir)
    if is_ready(out):
        return out
    if train_cfg.kernels == "portable" and not portable_here():
        return pretrain_portably(world_cfg, model_cfg, train_cfg, cache_dir, out)
    tok = AutoTokenizer.from_pretrained(tok_dir)
    docs = build_corpus(generate_world(world_cfg))
    encoded = encode_docs(docs, tok, train_cfg.max_len, train_cfg.loss_on)
    model = build_tiny_model(model_cfg, vocab_size=len(tok))
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "micro base: %d params, %d docs, %d tokens/epoch",
        n_params,
        len(docs),
        sum(len(ids) for ids, _ in encoded),
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(train_cfg.threads)
    try:
        train_log = pretrain(model, encoded, train_cfg, tok.pad_token_id)
    finally:
        torch.set_num_threads(threads)
    log.info(
        "micro base trained in %.0fs, final loss %.3f",
        train_log["seconds"],
        train_log["final_loss"],
    )
    meta = {
        "kernel_env": {k: os.environ.get(k) for k in PORTABLE_ENV},
        "world": asdict(world_cfg),
        "world_key": world_key(world_cfg),
        "model": asdict(model_cfg),
        "train": asdict(train_cfg),
        "n_params": n_params,
        "n_docs": len(docs),
        "tokenizer": tok_dir.name,
        "log": train_log,
    }
    return _save(model, tok, meta, out)


def _save(model, tok, meta: dict, out: Path) -> Path:
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "micro.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")

    return build_folder(out, build, stamp="ok")


def portable_here() -> bool:
    """This process runs with the portable kernel settings (``PORTABLE_ENV``)."""
    return all(os.environ.get(k) == v for k, v in PORTABLE_ENV.items())


Spec = tuple[WorldConfig, TinyConfig, MicroTrainConfig]


def _spec_json(spec: Spec, cache_dir: str | Path) -> dict:
    world_cfg, model_cfg, train_cfg = spec
    return {"world": asdict(world_cfg), "model": asdict(model_cfg), "train": asdict(train_cfg),
            "cache_dir": str(cache_dir)}  # fmt: skip


def base_folder(spec: Spec, cache_dir: str | Path, tok_dir: Path | None = None) -> Path:
    """Where ``ensure_micro_base`` keeps this base (trains the world's tokenizer if needed)."""
    world_cfg, model_cfg, train_cfg = spec
    tok_dir = tok_dir or ensure_micro_tokenizer(world_cfg, model_cfg.vocab_size, cache_dir)
    return Path(cache_dir) / f"micro-{micro_key(world_cfg, model_cfg, train_cfg, tok_dir)}"


def pretrain_portably(
    world_cfg: WorldConfig, model_cfg: TinyConfig, train_cfg: MicroTrainConfig,
    cache_dir: str | Path, out: Path,
) -> Path:  # fmt: skip
    """Run ``ensure_micro_base`` in a new Python process with ``PORTABLE_ENV`` (the kernel
    choice is fixed when torch is imported); returns the folder it wrote."""
    log.info("micro base: pretraining with portable kernels in a subprocess (%s)", PORTABLE_ENV)
    _portable_process([_spec_json((world_cfg, model_cfg, train_cfg), cache_dir)]).wait()
    if not is_ready(out):
        raise RuntimeError(f"the portable pretraining process did not write {out}")
    return out


def _portable_process(specs: list[dict]) -> subprocess.Popen:
    code = "import sys; from bapo_exp.synthetic.pretrain import main; main(sys.argv[1])"
    return subprocess.Popen([sys.executable, "-c", code, json.dumps(specs)],
                            env={**os.environ, **PORTABLE_ENV})  # fmt: skip


def ensure_micro_bases(specs: list[Spec], cache_dir: str | Path, processes: int = 1) -> list[Path]:
    """Pretrain (once) several bases, ``processes`` portable processes at a time; their folders.

    The bases not yet built are dealt round-robin to ``processes`` processes that run together,
    each pretraining its share one after another (Python and torch start once per process, not
    once per base). Every base trains with one thread and ``PORTABLE_ENV``, its weights seeded by
    its own config: the same files, bit for bit, as ``ensure_micro_base`` alone (tested).
    Native-kernel bases are pretrained here, one after another.
    """
    folders = [base_folder(spec, cache_dir) for spec in specs]
    todo = [spec for spec, out in zip(specs, folders, strict=True) if not is_ready(out)]
    todo = [spec for i, spec in enumerate(todo) if spec not in todo[:i]]  # each base once
    for spec in [s for s in todo if s[2].kernels != "portable"]:
        ensure_micro_base(*spec, cache_dir)
    portable = [_spec_json(s, cache_dir) for s in todo if s[2].kernels == "portable"]
    groups = [portable[i :: max(1, processes)] for i in range(max(1, processes))]
    procs = [_portable_process(g) for g in groups if g]
    log.info("micro bases: %d to pretrain in %d portable processes (%d already built)",
             len(portable), len(procs), len(specs) - len(todo))  # fmt: skip
    failed = [p.args for p in procs if p.wait() != 0]
    missing = [str(out) for out in folders if not is_ready(out)]
    if failed or missing:
        raise RuntimeError(f"pretraining failed: {len(failed)} process(es); not built: {missing}")
    return folders


def micro_world_config(micro) -> WorldConfig:
    """The world a micro base is pretrained on: ``micro.world`` knobs, with ``style_exposure``
    replaced by ``micro.style_exposure`` when set (the facts and test files stay the same)."""
    from bapo_exp.synthetic.export import world_config

    knobs = dict(micro.world)
    if micro.style_exposure is not None:
        knobs["style_exposure"] = dict(micro.style_exposure)
    return world_config(knobs)


def micro_spec(tiny: TinyConfig, micro) -> Spec:
    """The base of a model config's ``tiny`` (architecture) and ``micro``
    (``model_schema.MicroConfig``: world, exposure, pretraining steps/seed/lr/batch)."""
    train = MicroTrainConfig(steps=micro.steps, seed=micro.seed, lr=micro.lr,
                             batch_size=micro.batch_size, kernels=str(micro.kernels))  # fmt: skip
    return micro_world_config(micro), tiny, train


def ensure_micro_from_config(tiny: TinyConfig, micro, cache_dir: str | Path) -> Path:
    """``ensure_micro_base`` for a model config (see ``micro_spec``)."""
    return ensure_micro_base(*micro_spec(tiny, micro), cache_dir)


def main(spec_json: str) -> None:
    """A portable pretraining process: each base of the JSON list, one after another."""
    logging.basicConfig(level=logging.INFO)
    for spec in json.loads(spec_json):
        ensure_micro_base(WorldConfig(**spec["world"]), TinyConfig(**spec["model"]),
                          MicroTrainConfig(**spec["train"]), spec["cache_dir"])  # fmt: skip
