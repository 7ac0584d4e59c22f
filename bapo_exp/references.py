"""Base responses and reference log-probs, computed once and shared (METHODS §3, §5).

Used by the ``reference`` stage (which fills the caches) and by ``train``/``eval`` (which read
them: with warm caches no reference forward pass is run and no extra model is loaded).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from bapo_exp.config import Config, ModelConfig, ReferenceModelConfig
from bapo_exp.data.types import PreferenceExample

log = logging.getLogger(__name__)


@dataclass
class Reference:
    """One reference model, loaded on first use (reference 0 may be the policy itself)."""

    cfg: ModelConfig | ReferenceModelConfig
    cache_dir: str
    model: torch.nn.Module | None = None
    tokenizer: object | None = None
    include_adapter: bool = False  # True only when a continued, trained adapter is the reference
    _fingerprint: str | None = field(default=None, repr=False)

    def load(self) -> None:
        if self.model is None:
            from bapo_exp.modeling.load import load_model

            self.model, self.tokenizer = load_model(self.cfg, self.cache_dir)
            self.model.eval()

    def tokenization(self):
        from bapo_exp.modeling.tokenize import Tokenization

        self.load()
        return Tokenization.from_config(self.tokenizer, self.cfg)

    def fingerprint(self) -> str:
        """Weights identity; a policy with a fresh, disabled adapter equals its base model."""
        from bapo_exp.modeling.ref_cache import model_fingerprint

        if self._fingerprint is None:
            self.load()
            self._fingerprint = model_fingerprint(
                self.model, self.cfg.pretrained, include_adapter=self.include_adapter
            )
        return self._fingerprint

    def scoring_context(self):
        """Score with the adapter disabled unless the adapter itself is the reference."""
        from contextlib import nullcontext

        if hasattr(self.model, "disable_adapter") and not self.include_adapter:
            return self.model.disable_adapter()
        return nullcontext()


def references_of(cfg: Config, main: Reference | None = None) -> list[Reference]:
    """Reference 0 (the policy's initial model) then ``method.references`` (MRPO)."""
    main = main or Reference(cfg.model, cfg.paths.cache_dir)
    extra = [Reference(r, cfg.paths.cache_dir) for r in getattr(cfg.method, "references", [])]
    return [main, *extra]


def base_responses(cfg: Config, ref: Reference, prompts: Sequence[str]) -> dict[str, str]:
    """Greedy (or sampled) answers of reference 0 to ``prompts``, cached and resumable."""
    from bapo_exp.modeling.generate import generate_texts

    unique = list(dict.fromkeys(prompts))
    tok = ref.tokenization()
    rendered = [tok.render(p) for p in unique]
    r = cfg.reference
    max_new = r.max_new_tokens or ref.cfg.max_response_tokens
    fp = ref.fingerprint()
    with ref.scoring_context():
        texts = generate_texts(
            ref.model, ref.tokenizer, rendered, max_new_tokens=max_new,
            batch_size=r.gen_batch_size, do_sample=r.do_sample, temperature=r.temperature,
            top_p=r.top_p, seed=cfg.seed,
            cache_path=Path(cfg.paths.cache_dir) / "base_responses" / f"{fp[:16]}.jsonl",
            cache_key_extra={"model": fp, "tokenization": tok.fingerprint()},
            desc="base responses",
        )  # fmt: skip
    return dict(zip(unique, texts, strict=True))


@dataclass
class RefTable:
    """Reference log-probs of (chosen, rejected, base) for K references: logps, ntok (K, 3, N)."""

    logps: Tensor
    ntok: Tensor
    n_computed: int = 0
    fingerprints: list[str] = field(default_factory=list)


def score_examples(
    cfg: Config, refs: list[Reference], examples: Sequence[PreferenceExample], base: dict[str, str]
) -> RefTable:
    """Every reference scores the *text* of y_w, y_l and y_b with its own tokenizer (§4.1)."""
    from bapo_exp.modeling.ref_cache import ReferenceCache, cached_logps

    prompts = [e.prompt for e in examples]
    responses = [[e.chosen for e in examples], [e.rejected for e in examples],
                 [base[e.prompt] for e in examples]]  # fmt: skip
    logps = torch.zeros(len(refs), 3, len(examples))
    ntok = torch.zeros(len(refs), 3, len(examples))
    computed, prints = 0, []
    for k, ref in enumerate(refs):
        tok = ref.tokenization()
        cache = ReferenceCache(cfg.reference.cache_dir, ref.fingerprint(), tok.fingerprint(),
                               reduce=cfg.reference.reduce)  # fmt: skip
        prints.append(cache.dir.name)
        for j, resp in enumerate(responses):
            with ref.scoring_context():
                lp, nt, n_new = cached_logps(ref.model, tok, prompts, resp, cache,
                                             batch_size=cfg.reference.batch_size,
                                             desc=f"reference {k}")  # fmt: skip
            logps[k, j], ntok[k, j] = lp, nt
            computed += n_new
    return RefTable(logps, ntok, computed, prints)


def heterogeneity(examples: Sequence[PreferenceExample], table: RefTable) -> dict[str, dict]:
    """Per preference: NLL distance of y_w from y_b and the reference margin (METHODS §7)."""
    out: dict[str, dict] = {}
    lp, nt = table.logps[0], table.ntok[0].clamp(min=1)
    for pref in sorted({e.preference for e in examples}):
        idx = torch.tensor([i for i, e in enumerate(examples) if e.preference == pref])
        nll_w = -(lp[0, idx] / nt[0, idx])
        nll_b = -(lp[2, idx] / nt[2, idx])
        out[pref] = {
            "n_pairs": len(idx),
            "nll_distance": float((nll_w - nll_b).mean()),  # per token, nats
            "ref_margin": float((lp[0, idx] - lp[1, idx]).mean()),  # l_0(y_w) - l_0(y_l)
        }
    return out
