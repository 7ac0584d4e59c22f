"""Tests of bapo_exp.data and bapo_exp.modeling.generate; shared helpers below."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from bapo_exp.config import DATA_SCHEMAS, DataConfig

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()


def shared_data(*parts: str) -> Path:
    """A path under <repo>/../shared/data, or skip the test saying why."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (it sits beside the repo as ../shared/data)")
    return path


def data_cfg(**values) -> DataConfig:
    """The schema of ``values["name"]`` (``DataConfig`` for a name no source has); values for
    fields the schema does not have yet are set as attributes (the code reads them with getattr
    defaults, bapo_exp.data.io.setting)."""
    schema = DATA_SCHEMAS.get(values.get("name", ""), DataConfig)
    known = {f.name for f in fields(schema)}
    cfg = schema(**{k: v for k, v in values.items() if k in known})
    for key, value in values.items():
        if key not in known:
            setattr(cfg, key, value)
    return cfg
