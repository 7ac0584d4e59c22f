"""Padding-free forward passes: every linear layer runs on real tokens only.

A batch of B sequences padded to T positions is flattened to one row of its N real tokens
(``position_ids`` restart at 0 for each sequence), so the projections, MLPs, norms and the
rotary embedding do no work on padding. Only attention needs the sequences apart: the
attention function ``sdpa_unpadded`` scatters q, k and v back into a right-padded
(B, heads, T, d) layout, runs PyTorch's causal SDPA (right padding plus a causal mask means no
real query sees a pad key), and gathers the N real rows again. Attention cost is therefore
that of the padded batch, while everything else shrinks by N / (B * T).

    register()                                    # once; load_model does it
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation=UNPADDED)
    inputs = unpadded_inputs(batch)               # flat ids, positions, and the scatter index
    with expect_unpadded_calls(model):
        logits = model(**inputs, logits_to_keep=keep).logits

Calls without the ``unpad_index`` keyword (generation, lm-eval, full-logits scoring) go to
transformers' own ``sdpa`` unchanged, with its usual mask, so a model loaded this way behaves
exactly like ``attn_implementation="sdpa"`` everywhere else.

This is an implementation choice of ours (the papers do not discuss padding); it changes
results only by float rounding (tests/training/test_unpad.py checks values and gradients
against the padded path and a float64 reference). ``model.attn_implementation=sdpa`` turns it
off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor

UNPADDED = "sdpa_unpadded"


class _CallCount:
    """Attention calls that received a flat batch during the current checked forward."""

    value: int = 0


_CALLS = _CallCount()


def _repad(x: Tensor, index: Tensor, shape: tuple[int, int]) -> Tensor:
    """(1, H, N, d) flat heads -> (B, H, T, d) right-padded with zeros (differentiable)."""
    b, t = shape
    flat = x[0].transpose(0, 1)  # (N, H, d)
    out = flat.new_zeros((b * t, *flat.shape[1:])).index_copy(0, index, flat)
    return out.view(b, t, *flat.shape[1:]).transpose(1, 2)


def sdpa_unpadded(
    module: torch.nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Tensor | None,
    *,
    unpad_index: Tensor | None = None,
    unpad_shape: tuple[int, int] | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention for a transformers model: padded SDPA on a flat batch, plain SDPA otherwise.

    Raises:
        ValueError: if the layer asks for what a plain causal mask cannot give (a sliding
            window shorter than the batch, logit soft-capping) on a flat batch.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if unpad_index is None or unpad_shape is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    window = kwargs.pop("sliding_window", None)
    if window is not None and window < unpad_shape[1]:
        raise ValueError(
            f"{type(module).__name__} uses a sliding window of {window} tokens, which "
            f"{UNPADDED} does not apply; set model.attn_implementation=sdpa"
        )
    if kwargs.get("softcap") is not None:
        raise ValueError(f"{UNPADDED} does not support attention soft-capping; use sdpa/eager")
    _CALLS.value += 1
    q, k, v = (_repad(x, unpad_index, unpad_shape) for x in (query, key, value))
    out, _ = sdpa_attention_forward(module, q, k, v, None, is_causal=True, **kwargs)
    out = out.reshape(-1, *out.shape[2:]).index_select(0, unpad_index)  # (N, H, d)
    return out.unsqueeze(0), None


def register() -> None:
    """Make ``attn_implementation="sdpa_unpadded"`` known to transformers (idempotent)."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(UNPADDED, sdpa_unpadded)
    AttentionMaskInterface.register(UNPADDED, sdpa_mask)


def _config(model: Any) -> Any:
    """The transformers config of ``model`` or of the model it wraps (DDP, ReferenceModel)."""
    while getattr(model, "config", None) is None and hasattr(model, "module"):
        model = model.module
    return getattr(model, "config", None)


def is_unpadded(model: Any) -> bool:
    """Whether ``model`` (or the model it wraps: PEFT, DDP) was loaded with ``sdpa_unpadded``."""
    return getattr(_config(model), "_attn_implementation", None) == UNPADDED


def unpadded_inputs(batch: dict[str, Tensor]) -> dict[str, Any]:
    """Model inputs for the N real tokens of a padded ``collate`` batch (either padding side).

    Real tokens keep their row-major order, so any per-position selection (the response rows
    for ``logits_to_keep``) picks the same tokens, in the same order, as on the padded batch.

    Raises:
        ValueError: if a sequence's first token is a response token: on a flat row it would be
            predicted by the previous sequence's last token.
    """
    attn = batch["attention_mask"].bool()
    b, t = attn.shape
    offset = attn.long().cumsum(-1) - 1  # position of each real token in its own sequence
    if bool((batch["loss_mask"].bool() & (offset == 0)).any()):
        raise ValueError("loss_mask is set on a sequence's first token; nothing predicts it")
    rows = torch.arange(b, device=attn.device).unsqueeze(-1).expand(b, t)
    index = (rows * t + offset)[attn]  # where each real token sits in a right-padded (B, T)
    n = index.numel()
    return {
        "input_ids": batch["input_ids"][attn].unsqueeze(0),
        "position_ids": offset[attn].unsqueeze(0),
        "attention_mask": torch.ones((1, n), dtype=torch.long, device=attn.device),
        "unpad_index": index,
        "unpad_shape": (b, t),
    }


@contextmanager
def expect_unpadded_calls(model: Any) -> Iterator[None]:
    """Check that every attention layer saw the flat batch as a flat batch.

    A model whose attention does not pass extra keywords through to the attention function
    would attend across sequences of the flat row without a word; this turns that into an
    error.

    Raises:
        RuntimeError: if the number of ``sdpa_unpadded`` calls is not the layer count.
    """
    _CALLS.value = 0
    yield
    expected = getattr(_config(model), "num_hidden_layers", None)
    if _CALLS.value == 0 or (expected is not None and _CALLS.value != expected):
        raise RuntimeError(
            f"{type(model).__name__}: {_CALLS.value} attention layers took the padding-free "
            f"path, expected {expected}; this architecture does not route attention keywords "
            "through transformers' AttentionInterface. Set model.attn_implementation=sdpa"
        )
