"""Per-step computation: one concatenated policy forward, reference log-probs, loss inputs.

The method's ``LossSpec`` flags decide what is computed; nothing here branches on a name.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bapo_exp.data.types import PreferenceExample
from bapo_exp.losses import LossSpec
from bapo_exp.losses.metrics import anchor_drift, pair_metrics
from bapo_exp.losses.types import AnchorLogps, PairLogps
from bapo_exp.modeling.scoring import model_logps
from bapo_exp.modeling.tokenize import TokenizedSeq, collate
from bapo_exp.reference_tables import RefTable

# (batch indices, the policy batch) -> the batch's reference table (K, 3, B)
RefFn = Callable[[list[int], dict[str, Tensor]], RefTable]


@dataclass
class PolicyData:
    """Policy-tokenised sequences of every training (or held-out) example.

    ``base`` is (x, y_b) of the example's own prompt; ``anchor`` is what BAPO's anchor holds
    (the same, unless ``method.anchor.prompts=file``: then (x_a, y_b(x_a)) of an anchor prompt).
    """

    chosen: list[TokenizedSeq]
    rejected: list[TokenizedSeq]
    base: list[TokenizedSeq]
    pad_id: int
    anchor: list[TokenizedSeq] | None = None

    def third(self, block: str) -> list[TokenizedSeq]:
        return self.anchor if block == "anchor" and self.anchor is not None else self.base


def policy_batch(data: PolicyData, idx: Sequence[int], with_base: bool | str) -> dict[str, Tensor]:
    """Collate chosen, rejected (and a third block) of ``idx`` into one right-padded batch
    (S*B, T). ``with_base``: False, True (the base responses) or ``"anchor"``."""
    seqs = [data.chosen[i] for i in idx] + [data.rejected[i] for i in idx]
    if with_base:
        third = data.third("anchor" if with_base == "anchor" else "base")
        seqs += [third[i] for i in idx]
    return collate(seqs, pad_id=data.pad_id, side="right")


def policy_logps(
    model: torch.nn.Module, batch: dict[str, Tensor], reduce: str, *, response_only: bool = True
) -> tuple[Tensor, Tensor]:
    """Summed (or mean) response log-probs and token counts: ((S*B,), (S*B,)).

    One forward through the model's own ``__call__`` (PEFT, DDP and autocast stay in the
    path). The LM head and the float32 log-softmax run only on the positions that predict
    response tokens (``response_only``, default); ``response_only=False`` builds the full
    (S*B, T, V) logits. Both give the same values and gradients (tests/training/
    test_forward_logps.py); prompts are a quarter or more of the tokens, so the head is the
    part that shrinks.
    """
    return model_logps(model, batch, reduce=reduce, response_only=response_only)


def blocks(x: Tensor, b: int) -> list[Tensor]:
    """A ``policy_batch``'s per-sequence values split into its blocks of ``b``: chosen,
    rejected, and (``with_base``) base."""
    return [x[i * b : (i + 1) * b] for i in range(x.shape[0] // b)]


def loss_inputs(
    spec: LossSpec, logps: Tensor, ntok: Tensor, ref: RefTable
) -> tuple[dict, PairLogps, list[PairLogps], AnchorLogps | None]:
    """Build exactly the keyword arguments the method's loss asks for.

    Args:
        logps, ntok: policy log-probs and token counts, (S*B,): chosen, rejected[, base].
        ref: the batch's reference table (K, 3, B).
    """
    lp, nt = blocks(logps, ref.logps.shape[-1]), blocks(ntok, ref.logps.shape[-1])
    policy = PairLogps(lp[0], lp[1], nt[0], nt[1])
    refs = ref.pairs()
    anchors = ref.anchor(lp[2], nt[2]) if len(lp) == 3 else None
    inputs: dict = {"policy": policy}
    if spec.needs_reference:
        inputs["references" if spec.multi_reference else "reference"] = (
            refs if spec.multi_reference else refs[0]
        )
    if spec.needs_anchors:
        inputs["anchors"] = anchors
    return inputs, policy, refs, anchors


def example_metrics(
    spec_metrics: dict[str, Tensor],
    policy: PairLogps,
    main_ref: PairLogps,
    anchors: AnchorLogps | None,
    beta: float,
) -> dict[str, Tensor]:
    """Per-example metrics: the loss's own plus the method-independent ones (METHODS §6)."""
    out = dict(spec_metrics)
    out.update(pair_metrics(policy, main_ref, beta))
    if anchors is not None:
        out.update(anchor_drift(anchors))
    return {k: v.detach().float() for k, v in out.items()}


def tokenize_policy(
    tok, examples: list[PreferenceExample], base: dict[str, str], anchors: list[str] | None = None
) -> PolicyData:
    """The policy's token ids of every example's chosen, rejected and base (and anchor)."""
    return PolicyData(
        chosen=[tok.encode(e.prompt, e.chosen) for e in examples],
        rejected=[tok.encode(e.prompt, e.rejected) for e in examples],
        base=[tok.encode(e.prompt, base[e.prompt]) for e in examples],
        pad_id=tok.pad_id,
        anchor=[tok.encode(a, base[a]) for a in anchors] if anchors is not None else None,
    )
