"""Seeded synthetic personalisation world and its micro base model (laptop-CPU demo).

from bapo_exp.synthetic import WorldConfig, ensure_world, ensure_micro_base
"""

from bapo_exp.synthetic.builder import build_synthetic
from bapo_exp.synthetic.export import ensure_world, load_world_json, write_world
from bapo_exp.synthetic.pretrain import MicroTrainConfig, ensure_micro_base, micro_model_config
from bapo_exp.synthetic.styles import (
    NEUTRAL,
    PREFERENCE_STYLES,
    STYLE_TEMPLATES,
    detect_style,
    fact_correct,
    in_style,
    render,
)
from bapo_exp.synthetic.world import Fact, World, WorldConfig, generate_world, world_key

__all__ = [
    "NEUTRAL",
    "PREFERENCE_STYLES",
    "STYLE_TEMPLATES",
    "Fact",
    "MicroTrainConfig",
    "World",
    "WorldConfig",
    "build_synthetic",
    "detect_style",
    "ensure_micro_base",
    "ensure_world",
    "fact_correct",
    "generate_world",
    "in_style",
    "load_world_json",
    "micro_model_config",
    "render",
    "world_key",
    "write_world",
]
