"""Where a model's weights come from (``model.source``), without importing torch.

    MODEL_SOURCES.register("micro", resolve)   # a plug-in's source (``synthetic.plugin``)
    resolve_model_path(cfg.model, cache_dir)   # the folder or hub id to ``from_pretrained``

``tiny`` (built in code by ``ensure_tiny``), ``hf`` (hub id or local folder in
``cfg.pretrained``; hub files come from the Hugging Face cache, so set ``HF_HUB_OFFLINE=1`` on
nodes without internet), ``gguf`` (``"package:file.gguf"`` or a ``.gguf`` path, converted once
to a local folder by ``modeling.gguf``). Kept apart from ``modeling.load`` so that plug-ins and
config validation register and check sources at start-up without loading torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bapo_exp.config import ModelSpec
from bapo_exp.registry import Registry


def _tiny(cfg: ModelSpec, cache_dir: Path) -> str:
    from bapo_exp.modeling.tiny import ensure_tiny

    return str(ensure_tiny(cfg.tiny, cache_dir / "models"))


def _gguf(cfg: ModelSpec, cache_dir: Path) -> str:
    from bapo_exp.modeling.gguf import ensure_gguf_folder

    return str(ensure_gguf_folder(cfg.pretrained, cache_dir / "models"))


# source -> resolve(cfg, cache_dir) -> the folder or hub id to ``from_pretrained`` from
MODEL_SOURCES: Registry[Callable[[ModelSpec, Path], str]] = Registry(
    "model source", config_key="model.source"
)
MODEL_SOURCES.register("hf", lambda cfg, cache_dir: cfg.pretrained)
MODEL_SOURCES.register("tiny", _tiny)
MODEL_SOURCES.register("gguf", _gguf)


def resolve_model_path(cfg: ModelSpec, cache_dir: str | Path) -> str:
    """Folder or hub id to ``from_pretrained`` from (building or converting it once)."""
    return MODEL_SOURCES.require(cfg.source)(cfg, Path(cache_dir))
