"""Shared fixtures for the modeling tests: tiny models built once per session (no hub)."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest  # noqa: E402

from bapo_exp.config import ModelConfig, TinyConfig  # noqa: E402
from bapo_exp.modeling.tiny import ensure_tiny  # noqa: E402

OTHER_TINY = {"vocab_size": 384, "seed": 1}  # another BPE (fewer merges) and other weights

PROMPTS = [
    "Name three methods to reduce greenhouse gas emissions.",
    "What is the capital of France?",
    "Explain how plants turn sunlight into energy.",
    "Write a short poem about the river.",
    "Give one business tip.",
]
RESPONSES = [
    "1. Renewable energy.\n2. Energy efficiency.\n3. Reforestation.",
    "The answer is Paris.",
    "Plants use photosynthesis: light, water and CO2 become sugar and oxygen.",
    "Like a poem, the river of words flows softly through the night!",
    "From a business point of view, the return on investment matters most.",
]


def tiny_cfg(**tiny: int) -> ModelConfig:
    """A ``ModelConfig`` for a tiny random Llama (``source: tiny``)."""
    return ModelConfig(name="tiny", source="tiny", pretrained="tiny", tiny=TinyConfig(**tiny))


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_torch_thread):  # every modeling test (tests/conftest.py)
    yield


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory):
    """``cache_dir`` for ``load_model``; tiny folders are built once under ``models/``."""
    root = tmp_path_factory.mktemp("cache")
    ensure_tiny(TinyConfig(), root / "models")
    ensure_tiny(TinyConfig(**OTHER_TINY), root / "models")
    return root


@pytest.fixture
def tiny(model_cache):
    """A fresh ``(model, tokenizer)`` of the default tiny config (safe to modify)."""
    from bapo_exp.modeling.load import load_model

    return load_model(tiny_cfg(), model_cache)


@pytest.fixture
def other_tiny(model_cache):
    """A tiny model with a different tokenizer (vocab 384) and weights."""
    from bapo_exp.modeling.load import load_model

    return load_model(tiny_cfg(**OTHER_TINY), model_cache)


@pytest.fixture
def pairs() -> tuple[list[str], list[str]]:
    return list(PROMPTS), list(RESPONSES)
