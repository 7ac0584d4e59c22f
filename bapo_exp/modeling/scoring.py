"""Batched sequence log-probs of text pairs under one model (METHODS §1, §4.1, §5).

    logps, n_tokens = score_texts(model, tokenization, prompts, responses, batch_size=8)

This is how every reference scores y_w, y_l and y_b: each reference has its own
``Tokenization``, so a reference with another tokenizer scores the *text* with its own ids.

Memory and time: sequences are sorted by length (less padding), padded on the left, and the
LM head runs only on the positions that predict response tokens (a boolean
``logits_to_keep``), so no (B, T, V) logits are built (PITFALLS: the vocab-sized logits).
The policy's training forward (``training/forward.py``) uses the same ``model_logps``.

``FORWARD_COUNTER`` counts model forward passes made here, so tests can assert that a cached
reference does none; ``on_forward`` is an optional per-call callback with the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from bapo_exp.modeling.logps import kept_sequence_logps, response_rows, sequence_logps
from bapo_exp.modeling.tokenize import Tokenization, TokenizedSeq, collate
from bapo_exp.modeling.unpad import expect_unpadded_calls, is_unpadded, unpadded_inputs


@dataclass
class ForwardCounter:
    """Forward passes (batches) and sequences run through a model by this module."""

    passes: int = 0
    sequences: int = 0

    def reset(self) -> None:
        self.passes = 0
        self.sequences = 0


FORWARD_COUNTER = ForwardCounter()


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode (no dropout) for the duration; each submodule's own mode is restored after."""
    modules = list(model.modules()) if hasattr(model, "modules") else []
    modes = [m.training for m in modules]
    for m in modules:
        m.training = False
    try:
        yield
    finally:
        for m, training in zip(modules, modes, strict=True):
            m.training = training


@contextmanager
def forward_seconds(model: Any) -> Iterator[list[float]]:
    """Wall seconds spent inside ``model``'s forward calls while the context is open (yields a
    one-element list, filled at the end): the model's compute, every other cost excluded. The
    hooks sit on the innermost model (a PEFT wrapper's base), which every path calls."""
    import time

    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    total, open_calls = [0.0], []

    def before(*_: Any) -> None:
        open_calls.append(time.perf_counter())

    def after(*_: Any) -> None:
        start = open_calls.pop()
        if not open_calls:  # the outermost call only
            total[0] += time.perf_counter() - start

    handles = [inner.register_forward_pre_hook(before), inner.register_forward_hook(after)]
    try:
        yield total
    finally:
        for h in handles:
            h.remove()


def model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def model_logps(
    model: Any, batch: dict[str, Tensor], *, reduce: str = "sum", response_only: bool = True
) -> tuple[Tensor, Tensor]:
    """One forward pass and the response log-probs of each sequence (no counting).

    With ``response_only`` (default) the model gets ``logits_to_keep`` = the boolean
    ``response_rows`` mask, so the LM head and the float32 log-softmax run on the N response
    positions only: logits are (N, V) instead of (B, T, V). Passing the mask through the
    model's own forward keeps every wrapper in the path (PEFT and a disabled adapter, DDP's
    gradient hooks, accelerate's autocast, ``Reference``) and the model's own logit
    transforms (scaling, soft-capping). ``response_only=False`` builds the full logits (the
    reference path the fast one is tested against).

    A model loaded with ``attn_implementation="sdpa_unpadded"`` (the default) gets the batch
    flattened to its distinct tokens (``modeling.unpad``): no linear layer runs on padding, and
    a prompt shared by several sequences (chosen, rejected, base) runs once.

    Raises:
        ValueError: if the model ignores a boolean ``logits_to_keep`` (its logits are not
            (N, V)); pass ``response_only=False`` for such a model.
    """
    ids, mask = batch["input_ids"], batch["loss_mask"]
    inputs = {"input_ids": ids, "attention_mask": batch["attention_mask"],
              "position_ids": batch["position_ids"], "use_cache": False}  # fmt: skip
    if not response_only:
        return sequence_logps(model(**inputs).logits, ids, mask, reduce=reduce)
    keep = response_rows(mask)
    if is_unpadded(model):  # padding-free, shared prompts, same kept rows (modeling/unpad.py)
        flat = unpadded_inputs(batch)
        with expect_unpadded_calls(model):
            logits = model(**flat.inputs, use_cache=False, logits_to_keep=flat.keep).logits[0]
    else:
        logits = model(**inputs, logits_to_keep=keep).logits
    if logits.dim() != 2 or logits.shape[0] != int(keep.sum()):
        raise ValueError(
            f"{type(model).__name__} ignored logits_to_keep as a boolean mask (logits "
            f"{tuple(logits.shape)}, expected ({int(keep.sum())}, V)); use response_only=False"
        )
    return kept_sequence_logps(logits, ids, mask, reduce=reduce)


