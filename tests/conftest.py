"""Shared fixtures: repository paths, real-data location, Hydra composition, the tiny model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
# Environment of entrypoint subprocesses: offline, no tracker.
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                  "WANDB_MODE": "disabled"}  # fmt: skip


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (clone with ../shared beside the repo)")
    return path


def compose_cfg(overrides: list[str]):
    """Compose conf/config.yaml as the entrypoint would (no run directory)."""
    from hydra import compose, initialize_config_dir

    from bapo_exp.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=False)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny random Llama + trained BPE tokenizer folder, built once per session."""
    from bapo_exp.config import TinyConfig
    from bapo_exp.modeling.tiny import ensure_tiny

    return ensure_tiny(TinyConfig(), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache directory shared by the entrypoint tests of one session."""
    return tmp_path_factory.mktemp("cache")
