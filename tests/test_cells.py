"""A cell is the resolved config that changes results (issue 15.2): extending a grid by a seed
runs only the new cells, and the analysis refuses two runs of one config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bapo_exp.run.identity import run_identity
from tests.conftest import REPO, SUBPROCESS_ENV, compose_cfg

FAST = ["debug=tiny", "stages=[reference,train]", "train.steps=2", "eval=none", "name=grid"]


def test_identity_ignores_defaults_and_run_independent_keys() -> None:
    base = run_identity(compose_cfg(["method=dpo"]))
    same = ["seed=0", "train.steps=200", "eval.limit=3", "stages=[eval]", "logger=none",
            "paths.cache_dir=/elsewhere", "reference.cache_dir=/x", "name=other"]  # fmt: skip
    assert run_identity(compose_cfg(["method=dpo", *same])) == base
    for other in (["seed=1"], ["train.lr=1e-4"], ["method.beta=0.2"], ["model=tiny"]):
        assert run_identity(compose_cfg(["method=dpo", *other])) != base, other


# Identities computed at 4ff31f6, before each data source had its own schema (issue 23): the
# split must not move a finished cell (a relaunch would recompute it in a new folder).
IDENTITIES_AT_4FF31F6 = {
    ("method=dpo",): "05077585ff23b2b2",
    ("method=dpo", "data=psoups"): "7920bf2fb17ced2a",
    ("method=bapo", "data=persona_gen", "data.writer=smollm2_135m"): "5ff619a315256a91",
    ("experiment=study", "method=dpo", "model.micro.seed=3"): "0846fae88e19da19",
    ("method=dpo", "data=dsp", "data.include_normal=true", "model=micro"): "b8594035e43069e1",
}


@pytest.mark.parametrize("overrides", list(IDENTITIES_AT_4FF31F6), ids=" ".join)
def test_per_source_data_schemas_keep_every_identity(overrides: tuple[str, ...]) -> None:
    assert run_identity(compose_cfg(list(overrides))) == IDENTITIES_AT_4FF31F6[overrides]


# Identities computed at 27355fe, while every model spec (the policy and each MRPO reference)
# carried the micro source's settings (issue 23): moving them to the plug-in must not move a cell.
MRPO_IDENTITIES_AT_27355FE = {
    ("method=mrpo", "debug=tiny",
     "method.references=[{name: qwen05, source: hf, pretrained: Qwen/Qwen2.5-0.5B-Instruct}]"):
        "557c0cb61cfe568c",
    ("method=mrpo", "debug=tiny",
     "method.references=[{name: t1, source: tiny, pretrained: tiny, tiny: {seed: 5}}]"):
        "3c674169e4944a2e",
    ("method=mrpo", "model=micro", "data=synthetic",
     "method.references=[{name: t1, source: tiny, pretrained: tiny}]"): "cc79a31557bb916e",
    ("experiment=study", "method=mrpo_micro"): "53e7ce6c7a405805",
    ("experiment=study_mrpo", "data.n_train=8", "model.micro.seed=2"): "2e40e47667e14314",
}  # fmt: skip


@pytest.mark.parametrize("overrides", list(MRPO_IDENTITIES_AT_27355FE), ids=" ".join)
def test_per_source_model_schemas_keep_every_identity(overrides: tuple[str, ...]) -> None:
    assert run_identity(compose_cfg(list(overrides))) == MRPO_IDENTITIES_AT_27355FE[overrides]


def test_a_config_saved_before_per_source_schemas_loads_and_keeps_its_identity() -> None:
    """A saved config holds every old data field; at the old defaults it loads (a relaunch) and
    names the same run; another value of a field its source lacks is an error naming it."""
    from omegaconf import OmegaConf

    from bapo_exp.config import LEGACY_DATA_FIELDS, typed_config

    cfg = compose_cfg(["method=dpo", "data=psoups"])
    plain = OmegaConf.to_container(cfg, resolve=False)
    old = {**plain, "data": {**LEGACY_DATA_FIELDS, **plain["data"]}}
    assert set(old["data"]) > set(plain["data"])  # psoups lacks writer, world, train_path, ...
    assert run_identity(old) == run_identity(cfg)
    assert OmegaConf.to_object(typed_config(old).data) == OmegaConf.to_object(cfg.data)
    old["data"]["writer"] = "smollm2_135m"  # meaningless for psoups: not silently dropped
    with pytest.raises(Exception, match="writer"):
        typed_config(old)


def test_a_config_saved_with_micro_on_every_model_spec_loads_and_keeps_its_identity() -> None:
    """Before per-source model schemas every model spec held ``micro`` (issue 23): a saved config
    of a tiny policy with a tiny reference holds it at the old defaults; it loads (a relaunch)
    and names the same run. Another value on a source without ``micro`` is an error naming it."""
    from omegaconf import OmegaConf

    from bapo_exp.config import LEGACY_MODEL_FIELDS, ConfigError, ModelSpec, typed_config

    ref = "method.references=[{name: t1, source: tiny, pretrained: tiny, tiny: {seed: 5}}]"
    cfg = compose_cfg(["method=mrpo", "debug=tiny", ref])
    plain = OmegaConf.to_container(cfg, resolve=False)
    [bare] = plain["method"]["references"]
    assert "micro" not in plain["model"] and "micro" not in bare
    typed_list = OmegaConf.merge(OmegaConf.structured(ModelSpec), bare)  # what the list held
    old_ref = {**OmegaConf.to_container(typed_list, enum_to_str=True), **LEGACY_MODEL_FIELDS}
    old = {**plain, "model": {**plain["model"], **LEGACY_MODEL_FIELDS},
           "method": {**plain["method"], "references": [old_ref]}}  # fmt: skip
    assert run_identity(old) == run_identity(cfg) == "3c674169e4944a2e"  # as pinned above
    typed = OmegaConf.to_object(typed_config(old))
    assert typed.model == OmegaConf.to_object(cfg).model
    assert typed.method.reference_models() == OmegaConf.to_object(cfg).method.reference_models()
    other = {**LEGACY_MODEL_FIELDS["micro"], "steps": 5}  # meaningless for tiny: not dropped
    with pytest.raises(Exception, match="micro"):
        typed_config({**old, "model": {**old["model"], "micro": other}})
    old_ref["micro"] = other
    with pytest.raises(ConfigError, match=r"method.references\[0\].micro: Key 'micro' not in"):
        OmegaConf.to_object(typed_config(old)).method.reference_models()


def test_a_config_saved_before_per_source_schemas_is_relaunched_by_its_own_command(
    tmp_path: Path,
) -> None:
    """A finished study cell saved at 4ff31f6 (every old data field, the micro world written
    ``${data.world}``) is re-launched by the grid's command: the values compare as the identity
    sees them, so nothing conflicts (every finished cell is skipped); a real change still does."""
    from omegaconf import OmegaConf

    from bapo_exp.config import LEGACY_DATA_FIELDS
    from bapo_exp.run.relaunch import RelaunchConflict, merge_saved

    overrides = ["experiment=study", "method=dpo", "model.micro.seed=3"]
    plain = OmegaConf.to_container(compose_cfg(overrides), resolve=False)
    plain["data"] = {**LEGACY_DATA_FIELDS, **plain["data"]}
    plain["model"]["micro"]["world"] = "${data.world}"
    saved = OmegaConf.create(plain)
    merged, changes = merge_saved(saved, compose_cfg(overrides), overrides, tmp_path)
    assert changes == [] and OmegaConf.to_container(merged) == OmegaConf.to_container(saved)
    other = [*overrides[:2], "model.micro.seed=4"]
    with pytest.raises(RelaunchConflict, match="model.micro.seed: this run has 3"):
        merge_saved(saved, compose_cfg(other), other, tmp_path)


def test_cell_folders_name_reference_lists_by_their_models() -> None:
    """MRPO cells were named by the whole reference dicts, cut at 160 characters (issue 22)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from bapo_exp.run.identity import readable_name

    preset = OmegaConf.load(REPO / "conf/experiment/mrpo_references.yaml")
    sweep = f"method.references={preset.hydra.sweeper.params['method.references']}"
    [override] = OverridesParser.create().parse_overrides([sweep])
    values = [f"method.references={v}" for v in override.sweep_string_iterator()]
    cells = [readable_name(["method=mrpo", v, "data.preferences=[academy]"]) for v in values]
    assert cells == [
        "data.preferences=[academy],method=mrpo,refs=mistral_7b_instruct",
        "data.preferences=[academy],method=mrpo,refs=mistral_7b_instruct+qwen2_5_7b",
    ]
    substituted = readable_name(["debug=tiny", values[0]], substitute="tiny")
    assert substituted == "debug=tiny,refs=mistral_7b_instruct@tiny"  # debug=tiny's tiny models