def forward_logps(
    model: Any,
    batch: dict[str, Tensor],
    *,
    reduce: str = "sum",
    on_forward: Callable[[int], None] | None = None,
    response_only: bool = True,
) -> tuple[Tensor, Tensor]:
    """``model_logps``, counted in ``FORWARD_COUNTER`` (reference scoring).

    Gradients flow if the caller has them enabled.

    Args:
        model: causal LM called as ``model(input_ids=, attention_mask=, position_ids=,
            use_cache=, logits_to_keep=)`` (a ``PreTrainedModel``, ``PeftModel`` or
            ``Reference``).
        batch: output of ``collate`` (any padding side), on the model's device.
        reduce: ``sum`` or ``mean`` over response tokens.
        on_forward: called with the batch size after the forward pass.
        response_only: LM head on response positions only (see ``model_logps``).

    Returns:
        ``(logps, n_tokens)``: (B,) float32 and (B,) int64.
    """
    out = model_logps(model, batch, reduce=reduce, response_only=response_only)
    n = batch["input_ids"].shape[0]
    FORWARD_COUNTER.passes += 1
    FORWARD_COUNTER.sequences += n
    if on_forward is not None:
        on_forward(n)
    return out


def score_seqs(
    model: Any,
    seqs: Sequence[TokenizedSeq],
    *,
    pad_id: int,
    batch_size: int = 8,
    reduce: str = "sum",
    side: str = "left",
    desc: str = "scoring",
    on_forward: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Score already tokenized sequences in length-sorted batches, in eval mode (no dropout,
    training modes restored after) under ``torch.no_grad``.

    Returns:
        ``(logps, n_tokens)``: (N,) float32 and (N,) int64 on CPU, in the input order.
    """
    n = len(seqs)
    logps = torch.zeros(n, dtype=torch.float32)
    n_tokens = torch.zeros(n, dtype=torch.long)
    order = sorted(range(n), key=lambda i: len(seqs[i].ids), reverse=True)
    device = model_device(model) if n else torch.device("cpu")
    with (
        eval_mode(model),
        torch.no_grad(),
        tqdm(total=n, desc=desc, unit="seq", leave=False) as bar,
    ):
        for lo in range(0, n, batch_size):
            idx = order[lo : lo + batch_size]
            batch = collate([seqs[i] for i in idx], pad_id, side=side)
            batch = {k: v.to(device) for k, v in batch.items()}
            lp, nt = forward_logps(model, batch, reduce=reduce, on_forward=on_forward)
            logps[idx] = lp.float().cpu()
            n_tokens[idx] = nt.cpu()
            bar.update(len(idx))
    return logps, n_tokens


def score_texts(
    model: Any,
    tokenization: Tokenization,
    prompts: Sequence[str],
    responses: Sequence[str],
    *,
    batch_size: int = 8,
    reduce: str = "sum",
    desc: str = "scoring",
    side: str = "left",
    on_forward: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """Log-probs of each response given its prompt, tokenized with the model's own rules.

    Args:
        model: the causal LM (or ``Reference``) that ``tokenization`` belongs to.
        tokenization: that model's ``Tokenization`` (template, tokenizer, truncation).
        prompts, responses: N raw strings each.
        batch_size: sequences per forward pass.
        reduce: ``sum`` (default) or ``mean``.
        desc: tqdm label.
        side: padding side (results do not depend on it beyond float rounding).
        on_forward: optional callback, called with the batch size after each forward pass.

    Returns:
        ``(logps, n_tokens)``: (N,) float32 and (N,) int64 on CPU.
    """
    seqs = tokenization.encode_many(prompts, responses)
    return score_seqs(
        model,
        seqs,
        pad_id=tokenization.pad_id,
        batch_size=batch_size,
        reduce=reduce,
        side=side,
        desc=desc,
        on_forward=on_forward,
    )
