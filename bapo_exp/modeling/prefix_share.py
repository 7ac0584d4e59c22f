"""Forward passes in which sequences that start with the same tokens compute them once.

    layout = prefix_layout([ids_0, ids_1, ...])        # sorted lexicographically for best sharing
    with prefix_shared_attention(model):
        logits = model(**layout.inputs, use_cache=False, logits_to_keep=rows).logits[0]

The sequences become one flat row: each sequence contributes only the tokens after its longest
common prefix with the sequence before it (the whole sequence if there is none), at their own
positions (``position_ids``). Every linear layer, norm and the LM head see each shared prefix
token once: the choices of a multiple-choice item share their context, and the items of an
MMLU subject share its few-shot examples. Attention runs per sequence: the queries of the
tokens it owns against the keys and values of all its tokens (its prefix read from the rows
that computed it), causal with the queries aligned to the end. Sequences of similar size are
gathered into one padded SDPA call (a bucket: padded area at most 1.25x the real one plus a
small allowance), so neither padding nor per-sequence calls dominate. This is exact for a
causal model (a token's state depends on its prefix only), so results equal a plain forward
up to float rounding (tests/evaluation/test_backend.py).

``prefix_shared_attention`` switches a model's attention implementation to
``sdpa_prefix_shared`` for the duration; a call without a ``prefix_plan`` keyword (generation,
other scorers) goes to transformers' plain ``sdpa``. A model whose attention does not route
keywords through transformers' ``AttentionInterface``, or needs more than a causal mask, gets a
clear error instead of attending across sequences. Used for scoring (eval), not training.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bapo_exp.modeling.unpad import (
    CallCount,
    check_flat_row,
    expect_calls,
    register_attention,
    repad,
)

PREFIX_SHARED = "sdpa_prefix_shared"


REMEDY = "use eval.backend=hf"
_CALLS = CallCount()


@dataclass
class Span:
    """One sequence's attention: its query rows ``[start, stop)`` of the flat row (the tokens
    it owns, the last of its positions) and the flat rows of all its positions (keys, values).
    """

    start: int
    stop: int
    kv_rows: Tensor


@dataclass
class Bucket:
    """Spans of similar size run as one padded SDPA call.

    Attributes:
        q_index: (B, Lq) flat row of each query slot (padding slots read row 0).
        kv_index: (B, Lk) flat row of each key/value slot (padding slots read row 0).
        mask: (B, 1, Lq, Lk) bool, causal with the queries aligned to the end of each span,
            padding keys masked (a padding query sees key 0); ``None`` for one span that owns
            all its tokens (plain causal SDPA).
        valid: (B * Lq,) bool, the real query slots; ``None`` when all are.
        out_rows: flat row of each real query slot, in slot order.
    """

    q_index: Tensor
    kv_index: Tensor
    mask: Tensor | None
    valid: Tensor | None
    out_rows: Tensor


@dataclass
class PrefixLayout:
    """Flat inputs and, per sequence, the flat row of each of its positions.

    Attributes:
        inputs: ``input_ids``, ``position_ids``, ``attention_mask`` (1, N) and ``prefix_plan``
            (list of ``Bucket``) for the model call.
        rows: per sequence, (L_i,) flat row of each position (shared ones point to the first
            sequence that computed them).
        spans: the attention of each sequence that owns tokens.
        shared: tokens not recomputed thanks to sharing (sum of L_i minus N).
    """

    inputs: dict[str, Any]
    rows: list[Tensor]
    spans: list[Span]
    shared: int


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


def prefix_layout(seqs: Sequence[Sequence[int]], device: Any = "cpu") -> PrefixLayout:
    """Flat row and attention plan of ``seqs`` (each non-empty), each sharing its longest common
    prefix with the sequence before it. Sorted input shares every common prefix there is (the
    longest common prefix with any earlier sequence is the one with the previous)."""
    ids: list[int] = []
    pos: list[int] = []
    rows: list[Tensor] = []
    spans: list[Span] = []
    for i, seq in enumerate(seqs):
        if not seq:
            raise ValueError(f"sequence {i} is empty")
        s = common_prefix(seqs[i - 1], seq) if i else 0
        start = len(ids)
        ids.extend(seq[s:])
        pos.extend(range(s, len(seq)))
        own = torch.arange(start, len(ids))
        rows.append(torch.cat([rows[i - 1][:s], own]) if s else own)
        if s < len(seq):
            spans.append(Span(start, len(ids), rows[i]))
    n = len(ids)
    inputs = {
        "input_ids": torch.tensor([ids], dtype=torch.long, device=device),
        "position_ids": torch.tensor([pos], dtype=torch.long, device=device),
        "attention_mask": torch.ones((1, n), dtype=torch.long, device=device),
        "prefix_plan": [_bucket(g, device) for g in _groups(spans)],
    }
    return PrefixLayout(inputs, rows, spans, sum(len(s) for s in seqs) - n)


def _groups(spans: list[Span], slack: float = 1.25, free: int = 4096) -> list[list[Span]]:
    """Spans sorted by size and grouped while the padded area stays within ``slack`` times
    the real one (plus ``free`` slots: tiny spans cost less padded than as separate calls)."""
    order = sorted(spans, key=lambda sp: (-len(sp.kv_rows), sp.start - sp.stop))
    groups: list[list[Span]] = []
    cur: list[Span] = []
    lq = lk = real = 0
    for sp in order:
        nq, nk = sp.stop - sp.start, len(sp.kv_rows)
        mq, mk = max(lq, nq), max(lk, nk)
        if cur and (len(cur) + 1) * mq * mk > slack * (real + nq * nk) + free:
            groups.append(cur)
            cur, mq, mk, real = [], nq, nk, 0
        cur.append(sp)
        lq, lk, real = mq, mk, real + nq * nk
    return [*groups, cur] if cur else groups


def _bucket(group: list[Span], device: Any) -> Bucket:
    if len(group) == 1 and group[0].stop - group[0].start == len(group[0].kv_rows):
        sp = group[0]  # owns every position: plain causal attention, no mask
        q = torch.arange(sp.start, sp.stop)
        return Bucket(q[None].to(device), sp.kv_rows[None].to(device), None, None, q.to(device))
    b = len(group)
    lq = max(sp.stop - sp.start for sp in group)
    lk = max(len(sp.kv_rows) for sp in group)
    q_index = torch.zeros((b, lq), dtype=torch.long)
    kv_index = torch.zeros((b, lk), dtype=torch.long)
    mask = torch.zeros((b, 1, lq, lk), dtype=torch.bool)
    mask[:, 0, :, 0] = True  # padding queries see key 0 (their output is dropped)
    for i, sp in enumerate(group):
        nq, nk = sp.stop - sp.start, len(sp.kv_rows)
        q_index[i, :nq] = torch.arange(sp.start, sp.stop)
        kv_index[i, :nk] = sp.kv_rows
        last = torch.arange(nk - nq, nk).unsqueeze(-1)  # position of each query
        mask[i, 0, :nq, :nk] = torch.arange(nk).unsqueeze(0) <= last
    valid = torch.arange(lq) < torch.tensor([sp.stop - sp.start for sp in group])[:, None]
    valid = valid.flatten()
    return Bucket(q_index.to(device), kv_index.to(device), mask.to(device), valid.to(device),
                  q_index.flatten()[valid].to(device))  # fmt: skip


def sdpa_prefix_shared(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    *,
    prefix_plan: list[Bucket] | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention for a transformers model: per-sequence SDPA on a prefix-shared flat row (in
    buckets of similar size), plain SDPA otherwise. ``query`` (1, H, N, d), ``key``/``value``
    (1, H_kv, N, d); returns (1, N, H, d) as transformers' attention functions do.

    Raises:
        ValueError: if the layer needs what a causal mask cannot give (a sliding window shorter
            than a sequence, soft-capping) on a flat row.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if prefix_plan is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    longest = max((bk.kv_index.shape[1] for bk in prefix_plan), default=0)
    check_flat_row(module, PREFIX_SHARED, longest, kwargs, REMEDY)
    _CALLS.value += 1
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    heads = query.shape[1:2] + query.shape[3:]  # (heads, d)
    out = query.new_empty((query.shape[2], *heads))  # (N, heads, d)
    for bk in prefix_plan:
        (b, lq), lk = bk.q_index.shape, bk.kv_index.shape[1]
        q = repad(query, bk.q_index.flatten(), (b, lq))
        k, v = (repad(x, bk.kv_index.flatten(), (b, lk)) for x in (key, value))
        o = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bk.mask, is_causal=bk.mask is None, scale=kwargs.get("scaling"),
            enable_gqa=gqa,
        )  # fmt: skip
        o = o.transpose(1, 2).reshape(b * lq, *heads)
        out.index_copy_(0, bk.out_rows, o if bk.valid is None else o[bk.valid])
    return out.unsqueeze(0), None


def register() -> None:
    """Make ``attn_implementation="sdpa_prefix_shared"`` known to transformers (idempotent)."""
    register_attention(PREFIX_SHARED, sdpa_prefix_shared)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextmanager
def prefix_shared_attention(model: Any) -> Iterator[None]:
    """``sdpa_prefix_shared`` for the duration (restored after), and a check that every layer
    took it: a model whose attention drops extra keywords would attend across sequences.

    Raises:
        ValueError: for a model whose class does not support SDPA.
        RuntimeError: if not every attention layer saw the plan.
    """
    base = _base(model)
    config = getattr(base, "config", None)
    if config is None or not getattr(base, "_supports_sdpa", False):
        raise ValueError(
            f"{type(base).__name__} does not support SDPA attention, which the prefix-shared "
            "forward needs; use eval.backend=hf"
        )
    register()
    before = config._attn_implementation
    config._attn_implementation = PREFIX_SHARED
    try:
        yield
    finally:
        config._attn_implementation = before


@contextmanager
def expect_prefix_calls(model: Any) -> Iterator[None]:
    """Raise unless every attention layer took the prefix-shared path in the enclosed call."""
    with expect_calls(_CALLS, _base(model), "prefix-shared", REMEDY):
        yield
