"""Base responses and reference tables, computed once and shared (METHODS §3, §5).

    refs = [main, *(Reference(s, cache_dir) for s in cfg.method.reference_models())]
    base = base_responses(main, prompts, cfg.reference, cache_dir=..., seed=cfg.seed)
    table = score_examples(refs, examples, base, cfg.reference)      # a RefTable

Names: a ``Reference`` (``modeling.reference_model``) is a frozen model that scores text; a
``RefTable`` holds the log-probs K references give each example's chosen, rejected and base
response; the ``ReferenceCache`` (``modeling.logp_cache``) keeps them on disk, so with warm caches
the ``reference``, ``train`` and ``eval`` stages run no reference forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bapo_exp.config import ReferenceStageConfig
from bapo_exp.data.types import PreferenceExample
from bapo_exp.losses.types import AnchorLogps, PairLogps
from bapo_exp.modeling.reference_model import Reference

log = logging.getLogger(__name__)
ROLES = ("chosen", "rejected", "base")  # the response axis of a RefTable (+ "anchor")


@dataclass
class RefTable:
    """Reference log-probs of each example's responses, for K references.

    Attributes:
        logps: (K, R, N): reference k (0 = the main one), response role (``roles``), example.
        ntok: (K, R, N) response token counts.
        n_computed: sequences scored by a forward pass (the rest came from the cache).
        fingerprints: the cache folder of each reference.
        roles: ``ROLES``, plus ``"anchor"`` when BAPO's anchor prompts come from a file.
    """

    logps: Tensor
    ntok: Tensor
    n_computed: int = 0
    fingerprints: list[str] = field(default_factory=list)
    roles: tuple[str, ...] = ROLES

    def select(self, idx: Sequence[int]) -> RefTable:
        """The examples ``idx`` (a batch): (K, R, len(idx))."""
        return RefTable(self.logps[:, :, idx], self.ntok[:, :, idx], roles=self.roles)

    def row(self, role: str) -> int:
        """The row of a response role; ``anchor`` falls back to ``base`` when the anchor is the
        example's own base response."""
        return self.roles.index("base" if role == "anchor" and role not in self.roles else role)

    def role(self, role: str, k: int = 0) -> Tensor:
        """Reference ``k``'s log-probs of one response role, (N,)."""
        return self.logps[k, self.row(role)]

    def tokens(self, role: str, k: int = 0) -> Tensor:
        return self.ntok[k, self.row(role)]

    def pair(self, k: int = 0) -> PairLogps:
        """Reference ``k``'s chosen/rejected log-probs with their token counts."""
        return PairLogps(self.role("chosen", k), self.role("rejected", k),
                         self.tokens("chosen", k), self.tokens("rejected", k))  # fmt: skip

    def pairs(self) -> list[PairLogps]:
        """Every reference's pair, the main one first (MRPO's ``references``)."""
        return [self.pair(k) for k in range(self.logps.shape[0])]

    def anchor(self, policy_anchor: Tensor, policy_tokens: Tensor) -> AnchorLogps:
        """BAPO's anchor: the policy's and the main reference's log-probs of the anchor y_b."""
        return AnchorLogps(policy=policy_anchor, reference=self.role("anchor"),
                           tokens=policy_tokens)  # fmt: skip

    @property
    def n_references(self) -> int:
        return int(self.logps.shape[0])


def base_responses(
    ref: Reference,
    prompts: Sequence[str],
    settings: ReferenceStageConfig,
    *,
    cache_dir: str,
    seed: int,
) -> dict[str, str]:
    """The main reference's own answers y_b to ``prompts`` (greedy by default), cached.

    Args:
        ref: the main reference (the untrained policy).
        settings: ``cfg.reference`` (decoding, budget, batch size).
        cache_dir: ``paths.cache_dir``; the cache is ``base_responses/<fingerprint>.jsonl``.
        seed: sampling seed (unused when greedy).
    """
    from bapo_exp.modeling.generate import generate_texts

    unique = list(dict.fromkeys(prompts))
    tok = ref.tokenization()
    fp = ref.fingerprint()
    with ref.frozen() as model:
        texts = generate_texts(
            model, ref.tokenizer, [tok.render(p) for p in unique],
            max_new_tokens=settings.max_new_tokens or ref.spec.max_response_tokens,
            batch_size=settings.gen_batch_size, do_sample=settings.do_sample,
            temperature=settings.temperature, top_p=settings.top_p, seed=seed,
            cache_path=Path(cache_dir) / "base_responses" / f"{fp[:16]}.jsonl",
            cache_key_extra={"model": fp, "tokenization": tok.fingerprint()},
            desc=f"base responses ({len(unique)} prompts)",
        )  # fmt: skip
    return dict(zip(unique, texts, strict=True))


