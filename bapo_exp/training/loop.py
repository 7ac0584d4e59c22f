"""The one training loop for every method (dpo, ipo, bapo, mrpo).

Per step: for each micro-batch, one concatenated policy forward -> ``sequence_logps`` ->
``spec.fn(**inputs)`` -> ``.mean()`` -> backward; then clip, step, log, checkpoint.
It runs under ``accelerate`` (one process, or DDP with ``accelerate launch``).

Stopping: SIGTERM (Slurm preemption, ``scancel``) or SIGINT (Ctrl-C) finishes the current
step, writes a checkpoint and exits with ``128 + signal`` (a second Ctrl-C stops at once);
kill -9 loses the steps since the last periodic checkpoint. Either way, re-launching the same
run directory resumes (bitwise on CPU).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bapo_exp.config import TrainConfig
from bapo_exp.losses import LossSpec
from bapo_exp.training import checkpoint as ckpt
from bapo_exp.training import sharded
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


class Preempted(SystemExit):
    """SIGTERM, SIGINT (or submitit's USR2): a checkpoint was written at the step boundary."""


def requeue_signals() -> tuple[int, ...]:
    """submitit's requeue signal (USR2, or ``SUBMITIT_PREEMPT_SIGNAL``) if submitit handles it here.

    Slurm sends it ``signal_delay_s`` before the time limit (and on preemption where configured);
    submitit's handler requeues the job and exits. Outside a submitit job, or in the processes a
    multi-process cell starts (they ignore it), nothing is added.
    """
    sig = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"), None)
    return (sig,) if sig is not None and callable(signal.getsignal(sig)) else ()


@contextmanager
def stop_requests() -> Iterator[dict[str, int | None]]:
    """Catch SIGTERM and SIGINT while training: ``flag["signal"]`` is set, the loop stops later.

    A second SIGINT raises ``KeyboardInterrupt`` at once. Inside a submitit job its requeue
    signal is caught too, and once the loop has written its checkpoint and raised ``Preempted``,
    handed to submitit's handler (requeue the job, exit): a timed-out job resumes from the step
    it reached. Handlers are restored on exit; off the main thread nothing is caught.
    """
    flag: dict[str, int | None] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: object) -> None:
        if flag["signal"] is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["signal"] = signum

    chained = requeue_signals()
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT, *chained)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    try:
        yield flag
    except Preempted:
        if flag["signal"] in chained:
            restore()
            previous[flag["signal"]](flag["signal"], None)  # submitit: requeue, then exit
        raise
    finally:
        restore()


def agreed_stop(acc, flag: dict[str, int | None]) -> int | None:
    """The signal to stop on, agreed by every process (one all-reduce per step under DDP)."""
    sig = flag["signal"] or 0
    if acc.num_processes > 1:
        sig = int(acc.reduce(torch.tensor([sig], device=acc.device), reduction="sum").max())
        sig = flag["signal"] or (signal.SIGTERM if sig else 0)
    return sig or None


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
    after_step: Callable[[int], None] = lambda done: None  # e.g. keep the weights of eval.at_steps
    reset_log: Callable[[list[dict]], None] = lambda rows: None  # rewrite the log on resume
    history: list[dict] = field(default_factory=list)


def micro_step(p: LoopParts, idx: list[int], scale: float) -> tuple[dict[str, Tensor], int]:
    """Forward + backward of one micro-batch; per-example metrics and its token count."""
    batch = policy_batch(p.data, idx, with_base="anchor" if p.spec.needs_anchors else False)
    logps, ntok = policy_logps(p.model, batch, p.reduce)
    inputs, policy, refs, anchors = loss_inputs(p.spec, logps, ntok, p.ref_fn(idx, batch))
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
    """Clip, step, schedule. ``step`` is the step being taken, 1-based as in metrics.jsonl."""
    grad_norm = p.accelerator.clip_grad_norm_(
        [q for q in p.model.parameters() if q.requires_grad], cfg.max_grad_norm or float("inf")
    )
    grad_norm = float(grad_norm)
    if not math.isfinite(grad_norm):
        raise NonFiniteError(f"step {step}: non-finite gradient norm; batch example ids: {ids}")
    try:
        p.optimizer.step()
    except (RuntimeError, OverflowError) as err:  # e.g. an lr that overflows float32
        raise NonFiniteError(f"step {step}: the optimizer step failed ({err}); "
                             f"lr {p.scheduler.get_last_lr()[0]:.3g}") from err  # fmt: skip
    for q in p.model.parameters():
        if q.requires_grad and not torch.isfinite(q).all():
            raise NonFiniteError(
                f"step {step}: the update made parameters non-finite (lr "
                f"{p.scheduler.get_last_lr()[0]:.3g}); batch example ids: {ids}"
            )
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
    """Optimizer step ``step + 1`` (errors and metrics.jsonl count from 1; ``step`` is the
    0-based position the sampler draws from)."""
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
                raise NonFiniteError(f"step {step + 1}: {err}") from None
        tokens += ntok
        for k, v in metrics.items():
            per_example[k].append(v)
    ids = [p.example_ids[i] for mb in micros for i in mb]
    row = reduce_metrics(p, per_example)
    row["grad_norm"] = optimizer_step(p, cfg, step + 1, ids)
    dt = time.perf_counter() - t0
    n_pairs = p.sampler.global_batch
    row.update({"lr": p.scheduler.get_last_lr()[0], "pairs_per_s": n_pairs / dt})
    row["tokens_per_s"] = tokens * acc.num_processes / dt
    return row


