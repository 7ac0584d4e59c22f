"""The DATASETS registry and the conf/data presets that select its entries."""

from __future__ import annotations

from dataclasses import fields

import pytest
from omegaconf import OmegaConf

from bapo_exp.config import DATA_SCHEMAS, DataConfig
from bapo_exp.data import DATASETS, build_dataset
from tests.data import REPO, data_cfg

PRESETS = sorted((REPO / "conf" / "data").glob("*.yaml"))


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(
        KeyError,
        match=r"unknown dataset 'dps' \(data.name=dps\) \(did you mean 'dsp'\?\); available: "
        r"\['dsp', 'persona_gen', 'psoups', 'synthetic'\]",
    ):
        build_dataset(data_cfg(name="dps"), data_root=".", cache_dir=".")


@pytest.mark.parametrize("path", PRESETS, ids=lambda p: p.stem)
def test_preset_matches_schema_and_registry(path):
    raw = OmegaConf.to_container(OmegaConf.load(path))
    defaults = raw.pop("defaults")  # the schema first; then the preset's own groups (world)
    assert defaults[0] == f"/schema/data/{path.stem}@_here_"
    for entry in defaults[1:]:
        ((group, option),) = entry.items()
        assert (path.parent / group / f"{option}.yaml").is_file(), entry
    assert raw["name"] == path.stem and DATASETS.get(raw["name"]) is not None
    schema_cls = DATA_SCHEMAS.require(raw["name"])
    assert issubclass(schema_cls, DataConfig)
    known = {f.name for f in fields(schema_cls)}
    assert set(raw) <= known, f"keys not in {schema_cls.__name__}: {set(raw) - known}"
    schema = OmegaConf.structured(schema_cls)
    # interpolations into other groups (synthetic: ${paths.cache_dir}) resolve only when composed
    plain = {k: v for k, v in raw.items() if k in known and not str(v).startswith("${")}
    cfg = OmegaConf.to_object(OmegaConf.merge(schema, plain))
    assert isinstance(cfg, schema_cls)


def test_every_preset_key_is_commented():
    for path in PRESETS:
        lines = path.read_text().splitlines()
        assert lines[0].startswith("#"), f"{path.name}: header comment first"
        for line in lines:
            if line and not line.startswith((" ", "#", "-")) and line != "defaults:":
                assert "#" in line, f"{path.name}: uncommented key: {line}"


def test_persona_gen_defines_the_six_personas():
    raw = OmegaConf.to_container(OmegaConf.load(REPO / "conf" / "data" / "persona_gen.yaml"))
    assert sorted(raw["personas"]) == ["P1A", "P1B", "P2A", "P2B", "P3A", "P3B"]
    assert all(isinstance(t, str) and len(t) > 20 for t in raw["personas"].values())
