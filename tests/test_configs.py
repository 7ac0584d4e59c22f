"""Every option of every config group, and every experiment preset, composes and validates."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from bapo_exp.config import Config
from bapo_exp.run.validate import check_settings
from tests.conftest import CONF, compose_cfg

GROUPS = ["model", "data", "method", "train", "eval", "logger", "paths", "debug"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def to_config(overrides: list[str]) -> Config:
    dcfg = compose_cfg(overrides)
    cfg = OmegaConf.to_object(dcfg)
    assert isinstance(cfg, Config)
    return cfg


CASES = [(g, o) for g in GROUPS for o in options(g)]
# Options that only make sense together with others (documented in each file's header).
COMPANIONS = {
    ("method", "mrpo_micro"): ["model=micro", "data=synthetic"],
}


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_every_group_option_composes(group: str, option: str) -> None:
    base = [] if group == "method" else ["method=dpo"]
    cfg = to_config([*base, *COMPANIONS.get((group, option), []), f"{group}={option}"])
    if group in ("model", "data", "logger"):
        assert getattr(cfg, group).name == option  # registry key == file stem == `name:`
    if group == "method":  # a variant file (mrpo_micro) keeps its method's name as prefix
        assert option == cfg.method.name or option.startswith(f"{cfg.method.name}_")
    if not (group == "method" and option == "mrpo"):
        check_settings(cfg)  # settings only: some presets name data this machine lacks


@pytest.mark.parametrize("preset", options("experiment"))
def test_every_experiment_composes(preset: str) -> None:
    cfg = to_config([f"experiment={preset}"])
    assert cfg.name == preset  # experiment values win over config.yaml (STYLE §12)
    check_settings(cfg)


def test_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["method=nope"])
    for name in ("bapo", "dpo", "mrpo"):
        assert name in str(err.value.__cause__ or err.value)


def test_wrong_type_fails_at_composition() -> None:
    with pytest.raises((ValidationError, ConfigCompositionException)):
        compose_cfg(["method=dpo", "train.lr=abc"])


def test_unknown_key_fails_at_composition() -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["method=dpo", "train.lrr=0.1"])
    with pytest.raises(ConfigCompositionException):
        compose_cfg(["method=dpo", "nonsense=1"])


def test_bad_choice_fails_at_composition_naming_the_valid_ones() -> None:
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["method=dpo", "train.schedule=cosinus"])
    text = str(err.value.__cause__ or err.value)
    assert "cosinus" in text and "cosine" in text and "linear" in text


def test_mrpo_without_references_is_refused_before_loading() -> None:
    cfg = to_config(["method=mrpo"])
    with pytest.raises(ValueError, match="K >= 2"):
        check_settings(cfg)


def test_debug_preset_is_tiny_and_quiet() -> None:
    cfg = to_config(["method=dpo", "debug=tiny"])
    assert (cfg.model.name, cfg.logger.name) == ("tiny", "none")
    assert cfg.train.steps <= 10 and cfg.eval.limit <= 8
