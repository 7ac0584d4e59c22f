"""Load models and tokenizers, and build the trainable policy and its main reference.

    model, tok = load_model(cfg.model, cfg.paths.cache_dir, trainable=True)
    policy = make_policy(model, cfg.model, cfg.train.init_adapter)
    ref = policy.reference(cfg.model, cache_dir, tok)       # online reference (no copy with LoRA)

Sources (``cfg.source``): the ``MODEL_SOURCES`` registry of ``modeling.sources`` (``tiny``,
``hf``, ``gguf``); plug-ins add more (``micro``: the synthetic world's pretrained base).

The main reference (METHODS §4, PITFALLS #2), a ``modeling.reference.Reference``:
- fresh LoRA adapter: the policy with its adapter disabled (``disable_adapter()``), never a copy;
- full fine-tuning, or continuing a trained adapter (``init_adapter``): the policy as it was at
  initialisation, frozen. Online, that needs a frozen copy (``keep_frozen_reference=True``, two
  models in memory); with precomputed references (the default) the reference tables are filled
  before training from the untouched policy and no copy exists during training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bapo_exp.config import LoraConfig, ModelConfig, ModelSpec
from bapo_exp.modeling.reference import Reference
from bapo_exp.modeling.sources import resolve_model_path
from bapo_exp.modeling.unpad import UNPADDED
from bapo_exp.modeling.unpad import register as register_unpadded
from bapo_exp.readback import rebuild_after_failed_load

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# LoRA targets used when ``cfg.lora.target_modules`` is empty: attention projections, as in
# our config default. Other families fall back to PEFT's own per-architecture mapping.
LORA_TARGET_MODULES: dict[str, list[str]] = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
}


def ensure_pad_token(tokenizer: Any) -> Any:
    """Give a tokenizer without a pad token its EOS as pad token (in place).

    Safe because padding is never scored: ``collate`` marks it with ``attention_mask = 0`` and
    ``loss_mask = 0``, while the EOS appended to each response is a real, masked-in token. The
    padding side is not set here: ``collate`` and ``generate_texts`` choose it explicitly.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has neither pad nor EOS")
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(cfg: ModelSpec, cache_dir: str | Path, *, path: str | None = None) -> Any:
    """The tokenizer of ``cfg`` (``cfg.tokenizer`` if set, else the model's own)."""
    from transformers import AutoTokenizer

    source = cfg.tokenizer or path or resolve_model_path(cfg, cache_dir)
    return ensure_pad_token(AutoTokenizer.from_pretrained(source))


def load_model(
    cfg: ModelSpec, cache_dir: str | Path, *, trainable: bool = False
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer as ``cfg`` says.

    Args:
        cfg: a ``ModelSpec`` (a ``ModelConfig`` for the policy).
        cache_dir: where tiny and GGUF-converted folders are kept (``<cache_dir>/models``).
        trainable: ``False`` (references): eval mode, no gradients. ``True``: train mode, and
            gradient checkpointing (non-reentrant, ``use_cache`` off) if the config asks; the
            parameters' ``requires_grad`` is then set by ``make_policy``.

    Returns:
        ``(model, tokenizer)``; the tokenizer always has a pad token (``ensure_pad_token``).
    """
    path = resolve_model_path(cfg, cache_dir)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"unknown dtype {cfg.dtype!r}; valid: {sorted(DTYPES)}")
    try:
        model, tokenizer = _from_folder(cfg, cache_dir, path)
    except Exception:  # a damaged cache folder is built again; a damaged run folder is named
        if not rebuild_after_failed_load(Path(path), what="model folder", fix=REBUILD_HINT):
            raise
        model, tokenizer = _from_folder(cfg, cache_dir, resolve_model_path(cfg, cache_dir))
    model.requires_grad_(False)
    if not trainable:
        return model.eval(), tokenizer
    if isinstance(cfg, ModelConfig) and cfg.gradient_checkpointing:
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        model.config.use_cache = False
    return model.train(), tokenizer


REBUILD_HINT = ("this folder is not a cache the project can rebuild: restore it from a copy, or "
                "write it again (a run's trained model: `python -m bapo_exp stages=[train,eval] "
                "force=true hydra.run.dir=<its run directory>`)")  # fmt: skip


def _from_folder(cfg: ModelSpec, cache_dir: str | Path, path: str) -> tuple[Any, Any]:
    """The tokenizer and model ``from_pretrained(path)`` (tokenizer: ``cfg.tokenizer`` if set)."""
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(cfg, cache_dir, path=path)
    if cfg.attn_implementation == UNPADDED:
        register_unpadded()
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=DTYPES[cfg.dtype], attn_implementation=cfg.attn_implementation
    )
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


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