def score_examples(
    refs: Sequence[Reference],
    examples: Sequence[PreferenceExample],
    base: dict[str, str] | None,
    settings: ReferenceStageConfig,
    anchor_prompts: Sequence[str] | None = None,
) -> RefTable:
    """Every reference scores the *text* of y_w, y_l and y_b with its own tokenizer (§4.1);
    with ``anchor_prompts`` (one per example) also (x_a, y_b(x_a)), the ``anchor`` role;
    ``base=None``: chosen and rejected only (pairs that need no y_b, e.g. ``personal/hard_*``)."""
    from bapo_exp.modeling.logp_cache import ReferenceCache, cached_logps

    texts = {"chosen": [(e.prompt, e.chosen) for e in examples],
             "rejected": [(e.prompt, e.rejected) for e in examples]}  # fmt: skip
    if base is not None:
        texts["base"] = [(e.prompt, base[e.prompt]) for e in examples]
    if anchor_prompts is not None:
        texts["anchor"] = [(a, base[a]) for a in anchor_prompts]
    logps = torch.zeros(len(refs), len(texts), len(examples))
    ntok = torch.zeros(len(refs), len(texts), len(examples))
    computed, prints = 0, []
    for k, ref in enumerate(refs):
        tok = ref.tokenization()
        cache = ReferenceCache(settings.cache_dir, ref.fingerprint(), tok.fingerprint(),
                               reduce=settings.reduce)  # fmt: skip
        prints.append(cache.dir.name)
        for j, (role, pairs) in enumerate(texts.items()):
            lp, nt, n_new = cached_logps(ref, tok, [p for p, _ in pairs], [r for _, r in pairs],
                                         cache, batch_size=settings.batch_size,
                                         desc=f"reference {k} scores {role}")  # fmt: skip
            logps[k, j], ntok[k, j] = lp, nt
            computed += n_new
    return RefTable(logps, ntok, computed, prints, roles=tuple(texts))


def heterogeneity(examples: Sequence[PreferenceExample], table: RefTable) -> dict[str, dict]:
    """Per preference: NLL distance of y_w from y_b and the reference margin (METHODS §7)."""
    out: dict[str, dict] = {}
    chosen, base = table.role("chosen"), table.role("base")
    n_chosen, n_base = table.tokens("chosen").clamp(min=1), table.tokens("base").clamp(min=1)
    for pref in sorted({e.preference for e in examples}):
        idx = torch.tensor([i for i, e in enumerate(examples) if e.preference == pref])
        nll_w = -(chosen[idx] / n_chosen[idx])
        nll_b = -(base[idx] / n_base[idx])
        out[pref] = {
            "n_pairs": len(idx),
            "nll_distance": float((nll_w - nll_b).mean()),  # per token, nats
            "ref_margin": float((chosen[idx] - table.role("rejected")[idx]).mean()),
        }
    return out


def disagreement(table: RefTable) -> dict[str, float]:
    """How far each extra reference k >= 1 is from the main one on these pairs (issue 25).

    Keys (means over the pairs, each with ``_stderr``): ``mrpo/ref_disagreement_k`` = per pair,
    ``(|l_k(y_w) - l_0(y_w)| + |l_k(y_l) - l_0(y_l)|) / 2`` per main-reference token (nats per
    token); ``mrpo/ref_rel_gap_k`` = the same relative to ``|l_0(y)|`` (CTRO clips y where this
    exceeds its eps_y); and ``mrpo/ref_margin_corr_k``, the correlation over pairs of the two
    references' margins ``l(y_w) - l(y_l)`` (NaN when either is constant).
    ``mrpo/ref_disagreement`` (and its stderr) is reference 1's. Identical references give 0.
    """
    from bapo_exp.evaluation.items import put

    out: dict[str, float] = {}
    l0 = {r: table.role(r).double() for r in ("chosen", "rejected")}
    n0 = {r: table.tokens(r).double().clamp(min=1) for r in l0}
    for k in range(1, table.n_references):
        gap = {r: (table.role(r, k).double() - l0[r]).abs() for r in l0}
        per_token = sum(gap[r] / n0[r] for r in l0) / 2
        put(out, f"mrpo/ref_disagreement_{k}", per_token.tolist())
        relative = sum(gap[r] / l0[r].abs().clamp(min=1e-12) for r in l0) / 2
        put(out, f"mrpo/ref_rel_gap_{k}", relative.tolist())
        margins = torch.stack([table.role("chosen", j) - table.role("rejected", j) for j in (0, k)])
        out[f"mrpo/ref_margin_corr_{k}"] = _corr(margins.double())
    if table.n_references > 1:
        out["mrpo/ref_disagreement"] = out["mrpo/ref_disagreement_1"]
        out["mrpo/ref_disagreement_stderr"] = out["mrpo/ref_disagreement_1_stderr"]
    return out


def _corr(rows: Tensor) -> float:
    """Pearson correlation of the two rows of ``rows`` (2, N); NaN if either is constant."""
    centred = rows - rows.mean(dim=1, keepdim=True)
    norms = centred.norm(dim=1)
    if len(rows[0]) < 2 or bool((norms == 0).any()):
        return float("nan")
    return float((centred[0] @ centred[1]) / (norms[0] * norms[1]))
