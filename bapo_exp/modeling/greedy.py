"""Greedy decoding with a KV cache in which finished rows leave the batch.

    new_ids = greedy_batch(model, [prompt_ids, ...], max_new_tokens=64, eos_ids={2}, pad_id=0)

The tokens ``model.generate`` picks with ``do_sample=False`` and no logits processors (the
prompts left-padded, position ids from the attention mask, the float32 arg-max of the last
position's logits, a row stopping at its first EOS), with less work: after each step the rows
that emitted an EOS are dropped from the batch and from the cache, so a finished row costs
nothing, and the loop has none of ``generate``'s per-step machinery. Each row's tokens do not
depend on the other rows of its batch beyond float rounding (tested against ``generate`` on
the tiny model and SmolLM2).

``plain_greedy_reason`` says why a generation config needs ``generate`` itself (a repetition
penalty, a minimum length, forced or suppressed tokens, ...); ``generate_texts`` falls back
to it then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# GenerationConfig fields that add logits processors or stopping rules to greedy decoding,
# with the values at which they do nothing.
NEUTRAL = {
    "repetition_penalty": (None, 1.0),
    "encoder_repetition_penalty": (None, 1.0),
    "no_repeat_ngram_size": (None, 0),
    "encoder_no_repeat_ngram_size": (None, 0),
    "bad_words_ids": (None,),
    "min_length": (None, 0),
    "min_new_tokens": (None, 0),
    "suppress_tokens": (None,),
    "begin_suppress_tokens": (None,),
    "forced_bos_token_id": (None,),
    "forced_eos_token_id": (None,),
    "sequence_bias": (None,),
    "exponential_decay_length_penalty": (None,),
    "renormalize_logits": (None, False),
    "stop_strings": (None,),
    "guidance_scale": (None, 1.0),
    "watermarking_config": (None,),
    "dola_layers": (None,),
    "penalty_alpha": (None,),
    "num_beams": (None, 1),
    "max_time": (None,),
}


def plain_greedy_reason(model: Any, gc: Any) -> str | None:
    """Why ``greedy_batch`` would not reproduce ``model.generate(generation_config=gc)``, or
    ``None`` when it does (greedy, decoder-only, no processors)."""
    if getattr(gc, "do_sample", False):
        return "sampling"
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return "an encoder-decoder model"
    for name, neutral in NEUTRAL.items():
        value = getattr(gc, name, None)
        if value not in neutral:
            return f"generation_config.{name}={value!r}"
    return None


def eos_ids(gc: Any) -> set[int]:
    """The EOS ids that end a row (``generation_config.eos_token_id``: int, list or None)."""
    eos = gc.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, list | tuple) else [eos])}


def left_padded(rows: Sequence[Sequence[int]], pad_id: int, device: Any):
    """Token rows padded on the left: input_ids, attention_mask and position ids (B, T)."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
        mask[i, width - len(row) :] = 1
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)  # as generate's position ids
    return ids.to(device), mask.to(device), pos.to(device)


def _new_cache(model: Any) -> Any:
    from transformers import DynamicCache

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return DynamicCache(config=base.config)


@torch.no_grad()
def greedy_batch(
    model: Any,
    rows: Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    eos_ids: set[int],
    pad_id: int,
) -> list[list[int]]:
    """Greedy continuations of ``rows`` (prompt token ids, each non-empty).

    Args:
        model: decoder-only causal LM (plain or PEFT-wrapped) in eval mode.
        rows: the prompts of one batch (similar lengths waste less: they are left-padded).
        max_new_tokens: tokens per row at most.
        eos_ids: a row ends after emitting one of these (included in its output).
        pad_id: id of the left padding (masked out).

    Returns:
        The new token ids of each row, its EOS included when it emitted one.
    """
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("greedy_batch needs non-empty prompts")
    device = next(model.parameters()).device
    ids, mask, pos = left_padded(rows, pad_id, device)
    out: list[list[int]] = [[] for _ in rows]
    active = list(range(len(rows)))  # row of ``out`` behind each batch row
    cache = _new_cache(model)
    step_ids, step_pos = ids, pos
    for step in range(max_new_tokens):
        logits = model(input_ids=step_ids, attention_mask=mask, position_ids=step_pos, cache=cache,
                       use_cache=True, logits_to_keep=1).logits  # fmt: skip
        nxt = logits[:, -1].to(torch.float32).argmax(-1)
        keep = []
        for j, token in enumerate(nxt.tolist()):
            out[active[j]].append(token)
            if token not in eos_ids:
                keep.append(j)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(active):  # finished rows leave the batch and the cache
            sel = torch.tensor(keep, device=device)
            cache.batch_select_indices(sel)
            mask, nxt, step_pos = mask[sel], nxt[sel], step_pos[sel]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=-1)
        step_ids, step_pos = nxt.unsqueeze(-1), step_pos[:, -1:] + 1
    return out