@pytest.mark.integration
def test_extending_a_grid_by_a_seed_runs_only_the_new_cells(tmp_path: Path, tiny_cache) -> None:
    from bapo_exp.analysis import load_runs
    from bapo_exp.analysis.load import DuplicateRunsError

    def grid(*args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "bapo_exp", "-m", *FAST, *args,
             f"paths.runs_dir={tmp_path}", f"paths.cache_dir={tiny_cache}"],
            cwd=REPO, env=SUBPROCESS_ENV, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads((tmp_path / "grid" / "multirun_report.json").read_text())

    first = grid("method=dpo,bapo")
    assert first["counts"] == {"completed": 2}
    second = grid("method=dpo,bapo", "seed=0,1")
    assert second["counts"] == {"completed": 2, "skipped": 2}  # seed=0 is the first grid
    skipped = {r["run_dir"] for r in second["jobs"] if r["status"] == "skipped"}
    assert skipped == {r["run_dir"] for r in first["jobs"]}
    runs = load_runs(tmp_path / "grid")
    assert len(runs) == 4 and runs["run_id"].nunique() == 4
    assert sorted(runs["seed"].tolist()) == [0, 0, 1, 1]

    cell = Path(sorted(skipped)[0])
    shutil.copytree(cell, tmp_path / "grid" / "copy_of_a_cell")  # a hand-made duplicate
    with pytest.raises(DuplicateRunsError, match="copy_of_a_cell"):
        load_runs(tmp_path / "grid")
    kept = load_runs(tmp_path / "grid", duplicates="first")  # one of the two, with a warning
    assert len(kept) == 4 and kept["run_id"].nunique() == 4
