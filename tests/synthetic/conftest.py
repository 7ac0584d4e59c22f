"""Fixtures for the synthetic-world tests: a small world written once per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from bapo_exp.synthetic import WorldConfig, generate_world, write_world  # noqa: E402


def small_config(**overrides) -> WorldConfig:
    base = dict(
        n_entities=12,
        n_attributes=3,
        n_unknown_train=4,
        n_unknown_test=4,
        n_harmful_train=8,
        n_harmful_test=6,
        n_helpful_test=8,
        qa_repeats=2,
        mc_repeats=1,
        statement_repeats=1,
    )
    return WorldConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def make_config():
    """Factory of small world configs (keyword overrides)."""
    return small_config


@pytest.fixture(scope="session")
def world_cfg() -> WorldConfig:
    return small_config()


@pytest.fixture(scope="session")
def world(world_cfg):
    return generate_world(world_cfg)


@pytest.fixture(scope="session")
def world_root(world_cfg, tmp_path_factory):
    return write_world(world_cfg, tmp_path_factory.mktemp("synthetic") / "world")
