"""Exact sequence log-probabilities from causal-LM logits (METHODS §1): the one bridge
from a model to the losses, and the only place that shifts labels.

    out = model(input_ids=ids, attention_mask=attn, position_ids=pos)
    logps, n_tokens = sequence_logps(out.logits, ids, loss_mask)      # each (B,)

Pure: imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCES = ("sum", "mean")


def token_logps(logits: Tensor, labels: Tensor) -> Tensor:
    """Log-probability of each next token: ``log pi(labels[:, t+1] | logits[:, t])``.

    Log-softmax is computed in float32 (float64 stays float64) as ``logit[label] -
    logsumexp(logits)``, one sequence at a time, so no second (B, T, V) tensor is built.

    Args:
        logits: (B, T, V) causal-LM logits, any float dtype.
        labels: (B, T) token ids; every id must lie in ``[0, V)``.

    Returns:
        (B, T-1) log-probs, float32 (float64 for float64 logits).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    targets = labels[:, 1:].unsqueeze(-1)
    rows = []
    for row_logits, row_targets in zip(logits[:, :-1], targets, strict=True):
        row = row_logits.to(dtype)  # (T-1, V)
        picked = row.gather(-1, row_targets).squeeze(-1)
        rows.append(picked - torch.logsumexp(row, dim=-1))
    return torch.stack(rows) if rows else logits.new_zeros((0, logits.shape[1] - 1), dtype=dtype)


def sequence_logps(
    logits: Tensor, labels: Tensor, loss_mask: Tensor, reduce: str = "sum"
) -> tuple[Tensor, Tensor]:
    """Summed (or per-token mean) log-probs of the response tokens of each sequence.

    Convention: ``labels`` are the input ids; ``loss_mask[b, t] = 1`` where token t is a
    response token (including the appended EOS), 0 on prompt and padding (either side).
    Logits at position t predict token t+1, so position 0 can never be a response token.

    Args:
        logits: (B, T, V) logits of the model run on ``labels`` (any float dtype).
        labels: (B, T) input ids. Ids outside the mask are ignored (may be -100 or padding).
        loss_mask: (B, T) bool/int mask of response tokens.
        reduce: ``sum`` (default, METHODS §1) or ``mean`` (divided by the token count).

    Returns:
        ``(logps, n_tokens)``: (B,) float32 log-probs (float64 for float64 logits) and (B,)
        int64 response token counts. A sequence without response tokens gets 0.

    Raises:
        ValueError: on mismatched shapes, an unknown ``reduce``, or a mask set at position 0.
    """
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {list(REDUCES)}")
    if logits.dim() != 3 or labels.shape != logits.shape[:2] or loss_mask.shape != labels.shape:
        raise ValueError(
            f"expected logits (B,T,V), labels and loss_mask (B,T); got {tuple(logits.shape)}, "
            f"{tuple(labels.shape)}, {tuple(loss_mask.shape)}"
        )
    mask = loss_mask.bool()
    if mask[:, 0].any():
        raise ValueError("loss_mask is set at position 0: nothing predicts the first token")
    mask = mask[:, 1:]
    safe_labels = torch.where(loss_mask.bool(), labels, torch.zeros_like(labels))
    per_token = token_logps(logits, safe_labels)
    logps = torch.where(mask, per_token, torch.zeros_like(per_token)).sum(-1)
    n_tokens = mask.sum(-1)
    if reduce == "mean":
        logps = logps / n_tokens.clamp_min(1)
    return logps, n_tokens
