"""Every option of every config group, and every experiment preset, composes and validates."""

from __future__ import annotations

import dataclasses

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from bapo_exp.config import Config, ConfigError
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


def test_the_micro_settings_are_the_plugins_not_the_core_model_schema() -> None:
    """``micro`` (issue 23) belongs to the micro source's schema: a tiny model has no such key,
    ``model=micro`` takes it, and an MRPO reference has the keys of its own source's schema."""
    from bapo_exp.config import ModelSpec
    from bapo_exp.synthetic.model_schema import MicroModelConfig, MicroSpec

    assert "micro" not in {f.name for f in dataclasses.fields(ModelSpec)}
    with pytest.raises(ConfigCompositionException) as err:
        compose_cfg(["method=dpo", "model=tiny", "model.micro.steps=5"])
    assert "Key 'micro' not in 'ModelConfig'" in str(err.value.__cause__ or err.value)
    micro = to_config(["method=dpo", "model=micro", "model.micro.steps=5"]).model
    assert isinstance(micro, MicroModelConfig) and micro.micro.steps == 5
    cfg = to_config(["experiment=study", "method=mrpo_micro"])
    [ref] = cfg.method.reference_models()
    assert isinstance(ref, MicroSpec) and (ref.micro.steps, ref.micro.kernels) == (400, "portable")
    assert ref.micro.world == cfg.data.world  # the interpolation ${data.world}, resolved
    assert ref.dtype == "float32" and ref.tiny.seed == 1  # defaults filled, values kept


@pytest.mark.parametrize(
    ("reference", "named"),
    [
        ("{name: a, source: hf, pretrained: x, micro: {steps: 5}}", r"\[0\]\.micro: Key 'micro'"),
        ("{name: a, source: micro, pretrained: x, micro: {stepz: 5}}", r"\[0\]\.micro\.stepz"),
        ("{name: a, source: tiny, pretrained: x, tiny: {seed: abc}}", r"\[0\]\.tiny\.seed: Value"),
        ("{name: a, source: tiny}", r"\[0\]\.pretrained: .*missing"),
    ],
)
def test_a_bad_reference_is_named_before_loading(reference: str, named: str) -> None:
    cfg = to_config(["method=mrpo", "debug=tiny", f"method.references=[{reference}]"])
    with pytest.raises(ConfigError, match=r"method\.references" + named):
        check_settings(cfg)


def test_a_model_source_registers_its_own_reference_schema(monkeypatch) -> None:
    """A plug-in's model source brings its schemas: its keys are checked and known to the
    command line; the references of other sources stay the core spec."""
    from bapo_exp.config import MODEL_SCHEMAS, SPEC_SCHEMAS, ModelConfig, ModelSpec, model_spec
    from bapo_exp.run.usage import schema_keys

    @dataclasses.dataclass
    class ScaledSpec(ModelSpec):
        scale: float = 1.0

    @dataclasses.dataclass
    class ScaledConfig(ModelConfig, ScaledSpec):
        pass

    monkeypatch.setitem(MODEL_SCHEMAS._items, "scaled", ScaledConfig)
    monkeypatch.setitem(SPEC_SCHEMAS._items, "scaled", ScaledSpec)
    spec = model_spec({"name": "s", "source": "scaled", "pretrained": "x", "scale": 2}, "ref")
    assert isinstance(spec, ScaledSpec) and spec.scale == 2.0 and spec.dtype == "float32"
    assert {"model.scale", "method.references.scale"} <= set(schema_keys())
    with pytest.raises(ConfigError, match=r"ref\.scale: Key 'scale' not in 'ModelSpec'"):
        model_spec({"name": "s", "source": "hf", "pretrained": "x", "scale": 2}, "ref")
