"""Train stage: the one loop for every method, resumable, logging METHODS §6 metrics.

python -m bapo_exp method=bapo train=short
accelerate launch --num_processes 2 -m bapo_exp method=dpo      # DDP (one job = one launch)
"""

from __future__ import annotations

import functools
import gc
import logging
import random
from contextlib import contextmanager
from pathlib import Path

import torch

from bapo_exp.config import Config
from bapo_exp.losses import get_loss
from bapo_exp.modeling.reference_model import Reference
from bapo_exp.modeling.scoring import eval_mode
from bapo_exp.reference_tables import ROLES, RefTable
from bapo_exp.stages.common import load_data, reference_tables
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker
from bapo_exp.tracking.workers import main_process_first
from bapo_exp.training import sharded
from bapo_exp.training.forward import (
    PolicyData,
    blocks,
    policy_batch,
    policy_logps,
    tokenize_policy,
)
from bapo_exp.training.loop import LoopParts, train_loop
from bapo_exp.training.optim import make_optimizer
from bapo_exp.training.sampler import StepSampler

log = logging.getLogger(__name__)


def make_accelerator(cfg: Config):
    from accelerate import Accelerator

    cuda = torch.cuda.is_available()
    bf16 = cfg.train.precision == "bf16" or (cfg.train.precision == "auto" and cuda)
    return Accelerator(mixed_precision="bf16" if bf16 else "no", cpu=not cuda)


def online_ref_fn(main: Reference, table: RefTable, reduce: str):
    """Reference 0 computed in the step; extra (MRPO) references from the cache.

    Args:
        main: the policy with its adapter disabled (fresh LoRA) or a frozen copy of the initial
            model (full fine-tuning, continued adapter): ``Policy.reference``.
        table: the cached tables (K, 3, N); reference 0's rows are replaced by online values.
    """

    def ref_fn(idx, batch):
        out = table.select(idx)
        out = RefTable(out.logps.clone(), out.ntok.clone(), roles=out.roles)
        lp, nt = policy_logps(main, batch, reduce)  # eval mode, no grad (Reference.__call__)
        roles = ("chosen", "rejected", "anchor")  # the batch has 2 or 3 blocks
        for role, lp_j, nt_j in zip(roles, blocks(lp, len(idx)), blocks(nt, len(idx)),
                                    strict=False):  # fmt: skip
            row = out.row(role)
            out.logps[0, row], out.ntok[0, row] = lp_j, nt_j
        return out

    return ref_fn


def reference_fn(cfg: Config, policy, tokenizer, table: RefTable):
    """Precomputed: a table lookup, no reference model in memory. Online: see ``online_ref_fn``."""
    if not cfg.reference.precompute:
        main = policy.reference(cfg.model, cfg.paths.cache_dir, tokenizer)  # raises if no copy
        return online_ref_fn(main, table, cfg.reference.reduce)
    return lambda idx, batch: table.select(idx)


def probe_fn(p_model, data: PolicyData, table: RefTable, idx: list[int], reduce: str):
    """Drifts logp_theta(y) - logp_ref(y) of chosen, rejected and base on a fixed probe set."""
    probe_table = table.select(idx)

    @torch.no_grad()
    def probe() -> dict[str, float]:
        with eval_mode(p_model):
            lp, nt = policy_logps(p_model, policy_batch(data, idx, with_base=True), reduce)
        out = {}
        for role, lp_r, nt_r in zip(ROLES, blocks(lp, len(idx)), blocks(nt, len(idx)),
                                    strict=True):  # fmt: skip
            d = lp_r - probe_table.role(role)
            out[f"probe/drift/{role}"] = float(d.mean())
            out[f"probe/drift/{role}_per_token"] = float((d / nt_r).mean())
        return out

    return probe


def plan(cfg: Config, n_train: int, world: int) -> dict:
    global_batch = cfg.train.batch_size * cfg.train.grad_accum * world
    per_epoch = n_train // global_batch if global_batch else 0
    total = cfg.train.steps or max(1, int(cfg.train.epochs * per_epoch))
    return {"global_batch": global_batch, "steps_per_epoch": per_epoch, "total_steps": total,
            "n_train_pairs": n_train, "processes": world}  # fmt: skip


