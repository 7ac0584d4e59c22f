"""The one training loop for every method (dpo, ipo, bapo, mrpo).

Per step: for each micro-batch, one concatenated policy forward -> ``sequence_logps`` ->
``spec.fn(**inputs)`` -> ``.mean()`` -> backward; then clip, step, log, checkpoint.
It runs under ``accelerate`` (one process, or DDP with ``accelerate launch``).
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bapo_exp.config import TrainConfig
from bapo_exp.losses import LossSpec
from bapo_exp.training import checkpoint as ckpt
from bapo_exp.training.forward import (
    PolicyData,
    RefFn,
    example_metrics,
    loss_inputs,
    policy_batch,
    policy_logps,
)
from bapo_exp.training.sampler import StepSampler

log = logging.getLogger(__name__)


class NonFiniteError(FloatingPointError):
    """A NaN or infinite loss or gradient: the run stops, the last good checkpoint stays."""


@dataclass
class LoopParts:
    """Everything the loop needs, built by the train stage."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    accelerator: object  # accelerate.Accelerator
    spec: LossSpec
    loss_fn: Callable
    beta: float
    data: PolicyData
    ref_fn: RefFn
    example_ids: list[str]
    sampler: StepSampler
    total_steps: int
    reduce: str = "sum"
    probe: Callable[[], dict[str, float]] | None = None  # drift metrics on the fixed probe set
    log_row: Callable[[dict], None] = lambda row: None  # appends to metrics.jsonl + tracker
    reset_log: Callable[[list[dict]], None] = lambda rows: None  # rewrite the log on resume
    history: list[dict] = field(default_factory=list)


def micro_step(p: LoopParts, idx: list[int], scale: float) -> tuple[dict[str, Tensor], int]:
    """Forward + backward of one micro-batch; per-example metrics and its token count."""
    batch = policy_batch(p.data, idx, with_base=p.spec.needs_anchors)
    logps, ntok = policy_logps(p.model, batch, p.reduce)
    ref, ref_ntok = p.ref_fn(idx, batch)
    inputs, policy, refs, anchors = loss_inputs(p.spec, logps, ntok, ref, ref_ntok)
    out = p.loss_fn(**inputs)
    loss = out.losses.mean()
    if not torch.isfinite(loss):
        raise NonFiniteError(
            f"non-finite loss {loss.item()} in batch {[p.example_ids[i] for i in idx]}"
        )
    p.accelerator.backward(loss * scale)
    metrics = example_metrics(out.metrics, policy, refs[0], anchors, p.beta)
    metrics["loss"] = out.losses.detach().float()
    return metrics, int(batch["attention_mask"].sum())


def optimizer_step(p: LoopParts, cfg: TrainConfig, step: int, ids: list[str]) -> float:
    grad_norm = p.accelerator.clip_grad_norm_(
        [q for q in p.model.parameters() if q.requires_grad], cfg.max_grad_norm or float("inf")
    )
    grad_norm = float(grad_norm)
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"non-finite gradient norm at step {step}; batch example ids: {ids}")
    p.optimizer.step()
    p.scheduler.step()
    p.optimizer.zero_grad(set_to_none=True)
    return grad_norm


def reduce_metrics(p: LoopParts, per_example: dict[str, list[Tensor]]) -> dict[str, float]:
    """Exact means over every example of the step, across micro-batches and processes."""
    acc = p.accelerator
    return {
        k: float(acc.gather(torch.cat(v)).float().mean()) for k, v in sorted(per_example.items())
    }


def train_step(p: LoopParts, cfg: TrainConfig, step: int) -> dict[str, float]:
    acc = p.accelerator
    micros = p.sampler.micro_batches(
        step, rank=acc.process_index, world=acc.num_processes, accum=cfg.grad_accum
    )
    per_example: dict[str, list[Tensor]] = defaultdict(list)
    tokens, t0 = 0, time.perf_counter()
    for m, idx in enumerate(micros):
        sync = nullcontext() if m == len(micros) - 1 else acc.no_sync(p.model)
        with sync:
            try:
                metrics, ntok = micro_step(p, idx, 1.0 / len(micros))
            except NonFiniteError as err:
                raise NonFiniteError(f"step {step}: {err}") from None
        tokens += ntok
        for k, v in metrics.items():
            per_example[k].append(v)
    ids = [p.example_ids[i] for mb in micros for i in mb]
    row = reduce_metrics(p, per_example)
    row["grad_norm"] = optimizer_step(p, cfg, step, ids)
    dt = time.perf_counter() - t0
    n_pairs = p.sampler.global_batch
    row.update({"lr": p.scheduler.get_last_lr()[0], "pairs_per_s": n_pairs / dt})
    row["tokens_per_s"] = tokens * acc.num_processes / dt
    return row


def state_payload(p: LoopParts, step: int) -> dict:
    return {
        "step": step,
        "model": ckpt.trainable_state(p.accelerator.unwrap_model(p.model)),
        "optimizer": p.optimizer.state_dict(),
        "scheduler": p.scheduler.state_dict(),
        "rng": ckpt.rng_state(),
        "history": p.history,
    }


def restore(p: LoopParts, ckpt_dir: Path) -> int:
    """Load the newest checkpoint, if any; return the step to continue from."""
    state = ckpt.load_latest(ckpt_dir)
    if state is None:
        return 0
    model = p.accelerator.unwrap_model(p.model)
    missing = model.load_state_dict(state["model"], strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"checkpoint has unknown parameters: {missing.unexpected_keys[:5]}")
    p.optimizer.load_state_dict(state["optimizer"])
    p.scheduler.load_state_dict(state["scheduler"])
    ckpt.set_rng_state(state["rng"])
    p.history[:] = state["history"]
    log.info("resumed from checkpoint at step %d", state["step"])
    return state["step"]


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_loop(p: LoopParts, cfg: TrainConfig, ckpt_dir: Path) -> dict[str, float]:
    """Run (or resume) until ``p.total_steps``; returns the last logged row."""
    from tqdm.auto import tqdm

    start = restore(p, ckpt_dir)
    p.reset_log(p.history)  # rows logged after the checkpoint, before a kill, are dropped
    p.model.train()
    bar = tqdm(range(start, p.total_steps), initial=start, total=p.total_steps, desc="train",
               disable=not p.accelerator.is_main_process)  # fmt: skip
    for step in bar:
        row = train_step(p, cfg, step)
        done = step + 1
        if done % cfg.log_every == 0 or done == p.total_steps:
            if p.probe is not None:
                row.update(p.probe())
            row.update({"step": done, "peak_mem_mb": peak_memory_mb()})
            p.history.append(row)
            p.log_row(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}", margin=f"{row['reward_margin']:.3f}")
        if done % cfg.ckpt_every == 0 and done < p.total_steps and p.accelerator.is_main_process:
            ckpt.save_checkpoint(ckpt_dir, done, state_payload(p, done), cfg.keep_checkpoints)
        p.accelerator.wait_for_everyone()
    return p.history[-1] if p.history else {}