def all_rng_states(acc) -> list[dict]:
    """Every process's RNG states, rank order (dropout draws differ per process)."""
    if acc.num_processes == 1:
        return [ckpt.rng_state()]
    from accelerate.utils import gather_object

    return gather_object([ckpt.rng_state()])


def refuse_fsdp1(acc, model) -> None:
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP and not sharded.is_fsdp2(model):
        raise NotImplementedError(  # rank 0 would save its own shards as if they were the model
            "resumable checkpoints under FSDP need FSDP2 (fsdp_config.fsdp_version: 2, as in "
            "conf/accelerate/fsdp.yaml); with FSDP1 set train.ckpt_every above train.steps"
        )


def save(p: LoopParts, ckpt_dir: Path, step: int, keep: int) -> None:
    """Collective: every process hands in its RNG state (and under FSDP2 writes its shards)."""
    refuse_fsdp1(p.accelerator, p.model)
    rng = all_rng_states(p.accelerator)
    meta = {"step": step, "scheduler": p.scheduler.state_dict(), "rng": rng, "history": p.history}
    if sharded.is_fsdp2(p.model):
        sharded.save_checkpoint(ckpt_dir, step, p.model, p.optimizer, meta, keep, p.accelerator)
        return
    if p.accelerator.is_main_process:
        ckpt.save_checkpoint(ckpt_dir, step, {**meta, **weights_payload(p)}, keep)
    p.accelerator.wait_for_everyone()


def weights_payload(p: LoopParts) -> dict:
    return {
        "model": ckpt.trainable_state(p.accelerator.unwrap_model(p.model)),
        "optimizer": p.optimizer.state_dict(),
    }


def own_rng(state: dict, acc) -> dict:
    """This process's saved RNG state (older checkpoints hold one dict)."""
    rng = state["rng"]
    if isinstance(rng, dict):
        return rng
    if len(rng) != acc.num_processes:
        log.warning("checkpoint has RNG states of %d processes, this run has %d: resume is not "
                    "bitwise", len(rng), acc.num_processes)  # fmt: skip
    return rng[min(acc.process_index, len(rng) - 1)]


def restore(p: LoopParts, ckpt_dir: Path) -> int:
    """Load the newest checkpoint, if any; return the step to continue from."""
    found = ckpt.latest(ckpt_dir)
    if found is None:
        return 0
    path, state = found
    if bool(state.get("sharded")) != sharded.is_fsdp2(p.model):
        saved, now = ("a sharded", "without") if state.get("sharded") else ("an unsharded", "under")
        raise RuntimeError(f"{path} is {saved} checkpoint and this run is {now} FSDP2: resume "
                           "it with the accelerate config that wrote it")  # fmt: skip
    if state.get("sharded"):
        sharded.load_checkpoint(path, p.model, p.optimizer)
    else:
        load_weights(p, state)
    p.scheduler.load_state_dict(state["scheduler"])
    ckpt.set_rng_state(own_rng(state, p.accelerator))
    p.history[:] = state["history"]
    log.info("resumed from checkpoint at step %d", state["step"])
    return state["step"]


def load_weights(p: LoopParts, state: dict) -> None:
    model = p.accelerator.unwrap_model(p.model)
    missing = model.load_state_dict(state["model"], strict=False)
    if missing.unexpected_keys:
        raise RuntimeError(f"checkpoint has unknown parameters: {missing.unexpected_keys[:5]}")
    p.optimizer.load_state_dict(state["optimizer"])


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train_loop(p: LoopParts, cfg: TrainConfig, ckpt_dir: Path) -> dict[str, float]:
    """Run (or resume) until ``p.total_steps``; returns the last logged row.

    Raises:
        Preempted: after SIGTERM/SIGINT, once the checkpoint of the current step is written.
        NonFiniteError: a NaN/inf loss or gradient (the last good checkpoint stays).
    """
    from tqdm.auto import tqdm

    start = restore(p, ckpt_dir)
    p.reset_log(p.history)  # rows logged after the checkpoint, before a kill, are dropped
    p.model.train()
    bar = tqdm(range(start, p.total_steps), initial=start, total=p.total_steps, desc="train",
               disable=not p.accelerator.is_main_process)  # fmt: skip
    with stop_requests() as flag:
        for step in bar:
            row = train_step(p, cfg, step)
            done = step + 1
            if done % cfg.log_every == 0 or done == p.total_steps:
                log_step(p, row, done)
                bar.set_postfix(loss=f"{row['loss']:.4f}", margin=f"{row['reward_margin']:.3f}")
            p.after_step(done)
            sig = agreed_stop(p.accelerator, flag)
            periodic = done % cfg.ckpt_every == 0
            if done < p.total_steps and (periodic or sig):
                save(p, ckpt_dir, done, cfg.keep_checkpoints)
            if sig and done < p.total_steps:
                name = signal.Signals(sig).name
                log.warning("%s: stopped after step %d with a checkpoint; re-launch the same run "
                            "directory to resume", name, done)  # fmt: skip
                raise Preempted(128 + sig)
            p.accelerator.wait_for_everyone()
    return p.history[-1] if p.history else {}


def log_step(p: LoopParts, row: dict, done: int) -> None:
    if p.probe is not None:
        row.update(p.probe())
    row.update({"step": done, "peak_mem_mb": peak_memory_mb()})
    p.history.append(row)
    p.log_row(row)
