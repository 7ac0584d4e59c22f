"""Exact sequence log-probabilities from causal-LM logits (METHODS §1): the one bridge
from a model to the losses, and the only place that shifts labels.

    out = model(input_ids=ids, attention_mask=attn, position_ids=pos)
    logps, n_tokens = sequence_logps(out.logits, ids, loss_mask)      # each (B,)

Response rows only (the fast path; the LM head runs on nothing else):

    keep = response_rows(loss_mask)                                   # (B, T) bool
    out = model(input_ids=ids, ..., logits_to_keep=keep)              # logits (N, V)
    logps, n_tokens = kept_sequence_logps(out.logits, ids, loss_mask)  # equal to the above

Pure: imports torch only.
"""

from __future__ import annotations

import torch
from torch import Tensor

REDUCES = ("sum", "mean")
ROW_CHUNK = 2048  # rows per float32 log-softmax block: bounds the temporary, not the result


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


def response_rows(loss_mask: Tensor) -> Tensor:
    """Positions whose logits are needed: ``keep[b, t] = loss_mask[b, t + 1]`` (B, T) bool.

    Position t predicts token t+1, so these are the response positions shifted left by one;
    the last position predicts nothing. Prompt and padding positions are never kept.

    Raises:
        ValueError: if the mask is set at position 0 (nothing predicts the first token).
    """
    mask = loss_mask.bool()
    if mask.dim() != 2:
        raise ValueError(f"expected loss_mask (B,T); got {tuple(mask.shape)}")
    if mask[:, 0].any():
        raise ValueError("loss_mask is set at position 0: nothing predicts the first token")
    keep = torch.zeros_like(mask)
    keep[:, :-1] = mask[:, 1:]
    return keep


class _LogSoftmaxPick(torch.autograd.Function):
    """``log_softmax(z)[i, t_i]`` with a one-pass backward: ``g_i * (onehot(t_i) - p_i)``.

    Forward keeps only the softmax ``p`` (it reuses the log-softmax buffer), so backward is one
    multiply and a scatter instead of autograd's fill/sub/exp/mul/add over (N, V). Measured
    on this CPU: the head's elementwise work drops from ~0.26 s to ~0.15 s per step
    (1162 x 8192 rows, 1 thread); the matmuls are unchanged.
    """

    @staticmethod
    def forward(ctx, z: Tensor, targets: Tensor) -> Tensor:
        logp = torch.log_softmax(z, dim=-1)
        out = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        ctx.save_for_backward(logp.exp_(), targets)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        probs, targets = ctx.saved_tensors
        grad_z = probs * grad.unsqueeze(-1).neg()  # no in-place use of the saved tensor
        grad_z.scatter_add_(-1, targets.unsqueeze(-1), grad.unsqueeze(-1))
        return grad_z, None


def picked_logps(logits: Tensor, targets: Tensor, chunk_rows: int = ROW_CHUNK) -> Tensor:
    """``log softmax(logits[i])[targets[i]]`` for (N, V) logits, in float32 (float64 stays).

    Rows are processed in blocks of ``chunk_rows`` (``torch.split``, whose backward is one
    concatenation), so a low-precision input is upcast one block at a time.
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    parts = [
        _LogSoftmaxPick.apply(z.to(dtype), t)
        for z, t in zip(logits.split(chunk_rows), targets.split(chunk_rows), strict=True)
    ]
    return torch.cat(parts) if parts else logits.new_zeros((0,), dtype=dtype)


def kept_sequence_logps(
    logits: Tensor, labels: Tensor, loss_mask: Tensor, reduce: str = "sum"
) -> tuple[Tensor, Tensor]:
    """``sequence_logps`` from the logits of the kept rows only (``response_rows``).

    Args:
        logits: (N, V) logits at the True positions of ``response_rows(loss_mask)``, in
            row-major order (what ``hidden[keep]`` gives); N = number of response tokens.
        labels: (B, T) input ids; only ids under the mask are read.
        loss_mask: (B, T) response-token mask (same convention as ``sequence_logps``).
        reduce: ``sum`` or ``mean``.

    Returns:
        ``(logps, n_tokens)`` as ``sequence_logps`` returns them (same values up to float
        rounding: the same float32 log-softmax on the same rows).

    Raises:
        ValueError: unknown ``reduce``, mask at position 0, or a row count that does not match.
    """
    if reduce not in REDUCES:
        raise ValueError(f"unknown reduce {reduce!r}; valid: {list(REDUCES)}")
    if labels.shape != loss_mask.shape:
        raise ValueError(
            f"labels {tuple(labels.shape)} and loss_mask {tuple(loss_mask.shape)} differ"
        )
    keep = response_rows(loss_mask)
    rows = keep.nonzero(as_tuple=True)[0]
    if logits.dim() != 2 or logits.shape[0] != rows.numel():
        raise ValueError(
            f"expected ({rows.numel()}, V) logits for the {rows.numel()} response tokens; "
            f"got {tuple(logits.shape)}"
        )
    targets = labels[:, 1:][keep[:, :-1]]
    per_token = picked_logps(logits, targets)
    logps = per_token.new_zeros(labels.shape[0]).index_add(0, rows, per_token)
    n_tokens = keep.sum(-1)
    if reduce == "mean":
        logps = logps / n_tokens.clamp_min(1)
    return logps, n_tokens
