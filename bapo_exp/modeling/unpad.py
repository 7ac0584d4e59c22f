"""Padding-free forward passes with shared prompts: every linear layer runs once per distinct
token, never on padding, and a prompt that several sequences of the batch share (chosen,
rejected and base responses to one prompt) runs once.

The B padded sequences of a batch become one flat row of N tokens: each distinct prompt once,
then each sequence's response (``position_ids`` continue from the prompt). Projections, MLPs,
norms, the rotary embedding and the LM head see only these N rows. Attention is the one place
that needs whole sequences: the attention function ``sdpa_unpadded`` gathers q, k and v into a
right-padded (B, heads, T, d) layout in which every sequence has its prompt again, runs
PyTorch's causal SDPA through transformers' own ``sdpa_attention_forward`` (right padding plus a
causal mask means no real query sees a pad key), and takes one output row per flat token. The
gather's backward sums the gradients of a shared prompt's keys and values over the sequences
that read them, which is the chain rule for the shared computation, so values and gradients
equal the padded path's up to float rounding. This is prefix sharing for preference pairs
(Wang et al. 2024, "Accelerating Direct Preference Optimization with Prefix Sharing"), done
with a gather instead of a custom mask.

    register()                                    # once; load_model does it
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=UNPADDED)
    flat = unpadded_inputs(batch)                 # inputs + the row of each kept position
    with expect_unpadded_calls(model):
        logits = model(**flat.inputs, logits_to_keep=flat.keep).logits[0]

Calls without the ``unpad_gather`` keyword (generation, lm-eval, full-logits scoring) go to
transformers' own ``sdpa`` unchanged, with its usual mask, so a model loaded this way behaves
exactly like ``attn_implementation="sdpa"`` everywhere else.

An implementation choice of ours (the papers do not discuss padding); it changes results only
by float rounding (tests/training/test_unpad.py checks values and gradients against the padded
path and a float64 reference). ``model.attn_implementation=sdpa`` turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

UNPADDED = "sdpa_unpadded"
REMEDY = "set model.attn_implementation=sdpa"


class CallCount:
    """Attention calls that took a flat path during the current checked forward
    (:func:`expect_calls`)."""

    def __init__(self) -> None:
        self.value = 0


_CALLS = CallCount()


def repad(x: Tensor, gather: Tensor, shape: tuple[int, int]) -> Tensor:
    """(1, H, N, d) flat heads -> (B, H, T, d): slot s holds flat row ``gather[s]``.

    Padding slots (right of each sequence) hold a copy of row 0: under a causal mask no real
    query reaches them, and their own outputs are dropped, so they get no gradient either.
    Differentiable; the backward sums over the slots that share a row (a shared prompt).
    """
    b, t = shape
    flat = x[0].transpose(0, 1)  # (N, H, d)
    return flat.index_select(0, gather).view(b, t, *flat.shape[1:]).transpose(1, 2)


def sdpa_unpadded(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    *,
    unpad_gather: Tensor | None = None,
    unpad_rows: Tensor | None = None,
    unpad_shape: tuple[int, int] | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention for a transformers model: padded SDPA on a flat batch, plain SDPA otherwise.

    Raises:
        ValueError: if the layer asks for what a plain causal mask cannot give (a sliding
            window shorter than the batch, logit soft-capping) on a flat batch.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if unpad_gather is None or unpad_rows is None or unpad_shape is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    check_flat_row(module, UNPADDED, unpad_shape[1], kwargs, REMEDY)
    kwargs.pop("sliding_window", None)  # checked: no window is shorter than the batch
    _CALLS.value += 1
    q, k, v = (repad(x, unpad_gather, unpad_shape) for x in (query, key, value))
    out, _ = sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)
    out = out.reshape(-1, *out.shape[2:]).index_select(0, unpad_rows)  # (N, H, d)
    return out.unsqueeze(0), None


def check_flat_row(module: Any, path: str, longest: int, kwargs: dict, remedy: str) -> None:
    """Refuse what a plain causal mask over a flat row cannot give: a sliding window shorter
    than the ``longest`` sequence, logit soft-capping (``remedy``: the setting to change)."""
    window = kwargs.get("sliding_window")
    if window is not None and window < longest:
        raise ValueError(
            f"{type(module).__name__} uses a sliding window of {window} tokens, which {path} "
            f"does not apply; {remedy}"
        )
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{path} does not support attention soft-capping; {remedy}")


def register_attention(name: str, fn: Any) -> None:
    """Make ``attn_implementation=name`` known to transformers, with SDPA's mask (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(name, fn)
    AttentionMaskInterface.register(name, sdpa_mask)


def register() -> None:
    """Make ``attn_implementation="sdpa_unpadded"`` known to transformers (idempotent)."""
    register_attention(UNPADDED, sdpa_unpadded)


def _config(model: Any) -> Any:
    """The transformers config of ``model`` or of the model it wraps (DDP, Reference)."""
    while getattr(model, "config", None) is None and hasattr(model, "module"):
        model = model.module
    return getattr(model, "config", None)


def is_unpadded(model: Any) -> bool:
    """Whether ``model`` (or the model it wraps: PEFT, DDP) was loaded with ``sdpa_unpadded``."""
    return getattr(_config(model), "_attn_implementation", None) == UNPADDED


@dataclass
class FlatBatch:
    """A padded batch as one flat row.

    Attributes:
        inputs: model keywords: ``input_ids``, ``position_ids``, ``attention_mask`` (1, N) and
            the attention's ``unpad_gather`` (B*T,), ``unpad_rows`` (N,), ``unpad_shape``.
        keep: (K,) flat position of every position the padded batch's ``response_rows`` keeps,
            in the same row-major order (a shared prompt's last token appears once per sequence).
        shared: prompt tokens not recomputed thanks to sharing.
    """

    inputs: dict[str, Any]
    keep: Tensor
    shared: int


