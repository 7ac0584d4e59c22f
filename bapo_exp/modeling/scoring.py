"""Batched sequence log-probs of text pairs under one model (METHODS §1, §4.1, §5).

    logps, n_tokens = score_texts(model, tokenization, prompts, responses, batch_size=8)

This is how every reference scores y_w, y_l and y_b: each reference has its own
``Tokenization``, so a reference with another tokenizer scores the *text* with its own ids.

Memory and time: sequences are sorted by length (less padding), padded on the left, and the
LM head runs only on the last positions that hold response tokens (``logits_to_keep``), so
no (B, T, V) logits are built for the prompt (PITFALLS: the vocab-sized logits).

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

from bapo_exp.modeling.logps import sequence_logps
from bapo_exp.modeling.tokenize import Tokenization, TokenizedSeq, collate


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


def model_device(model: Any) -> torch.device:
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(model.parameters()).device


def forward_logps(
    model: Any,
    batch: dict[str, Tensor],
    *,
    reduce: str = "sum",
    on_forward: Callable[[int], None] | None = None,
) -> tuple[Tensor, Tensor]:
    """One forward pass and the response log-probs of each sequence.

    Gradients flow if the caller has them enabled (usable for the policy too). Logits are
    computed only for the suffix of positions that predicts response tokens.

    Args:
        model: causal LM called as ``model(input_ids=, attention_mask=, position_ids=,
            logits_to_keep=)`` (a ``PreTrainedModel``, ``PeftModel`` or ``ReferenceModel``).
        batch: output of ``collate`` (any padding side), on the model's device.
        reduce: ``sum`` or ``mean`` over response tokens.
        on_forward: called with the batch size after the forward pass.

    Returns:
        ``(logps, n_tokens)``: (B,) float32 and (B,) int64.
    """
    ids, mask = batch["input_ids"], batch["loss_mask"]
    seq_len = ids.shape[1]
    first = mask.long().argmax(dim=1)  # first response position of each row
    first = torch.where(mask.any(dim=1), first, torch.full_like(first, seq_len))
    start = max(int(first.min()) - 1, 0)  # the position predicting the first response token
    keep = seq_len - start
    out = model(
        input_ids=ids,
        attention_mask=batch["attention_mask"],
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
    )
    FORWARD_COUNTER.passes += 1
    FORWARD_COUNTER.sequences += ids.shape[0]
    if on_forward is not None:
        on_forward(ids.shape[0])
    logits = out.logits[:, -keep:]
    return sequence_logps(logits, ids[:, start:], mask[:, start:], reduce=reduce)


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
        model: the causal LM (or ``ReferenceModel``) that ``tokenization`` belongs to.
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
