"""Log-likelihoods of continuations, each distinct input run once (lm-eval's loglikelihood).

    results = score_continuations(model, [(context_ids, continuation_ids), ...],
                                  token_budget=2048)          # [(logprob, is_greedy), ...]

What ``lm_eval``'s ``HFLM`` returns for requests that already fit the model's window, computed
with less work:

- a request's model input is ``context + continuation[:-1]``; requests with the same input run
  once (the one-token choices of an MMLU item: ``HFLM`` does this too), and every member reads
  the trailing ``len(continuation)`` rows of it;
- inputs are sorted and run in the prefix-shared, padding-free layout of
  ``modeling.prefix_share``: a common prefix (the context of an item's choices, the few-shot
  examples of an MMLU subject) runs once, and attention runs per sequence without padding;
- the LM head and a float32 log-softmax run only on the positions that predict continuation
  tokens (``HFLM`` computes full-vocabulary logits and log-softmax for every position);
- batches are filled up to ``token_budget`` distinct tokens, not a count of requests.

``logprob`` is the sum of the continuation tokens' log-probs and ``is_greedy`` whether every
continuation token is the arg-max of its log-softmax row, as in ``HFLM``. The caller truncates
(``truncate_like_hflm``) and validates lengths; this module only scores.

``SCORER_STATS`` counts what ran (forwards, body tokens, head rows, causal attention pairs), so
benchmarks can count the executed FLOPs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bapo_exp.modeling.prefix_share import (
    PrefixLayout,
    common_prefix,
    expect_prefix_calls,
    prefix_layout,
    prefix_shared_attention,
)
from bapo_exp.modeling.scoring import eval_mode, model_device

Request = tuple[Sequence[int], Sequence[int]]  # (context ids, continuation ids)
ROW_CHUNK = 1024  # head rows per float32 log-softmax block


@dataclass
class ScorerStats:
    """Work done by ``score_continuations`` since the last ``reset`` (for FLOP counts)."""

    forwards: int = 0
    sequences: int = 0
    body_tokens: int = 0  # distinct tokens through every linear layer (shared contexts once)
    head_rows: int = 0  # positions through the LM head and the log-softmax
    attention_pairs: int = 0  # causal (query, key) pairs attention computes

    def reset(self) -> None:
        self.forwards = self.sequences = self.body_tokens = 0
        self.head_rows = self.attention_pairs = 0


SCORER_STATS = ScorerStats()


def truncate_like_hflm(context: Sequence[int], continuation: Sequence[int], max_length: int):
    """``HFLM``'s left truncation: keep the last ``max_length + 1`` tokens of context +
    continuation (the last token is only a target). Returns ``(context', continuation)``.

    Raises:
        ValueError: if the continuation alone exceeds ``max_length`` (nothing to condition on).
    """
    if len(continuation) > max_length:
        raise ValueError(f"continuation of {len(continuation)} tokens > max_length {max_length}")
    keep = max_length + 1 - len(continuation)
    return list(context)[-keep:], list(continuation)


@dataclass
class _Unique:
    """One distinct model input ``context + continuation[:-1]`` and the requests it serves.

    ``rep`` is the member with the longest continuation; every member reads the trailing
    ``len(continuation)`` of its kept rows (lm-eval's one-token-continuation cache, in general).
    """

    rep: int
    members: list[int]


def _uniques(requests: Sequence[Request]) -> list[_Unique]:
    by_input: dict[tuple[int, ...], _Unique] = {}
    for i, (ctx, cont) in enumerate(requests):
        u = by_input.setdefault((*ctx, *cont[:-1]), _Unique(i, []))
        u.members.append(i)
        if len(cont) > len(requests[u.rep][1]):
            u.rep = i
    return list(by_input.values())


def _input(requests: Sequence[Request], u: _Unique) -> list[int]:
    ctx, cont = requests[u.rep]
    return [*ctx, *cont[:-1]]


def _batches(requests: Sequence[Request], token_budget: int) -> Iterator[list[_Unique]]:
    """Distinct inputs in lexicographic order (a shared prefix is adjacent), packed up to
    ``token_budget`` distinct tokens per batch (a longer input runs alone)."""
    uniques = sorted(_uniques(requests), key=lambda u: _input(requests, u))
    batch: list[_Unique] = []
    used, prev = 0, []
    for u in uniques:
        seq = _input(requests, u)
        cost = len(seq) - (common_prefix(prev, seq) if batch else 0)
        if batch and used + cost > token_budget:
            yield batch
            batch, used, cost = [], 0, len(seq)
        batch.append(u)
        used += cost
        prev = seq
    if batch:
        yield batch


def _pick(logits: Tensor, rows: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Float32 ``log_softmax(logits[rows[m]])[targets[m]]`` and whether ``targets[m]`` is that
    row's arg-max (of the log-softmax, as ``HFLM`` takes it); ``ROW_CHUNK`` rows at a time."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    picked = torch.zeros(targets.shape, dtype=dtype, device=logits.device)
    greedy = torch.zeros(targets.shape, dtype=torch.bool, device=logits.device)
    for lo in range(0, logits.shape[0], ROW_CHUNK):
        logp = torch.log_softmax(logits[lo : lo + ROW_CHUNK].to(dtype), dim=-1)
        sel = ((rows >= lo) & (rows < lo + logp.shape[0])).nonzero().squeeze(-1)
        local, tgt = rows[sel] - lo, targets[sel]
        picked[sel] = logp[local, tgt]
        greedy[sel] = logp.argmax(-1)[local] == tgt
    return picked, greedy


def _targets(requests: Sequence[Request], batch: list[_Unique]) -> tuple[list[int], Tensor, Tensor]:
    """Members in batch order, and for each of their continuation tokens the kept row that
    predicts it and its id."""
    members, rows, targets = [], [], []
    offset = 0
    for u in batch:
        n_rep = len(requests[u.rep][1])
        for m in u.members:
            cont = requests[m][1]
            members.append(m)
            rows.extend(range(offset + n_rep - len(cont), offset + n_rep))
            targets.extend(cont)
        offset += n_rep
    return members, torch.tensor(rows), torch.tensor(targets)


@dataclass
class BatchPlan:
    """One forward of the scorer, prepared without the model: the prefix-shared layout of the
    batch's distinct inputs, the flat rows the LM head runs on (each once), and per scored token
    its position in ``keep`` and its target (``members`` in batch order, ``lengths`` their
    continuation lengths)."""

    layout: PrefixLayout
    keep: Tensor
    members: list[int]
    rows: Tensor
    targets: Tensor
    lengths: list[int]
    pairs: int  # causal (query, key) pairs of its attention (SCORER_STATS)


def _plan_batch(requests: Sequence[Request], batch: list[_Unique], device: Any) -> BatchPlan:
    seqs = [_input(requests, u) for u in batch]
    layout = prefix_layout(seqs, device=device)
    # kept rows: the positions predicting each representative's continuation tokens
    keep = torch.cat([
        rows[len(seq) - len(requests[u.rep][1]) :]
        for u, seq, rows in zip(batch, seqs, layout.rows, strict=True)
    ]).to(layout.inputs["input_ids"].device)  # fmt: skip
    members, rows, targets = _targets(requests, batch)
    # inputs sharing a prefix share the flat rows of its positions: the head runs on each once
    keep, where = torch.unique(keep, return_inverse=True)
    pairs = sum(causal_pairs(sp.stop - sp.start, len(sp.kv_rows)) for sp in layout.spans)
    return BatchPlan(layout, keep, members, where[rows].to(device), targets.to(device),
                     [len(requests[m][1]) for m in members], pairs)  # fmt: skip


def plan_scoring(
    requests: Sequence[Request], *, token_budget: int = 2048, device: Any = "cpu"
) -> list[BatchPlan]:
    """The forwards ``score_continuations`` runs for ``requests`` (they depend on the token ids
    and the budget only: plan once, score any model of the same tokenizer with ``plan=``)."""
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    for i, (ctx, cont) in enumerate(requests):
        if not ctx or not cont:
            raise ValueError(f"request {i}: empty context ({len(ctx)}) or continuation "
                             f"({len(cont)}) token ids")  # fmt: skip
    return [_plan_batch(requests, b, device) for b in _batches(requests, token_budget)]


def _score_batch(model: Any, plan: BatchPlan) -> dict:
    """One prefix-shared forward over the distinct inputs of a batch; returns
    ``{request index: (logprob, is_greedy)}`` for all their members."""
    layout, keep = plan.layout, plan.keep
    with expect_prefix_calls(model):
        logits = model(**layout.inputs, use_cache=False, logits_to_keep=keep).logits[0]
    if logits.dim() != 2 or logits.shape[0] != keep.numel():
        raise ValueError(
            f"{type(model).__name__} ignored logits_to_keep as an index tensor (logits "
            f"{tuple(logits.shape)}, expected ({keep.numel()}, V)); use eval.backend=hf"
        )
    picked, greedy = _pick(logits, plan.rows, plan.targets)
    _count(len(layout.rows), layout.inputs["input_ids"].shape[1], keep.numel(), plan.pairs)
    return {
        m: (float(lp.sum()), bool(g.all()))
        for m, lp, g in zip(
            plan.members, picked.split(plan.lengths), greedy.split(plan.lengths), strict=True
        )  # fmt: skip
    }


def causal_pairs(queries: int, keys: int) -> int:
    """(query, key) pairs of causal attention whose ``queries`` are the last of ``keys``."""
    return queries * (keys - queries) + queries * (queries + 1) // 2


def _count(sequences: int, body: int, head: int, attention: int) -> None:
    SCORER_STATS.forwards += 1
    SCORER_STATS.sequences += sequences
    SCORER_STATS.body_tokens += body
    SCORER_STATS.head_rows += head
    SCORER_STATS.attention_pairs += attention


def score_continuations(
    model: Any, requests: Sequence[Request], *, token_budget: int = 2048, progress: Any = None,
    plan: list[BatchPlan] | None = None,
) -> list[tuple[float, bool]]:  # fmt: skip
    """``(logprob, is_greedy)`` of each continuation given its context, in request order.

    Args:
        model: causal LM (plain, PEFT-wrapped or merged) that accepts an index tensor as
            ``logits_to_keep`` and supports SDPA; its attention is ``sdpa_prefix_shared``
            while scoring (``modeling.prefix_share``) and restored after.
        requests: ``(context_ids, continuation_ids)``, both non-empty and already truncated to
            the model's window.
        token_budget: distinct tokens per forward pass (a longer input runs alone).
        progress: optional tqdm-like bar, advanced by the requests of each batch.
        plan: ``plan_scoring(requests, token_budget=..., device=...)`` if already made.

    Raises:
        ValueError: on an empty context or continuation, or a budget below 1.
    """
    if plan is None:
        plan = plan_scoring(requests, token_budget=token_budget, device=model_device(model))
    out: list[tuple[float, bool]] = [(0.0, False)] * len(requests)
    with eval_mode(model), torch.no_grad(), prefix_shared_attention(model):
        for batch in plan:
            done = _score_batch(model, batch)
            for i, res in done.items():
                out[i] = res
            if progress is not None:
                progress.update(len(done))
    return out