def _prompt_owner(ids: list[list[int]], n_prompt: list[int], share: bool) -> list[int]:
    """For each row, the row whose prompt it reads: the first row with the same prompt ids (a
    row with no response, or with sharing off, reads its own)."""
    first: dict[tuple, int] = {}
    owner = []
    for i, (row, p) in enumerate(zip(ids, n_prompt, strict=True)):
        own = share and 0 < p < len(row)
        owner.append(first.setdefault(tuple(row[:p]), i) if own else i)
    return owner


def _right_aligned(batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """CPU (B, t) ids and response mask with token o of sequence i at (i, o), the lengths and
    prompt lengths, for a batch padded on either side.

    Raises:
        ValueError: a response token first in its sequence, or a response not a suffix.
    """
    attn, mask = (batch[k].bool().cpu() for k in ("attention_mask", "loss_mask"))
    b, lengths = attn.shape[0], attn.sum(-1)
    t = int(lengths.max()) if b else 0
    rows = torch.arange(b).unsqueeze(-1).expand_as(attn)[attn]
    slots = rows * t + (attn.long().cumsum(-1) - 1)[attn]
    ids = torch.zeros(b * t, dtype=torch.long).index_copy_(0, slots, batch["input_ids"].cpu()[attn])
    resp = torch.zeros(b * t, dtype=torch.bool).index_copy_(0, slots, mask[attn]).view(b, t)
    n_prompt = (attn & ~mask).sum(-1)
    o = torch.arange(t)
    if t and bool(resp[:, 0].any()):
        i = int(resp[:, 0].nonzero()[0])
        raise ValueError(f"loss_mask is set on sequence {i}'s first token; nothing predicts it")
    suffix = (o >= n_prompt.unsqueeze(-1)) & (o < lengths.unsqueeze(-1))
    bad = (resp != suffix).any(-1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(f"sequence {i}: response tokens (loss_mask) are not a suffix")
    return ids.view(b, t), resp, lengths, n_prompt


def unpadded_inputs(batch: dict[str, Tensor], *, share_prompts: bool = True) -> FlatBatch:
    """The flat row of a ``collate`` batch (either padding side); see the module docstring.

    The flat row holds, in row-major order, every real token that a sequence does not read
    from an earlier sequence with the identical prompt. Its order does not matter to the model:
    causality is applied in the per-sequence layout that attention gathers.

    Args:
        batch: ``input_ids``, ``attention_mask``, ``loss_mask`` (B, T); the response is the
            masked suffix of each sequence's real tokens.
        share_prompts: run a prompt shared by several sequences once (default).

    Raises:
        ValueError: if a sequence's first token is a response token (nothing predicts it), or
            its response tokens are not a suffix.
    """
    dev = batch["input_ids"].device  # the bookkeeping runs on one CPU copy: no per-row syncs
    ids, resp, lengths, n_prompt = _right_aligned(batch)
    (b, t), o, me = ids.shape, torch.arange(ids.shape[1]), torch.arange(ids.shape[0])
    real = o < lengths.unsqueeze(-1)
    seqs = [r[:n] for r, n in zip(ids.tolist(), lengths.tolist(), strict=True)]
    owner = torch.tensor(_prompt_owner(seqs, n_prompt.tolist(), share_prompts), dtype=torch.long)
    reads_other = (owner != me).unsqueeze(-1) & (o < n_prompt.unsqueeze(-1))
    owned = (real & ~reads_other).flatten()
    flat_of_slot = owned.long().cumsum(0) - 1  # flat index of each owned slot
    source = torch.where(reads_other, owner.unsqueeze(-1), me.unsqueeze(-1))
    gather = torch.where(real.flatten(), flat_of_slot[(source * t + o).flatten()], 0)
    rows = owned.nonzero().squeeze(-1)  # the slot each flat token's output is read from
    keep = torch.zeros((b, t), dtype=torch.bool)
    keep[:, :-1] = resp[:, 1:]
    n = rows.numel()
    inputs = {
        "input_ids": ids.flatten()[rows].unsqueeze(0).to(dev),
        "position_ids": (rows % max(t, 1)).unsqueeze(0).to(dev),
        "attention_mask": torch.ones((1, n), dtype=torch.long, device=dev),
        "unpad_gather": gather.to(dev),  # padding slots read row 0: see repad
        "unpad_rows": rows.to(dev),
        "unpad_shape": (b, t),
    }
    return FlatBatch(inputs, gather.view(b, t)[keep].to(dev), int(lengths.sum()) - n)


@contextmanager
def expect_unpadded_calls(model: Any) -> Iterator[None]:
    """Check that every attention layer saw the flat batch as a flat batch.

    A model whose attention does not pass extra keywords through to the attention function
    would attend across sequences of the flat row without a word; this turns that into an
    error.

    Raises:
        RuntimeError: if the number of ``sdpa_unpadded`` calls is not the layer count.
    """
    with expect_calls(_CALLS, model, "padding-free", REMEDY):
        yield


@contextmanager
def expect_calls(counter: CallCount, model: Any, path: str, remedy: str) -> Iterator[None]:
    """Raise unless every attention layer of ``model`` counted a call on ``counter`` (took the
    ``path``) in the enclosed forward."""
    counter.value = 0
    yield
    expected = getattr(_config(model), "num_hidden_layers", None)
    if counter.value == 0 or (expected is not None and counter.value != expected):
        raise RuntimeError(
            f"{type(model).__name__}: {counter.value} attention layers took the {path} path, "
            f"expected {expected}; this architecture does not route attention keywords "
            f"through transformers' AttentionInterface; {remedy}"
        )
