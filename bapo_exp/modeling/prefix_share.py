"""Forward passes in which sequences that start with the same tokens compute them once.

    layout = prefix_layout([ids_0, ids_1, ...])        # sorted lexicographically for best sharing
    with prefix_shared_attention(model):
        logits = model(**layout.inputs, use_cache=False, logits_to_keep=rows).logits[0]

The sequences become one flat row: each sequence contributes only the tokens after its longest
common prefix with the sequence before it (the whole sequence if there is none), at their own
positions (``position_ids``). Every linear layer, norm and the LM head see each shared prefix
token once: the choices of a multiple-choice item share their context, and the items of an
MMLU subject share its few-shot examples. Attention runs per sequence, without padding: the
queries of the tokens it owns against the keys and values of all its tokens (its prefix read
from the rows that computed it), causal with the queries aligned to the end. This is exact for
a causal model (a token's state depends on its prefix only), so results equal a plain forward
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

PREFIX_SHARED = "sdpa_prefix_shared"


class _CallCount:
    value: int = 0


_CALLS = _CallCount()


@dataclass
class Span:
    """One sequence's attention: query rows ``[start, stop)`` of the flat row, the flat rows of
    all its tokens as keys and values, and its mask (``None`` = plain causal, when it owns every
    token)."""

    start: int
    stop: int
    kv_rows: Tensor
    mask: Tensor | None


@dataclass
class PrefixLayout:
    """Flat inputs and, per sequence, the flat row of each of its positions.

    Attributes:
        inputs: ``input_ids``, ``position_ids``, ``attention_mask`` (1, N) and ``prefix_plan``
            (list of ``Span``) for the model call.
        rows: per sequence, (L_i,) flat row of each position (shared ones point to the first
            sequence that computed them).
        shared: tokens not recomputed thanks to sharing (sum of L_i minus N).
    """

    inputs: dict[str, Any]
    rows: list[Tensor]
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
    plan: list[Span] = []
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
            q = torch.arange(s, len(seq)).unsqueeze(-1)
            mask = None if s == 0 else torch.arange(len(seq)).unsqueeze(0) <= q
            plan.append(Span(start, len(ids), rows[i].to(device), _dev(mask, device)))
    n = len(ids)
    inputs = {
        "input_ids": torch.tensor([ids], dtype=torch.long, device=device),
        "position_ids": torch.tensor([pos], dtype=torch.long, device=device),
        "attention_mask": torch.ones((1, n), dtype=torch.long, device=device),
        "prefix_plan": plan,
    }
    return PrefixLayout(inputs, rows, sum(len(s) for s in seqs) - n)


def _dev(x: Tensor | None, device: Any) -> Tensor | None:
    return None if x is None else x.to(device)


def sdpa_prefix_shared(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    *,
    prefix_plan: list[Span] | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention for a transformers model: per-sequence SDPA on a prefix-shared flat row, plain
    SDPA otherwise. ``query`` (1, H, N, d), ``key``/``value`` (1, H_kv, N, d); returns
    (1, N, H, d) as transformers' attention functions do.

    Raises:
        ValueError: if the layer needs what a causal mask cannot give (a sliding window shorter
            than a sequence, soft-capping) on a flat row.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if prefix_plan is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    longest = max((len(s.kv_rows) for s in prefix_plan), default=0)
    window = kwargs.get("sliding_window")
    if window is not None and window < longest:
        raise ValueError(
            f"{type(module).__name__} uses a sliding window of {window} tokens, which "
            f"{PREFIX_SHARED} does not apply; use eval.backend=hf"
        )
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{PREFIX_SHARED} does not support attention soft-capping")
    _CALLS.value += 1
    gqa = getattr(module, "num_key_value_groups", 1) > 1
    q, k, v = query[0], key[0], value[0]
    out = query.new_empty(q.shape[1], q.shape[0], q.shape[2])  # (N, H, d)
    for span in prefix_plan:
        o = torch.nn.functional.scaled_dot_product_attention(
            q[None, :, span.start : span.stop],
            k.index_select(1, span.kv_rows)[None],
            v.index_select(1, span.kv_rows)[None],
            attn_mask=span.mask,
            is_causal=span.mask is None,
            scale=kwargs.get("scaling"),
            enable_gqa=gqa,
        )
        out[span.start : span.stop] = o[0].transpose(0, 1)
    return out.unsqueeze(0), None


def register() -> None:
    """Make ``attn_implementation="sdpa_prefix_shared"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(PREFIX_SHARED, sdpa_prefix_shared)
    AttentionMaskInterface.register(PREFIX_SHARED, sdpa_mask)


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
    _CALLS.value = 0
    yield
    expected = getattr(getattr(_base(model), "config", None), "num_hidden_layers", None)
    if _CALLS.value == 0 or (expected is not None and _CALLS.value != expected):
        raise RuntimeError(
            f"{type(_base(model)).__name__}: {_CALLS.value} attention layers took the "
            f"prefix-shared path, expected {expected}; this architecture does not route "
            "attention keywords through transformers' AttentionInterface. Use eval.backend=hf"
        )
