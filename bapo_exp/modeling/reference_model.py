"""The one reference abstraction: a frozen model that scores text (METHODS §4, §5; PITFALLS #2).

    main = Reference(cfg.model, cache_dir, model=policy_model, tokenizer=tok)   # reference 0
    extra = Reference(spec, cache_dir)                 # an MRPO reference, loaded on first use
    lp, nt = forward_logps(main, batch)                # a Reference is called like a model

Reference 0 is the policy's initial model: with a fresh LoRA adapter it is the policy itself with
the adapter disabled while scoring (no second copy); with a continued adapter it is that
adapter (``adapter_on``); with full fine-tuning it is the model before training, or a frozen
copy when it must score during training (online references). Every call runs in eval mode
under ``torch.no_grad``; the model's own training modes are restored afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

from bapo_exp.config import ModelSpec
from bapo_exp.modeling.scoring import eval_mode


@dataclass
class Reference:
    """A frozen scoring model: its spec, and the model once loaded (or given).

    Attributes:
        spec: how to load it and render its prompts (source, tokenizer, template, lengths).
        cache_dir: where built and converted models are kept.
        model: the model (the policy itself for reference 0); loaded on first use if None.
        tokenizer: its tokenizer.
        adapter_on: score with the LoRA adapter active: only when a continued, trained adapter
            is the reference. Otherwise a PEFT model's adapter is disabled while scoring.
    """

    spec: ModelSpec
    cache_dir: str
    model: Any | None = None
    tokenizer: Any | None = None
    adapter_on: bool = False
    _fingerprint: str | None = field(default=None, repr=False)

    def load(self) -> Reference:
        if self.model is None:
            from bapo_exp.modeling.load import load_model

            self.model, self.tokenizer = load_model(self.spec, self.cache_dir)
        return self

    @property
    def module(self) -> Any:
        """The wrapped model (what ``unpad`` and device lookups inspect)."""
        return self.load().model

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    def tokenization(self):
        from bapo_exp.modeling.tokenize import Tokenization

        self.load()
        return Tokenization.from_config(self.tokenizer, self.spec)

    def fingerprint(self) -> str:
        """Weights identity; a policy with a fresh, disabled adapter equals its base model."""
        from bapo_exp.modeling.logp_cache import model_fingerprint

        if self._fingerprint is None:
            self._fingerprint = model_fingerprint(
                self.module, self.spec.pretrained, include_adapter=self.adapter_on
            )
        return self._fingerprint

    @contextmanager
    def frozen(self) -> Iterator[Any]:
        """Eval mode, no gradients, the adapter disabled unless it is the reference; yields the
        model. Training modes are restored on exit."""
        model = self.module
        adapter_off = (
            model.disable_adapter()
            if hasattr(model, "disable_adapter") and not self.adapter_on
            else nullcontext()
        )
        with eval_mode(model), torch.no_grad(), adapter_off:
            yield model

    def __call__(self, **inputs: Any) -> Any:
        with self.frozen() as model:
            return model(**inputs)
