"""Load models and tokenizers.

    model, tok = load_model(cfg.model, cfg.paths.cache_dir, trainable=True)

Sources (``cfg.source``): the ``MODEL_SOURCES`` registry of ``modeling.sources`` (``tiny``,
``hf``, ``gguf``); plug-ins add more (``micro``: the synthetic world's pretrained base).
The trainable policy and its main reference are ``modeling.policy``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bapo_exp.config import ModelConfig, ModelSpec
from bapo_exp.folders import rebuild_after_failed_load
from bapo_exp.modeling.sources import resolve_model_path
from bapo_exp.modeling.unpad import UNPADDED
from bapo_exp.modeling.unpad import register as register_unpadded

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


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