def run(cfg: Config, run: RunDir, tracker: Tracker) -> dict:
    spec = get_loss(cfg.method.name)
    if not spec.trains:
        return {"skipped": f"method={cfg.method.name} trains nothing"}
    from bapo_exp.modeling.load import load_model
    from bapo_exp.modeling.policy import make_policy

    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)  # adapter init must not depend on which stages ran before
    model, tokenizer = load_model(cfg.model, cfg.paths.cache_dir, trainable=True)
    online_copy = not cfg.reference.precompute  # full FT / continued adapter: a frozen copy
    policy = make_policy(model, cfg.model, cfg.train.init_adapter,
                         keep_frozen_reference=online_copy)  # fmt: skip
    model = policy.model
    # Reference 0 is the policy itself before training (adapter disabled): no second copy.
    main = Reference(cfg.model, cfg.paths.cache_dir, model, tokenizer,
                     adapter_on=cfg.train.init_adapter is not None)  # fmt: skip
    with main_process_first():  # rank 0 fills the caches, the others then read them
        data = load_data(cfg, run)
        tables = reference_tables(cfg, data, main)  # warm cache: no forward pass
    gc.collect()
    pdata = tokenize_policy(main.tokenization(), data.train, tables.base, tables.anchor_prompts)
    table = tables.train
    the_plan = plan(cfg, len(data.train), acc.num_processes)
    run.write_json("train/plan.json", the_plan)
    if policy.frozen_reference is not None:  # PITFALLS #4: the copy goes where the policy goes
        policy.frozen_reference.to(acc.device)
    ref_fn = reference_fn(cfg, policy, tokenizer, table)
    model = sharded.shard_on_cpu(model, acc)  # FSDP2 on CPU; on GPUs accelerate shards in prepare
    optimizer, scheduler = make_optimizer(model, cfg.train, the_plan["total_steps"])
    model, optimizer = sharded.prepare(acc, model, optimizer)
    if policy.frozen_reference is not None and sharded.is_fsdp2(model):
        log.warning(
            "online reference under FSDP2: the frozen initial model is a full copy on every "
            "process, not sharded; precomputed references (the default) avoid it"
        )
    probe_idx = random.Random(cfg.seed).sample(
        range(len(data.train)), min(cfg.train.probe_size, len(data.train))
    )
    log_row, reset_log = metric_writers(run, tracker, acc.is_main_process)
    parts = LoopParts(
        model=model, optimizer=optimizer, scheduler=scheduler, accelerator=acc, spec=spec,
        loss_fn=functools.partial(spec.fn, **cfg.method.loss_kwargs()), beta=cfg.method.beta,
        data=pdata, ref_fn=ref_fn, example_ids=[e.id for e in data.train],
        sampler=StepSampler(len(data.train), the_plan["global_batch"], cfg.seed),
        total_steps=the_plan["total_steps"], reduce=cfg.reference.reduce,
        probe=probe_fn(model, pdata, table, probe_idx, cfg.reference.reduce),
        log_row=log_row, reset_log=reset_log,
        after_step=keep_at(cfg.eval.at_steps, acc, model, tokenizer, checkpoints_dir(cfg, run)),
    )  # fmt: skip
    with evaluated_in_training(cfg, run, acc, model, tokenizer, the_plan["total_steps"]) as points:
        if points is not None:  # after keeping the step's checkpoint, evaluate the model
            parts.after_step = chain_steps(parts.after_step, points)
        last = train_loop(parts, cfg.train, checkpoints_dir(cfg, run))
    final = checkpoints_dir(cfg, run) / "final"
    save_model(acc, model, tokenizer, final)
    # relative to the run directory when inside it, so a moved or copied run finds its own model
    rel = final.resolve().relative_to(run.root.resolve()) if not cfg.paths.ckpt_root else None
    return {**last, "ckpt_path": str(rel or final.resolve()), **the_plan}


def checkpoints_dir(cfg: Config, run: RunDir) -> Path:
    """``<run>/checkpoints``, or ``<paths.ckpt_root>/<run name>/checkpoints`` on a cluster."""
    root = Path(cfg.paths.ckpt_root) / run.root.name if cfg.paths.ckpt_root else run.root
    return root / "checkpoints"


def at_step_dir(checkpoints: Path, step: int) -> Path:
    return checkpoints / f"at_step_{step:08d}"


def save_model(acc, model, tokenizer, out: Path) -> None:
    """Collective: the model (adapter or full weights) and tokenizer, loadable by the eval
    stage, written to a temporary folder and renamed (a kill leaves no half model)."""
    import shutil

    from bapo_exp.folders import replace_folder

    state = sharded.full_state_dict(acc, model)  # collective: gathers FSDP shards on rank 0
    if acc.is_main_process:
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        acc.unwrap_model(model).save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)
        replace_folder(tmp, out)
    acc.wait_for_everyone()


def keep_at(steps: list[int], acc, model, tokenizer, checkpoints: Path):
    """``after_step``: keep the model after each step of ``eval.at_steps`` (for the eval stage)."""
    wanted = set(steps)

    def after_step(done: int) -> None:
        if done in wanted:
            save_model(acc, model, tokenizer, at_step_dir(checkpoints, done))

    return after_step


def chain_steps(*hooks):
    """One ``after_step`` calling each of ``hooks`` in order."""

    def after_step(done: int) -> None:
        for hook in hooks:
            hook(done)

    return after_step


@contextmanager
def evaluated_in_training(cfg: Config, run: RunDir, acc, model, tokenizer, total: int):
    """The ``after_step`` that evaluates the run's points in memory (``stages.eval_points``),
    or None when the eval stage evaluates the checkpoints (``eval.in_training=false``, ...)."""
    from bapo_exp.stages import eval_points

    if not eval_points.wanted(cfg, acc.num_processes):
        yield None
        return
    points = eval_points.InTraining(cfg, run, acc.unwrap_model(model), tokenizer, total)
    try:
        yield points
    finally:
        points.close()


def metric_writers(run: RunDir, tracker: Tracker, is_main: bool):
    """``log_row`` (append to metrics.jsonl + tracker) and ``reset_log`` (rewrite on resume)."""

    def log_row(row: dict) -> None:
        if is_main:
            run.append_jsonl("train/metrics.jsonl", row)
            tracker.log({f"train/{k}": v for k, v in row.items() if k != "step"}, step=row["step"])

    def reset_log(rows: list[dict]) -> None:
        if is_main:
            run.path("train/metrics.jsonl").write_text("")
            for row in rows:
                run.append_jsonl("train/metrics.jsonl", row)

    return log_row, reset_log
