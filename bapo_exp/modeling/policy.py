"""The trainable policy and its main reference.

    model, tok = load_model(cfg.model, cfg.paths.cache_dir, trainable=True)   # modeling.load
    policy = make_policy(model, cfg.model, cfg.train.init_adapter)
    ref = policy.reference(cfg.model, cache_dir, tok)       # online reference (no copy with LoRA)

The main reference (METHODS §4, PITFALLS #2), a ``modeling.reference_model.Reference``:
- fresh LoRA adapter: the policy with its adapter disabled (``disable_adapter()``), never a copy;
- full fine-tuning, or continuing a trained adapter (``init_adapter``): the policy as it was at
  initialisation, frozen. Online, that needs a frozen copy (``keep_frozen_reference=True``, two
  models in memory); with precomputed references (the default) the reference tables are filled
  before training from the untouched policy and no copy exists during training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from bapo_exp.config import LoraConfig, ModelConfig, ModelSpec
from bapo_exp.modeling.reference_model import Reference

# LoRA targets used when ``cfg.lora.target_modules`` is empty: attention projections, as in
# our config default. Other families fall back to PEFT's own per-architecture mapping.
LORA_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


def lora_target_modules(model: Any, lora: LoraConfig) -> list[str] | None:
    """``lora.target_modules`` if set, else the family default (``None``: PEFT's mapping)."""
    if lora.target_modules:
        return list(lora.target_modules)
    return LORA_TARGET_MODULES.get(getattr(model.config, "model_type", ""))


def _frozen_copy(module: Any) -> Any:
    frozen = copy.deepcopy(module)
    frozen.requires_grad_(False)
    return frozen.eval()


@dataclass
class Policy:
    """The trainable model and how its main reference is obtained.

    Attributes:
        model: what the optimizer trains and the checkpoint saves (a ``PeftModel`` with LoRA).
        finetune: ``lora`` or ``full``.
        init_adapter: the trained adapter this run continues, if any (PITFALLS #2).
        frozen_reference: the frozen initial model, kept only on request (online reference
            with full fine-tuning or a continued adapter).
    """

    model: Any
    finetune: str
    init_adapter: str | None = None
    frozen_reference: Any | None = None

    @property
    def reference_is_disabled_adapter(self) -> bool:
        """True for a fresh LoRA adapter: the reference is the policy with the adapter off."""
        return self.finetune == "lora" and self.init_adapter is None

    def reference(self, spec: ModelSpec, cache_dir: str, tokenizer: Any) -> Reference:
        """The main reference while training: the adapter-disabled policy or the frozen copy.

        Raises:
            RuntimeError: full fine-tuning / continued adapter without a kept frozen copy.
        """
        if self.reference_is_disabled_adapter:
            return Reference(spec, cache_dir, self.model, tokenizer)
        if self.frozen_reference is not None:
            return Reference(spec, cache_dir, self.frozen_reference, tokenizer, adapter_on=True)
        raise RuntimeError(
            f"the reference of a {self.finetune} run"
            + (f" continuing adapter {self.init_adapter!r}" if self.init_adapter else "")
            + " is the frozen initial model: use precomputed references (reference.precompute="
            "true) or make_policy(..., keep_frozen_reference=True)"
        )


def make_policy(
    model: Any,
    cfg: ModelConfig,
    init_adapter: str | None = None,
    *,
    keep_frozen_reference: bool = False,
) -> Policy:
    """Wrap ``model`` for training: a LoRA adapter (fresh or ``init_adapter``) or full weights.

    Args:
        model: from ``load_model``; modified in place by PEFT.
        cfg: ``ModelConfig`` (``finetune``, ``lora``).
        init_adapter: folder of a trained adapter to continue (then it is the reference).
        keep_frozen_reference: keep a frozen copy of the initial model for an online reference
            when the reference cannot be the adapter-disabled policy (ignored otherwise).
    """
    if cfg.finetune == "full":
        if init_adapter:
            raise ValueError("init_adapter needs finetune=lora; for full fine-tuning set "
                             "model.pretrained to the checkpoint instead")  # fmt: skip
        frozen = _frozen_copy(model) if keep_frozen_reference else None
        model.requires_grad_(True)
        return Policy(model.train(), "full", None, frozen)
    if cfg.finetune != "lora":
        raise ValueError(f"unknown finetune {cfg.finetune!r}; valid: lora, full")
    import peft  # lazy: ~7 s

    if init_adapter:
        wrapped = peft.PeftModel.from_pretrained(model, init_adapter, is_trainable=True)
        frozen = _frozen_copy(wrapped) if keep_frozen_reference else None
        return Policy(wrapped.train(), "lora", init_adapter, frozen)
    lora_cfg = peft.LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=lora_target_modules(model, cfg.lora),
        task_type="CAUSAL_LM",
    )
    return Policy(peft.get_peft_model(model, lora_cfg).train(), "lora")
