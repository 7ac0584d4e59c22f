"""Experiment presets compose, their headers are true, and a grid is resumable end to end."""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import CONF, REPO, SUBPROCESS_ENV

LOCAL = ("demo", "study", "laptop")  # presets made for this machine (no cluster header)
PRESETS = sorted(p for p in (CONF / "experiment").glob("*.yaml") if not p.stem.startswith(LOCAL))
ENV = SUBPROCESS_ENV


def compose_with_hydra(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    from bapo_exp.run.register import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def header(preset: Path, field: str) -> str:
    """The text after ``# <field>:`` in the preset's header comment."""
    for line in preset.read_text().splitlines():
        if m := re.match(rf"#\s*{field}:\s*(.+)", line):
            return m.group(1).strip()
    raise AssertionError(f"{preset.name}: no '# {field}:' line in its header")


def run_command_overrides(preset: Path) -> list[str]:
    """The overrides of the header's ``# Run:`` command (``python -m bapo_exp -m ...``)."""
    argv = shlex.split(header(preset, "Run"))
    assert argv[:3] == ["python", "-m", "bapo_exp"], f"{preset.name}: {argv}"
    assert "-m" in argv[3:], f"{preset.name}: a grid needs -m (multirun)"
    return [a for a in argv[3:] if a != "-m"]


def grid_cells(cfg) -> list[list[str]]:
    """Every cell's overrides, expanded from hydra.sweeper.params as Hydra's BasicSweeper does."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = cfg.hydra.sweeper.params or {}
    parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    axes = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.get_value_element_as_str()}"]
        for o in parsed
    ]
    return [list(c) for c in itertools.product(*axes)]


def cell_identity(overrides: list[str]) -> str:
    """The identity naming a cell's folder (``bapo_exp.run.identity``), from its composed config."""
    from bapo_exp.run.identity import run_identity

    return run_identity(compose_with_hydra(overrides))


def sweeper_identities(overrides: list[str], cells: list[list[str]]) -> list[str]:
    """Each cell's identity from its config as the launching sweeper composes it
    (``CheckedSweeper._compose``: config groups once per distinct choice, plain values applied
    to a copy): about 20x faster than a full composition per cell, and what a launch checks.
    ``test_sweeper_composes_each_cell_as_hydra_does`` holds it to the full composition."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import HydraContext

    from bapo_exp.run.identity import run_identity
    from bapo_exp.run.register import register_configs
    from hydra_plugins.bapo_exp_launcher.checked_sweeper import CheckedSweeper

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        sweeper = CheckedSweeper(max_batch_size=None)
        sweeper.config = compose(config_name="config", overrides=overrides,
                                 return_hydra_config=True)  # fmt: skip
        loader = GlobalHydra.instance().config_loader()
        sweeper.hydra_context = HydraContext(config_loader=loader, callbacks=None)
        return [run_identity(sweeper._compose([*overrides, *c])) for c in cells]


def test_presets_exist() -> None:
    names = {p.stem for p in PRESETS}
    assert {
        "fig2_knowledge_retention",
        "fig3_alignment_retention",
        "fig5_drift",
        "heterogeneity",
        "mrpo_references",
        "frontier",
        "base_model",
    } <= names
    assert any(n.endswith("_seeds") for n in names)


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_preset_composes_with_its_name_and_header(preset: Path) -> None:
    assert preset.read_text().startswith("# @package _global_"), preset.name
    overrides = run_command_overrides(preset)
    assert f"experiment={preset.stem}" in overrides
    cfg = compose_with_hydra(overrides)
    assert cfg.name == preset.stem
    assert "SlurmLauncher" in cfg.hydra.launcher._target_  # the header targets the cluster
    assert cfg.model.name != "tiny" and cfg.hydra.launcher.gpus_per_node >= 1
    cells = grid_cells(cfg)
    jobs = int(header(preset, "Jobs").split()[0])
    assert jobs == len(cells), f"{preset.name}: header says {jobs} jobs, the grid has {len(cells)}"
    ids = sweeper_identities(overrides, cells)  # every cell composes (schema)
    assert len(set(ids)) == len(ids), f"{preset.name}: two cells are the same run"


@pytest.mark.parametrize("preset", ["frontier", "mrpo_references", "heterogeneity"])
def test_sweeper_composes_each_cell_as_hydra_does(preset: str) -> None:
    """The sweeper's shortcut (groups composed once, values applied after) gives every cell the
    identity of its full composition: first, last and a middle cell of grids that sweep config
    groups (method), values (beta, steps, seed) and model lists (references)."""
    overrides = run_command_overrides(CONF / "experiment" / f"{preset}.yaml")
    cells = grid_cells(compose_with_hydra(overrides))
    some = [cells[0], cells[len(cells) // 2], cells[-1]]
    full = [cell_identity([*overrides, *c]) for c in some]
    assert sweeper_identities(overrides, some) == full


def test_seeds_variant_extends_its_base_in_the_same_folder() -> None:
    base = compose_with_hydra(["experiment=fig2_knowledge_retention"])
    more = compose_with_hydra(["experiment=fig2_knowledge_retention_seeds"])
    assert more.hydra.sweep.dir == base.hydra.sweep.dir
    old = set(sweeper_identities(["experiment=fig2_knowledge_retention"], grid_cells(base)))
    new = set(sweeper_identities(["experiment=fig2_knowledge_retention_seeds"], grid_cells(more)))
    assert old < new  # re-uses every finished cell (seed=0 is the grid without a seed), adds seeds


def _tree_state(root: Path) -> dict[str, tuple[str, int]]:
    """Content hash and mtime of every file a re-launch must not touch (logs are appended,
    .hydra/hydra.yaml holds the new job id, submitit and the report have their own folders)."""
    out = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if not p.is_file() or p.name in ("main.log", "hydra.yaml", "multirun_report.json"):
            continue
        if rel.startswith((".submitit", ".multirun")) or rel == "multirun.yaml":
            continue
        digest = hashlib.sha1(p.read_bytes()).hexdigest()
        # Hydra rewrites .hydra/*.yaml at every launch (same content); outputs keep their mtime.
        out[rel] = (digest, 0 if p.parent.name == ".hydra" else p.stat().st_mtime_ns)
    return out


@pytest.mark.integration
def test_grid_on_submitit_local_is_resumable_and_plots(tmp_path: Path, tiny_cache: Path) -> None:
    import json

    from bapo_exp.analysis import load_runs
    from bapo_exp.analysis.cli import main as analysis_main

    runs = tmp_path / "runs"
    cmd = [
        sys.executable,
        "-m",
        "bapo_exp",
        "-m",
        "debug=tiny",
        "logger=none",
        "method=bapo",
        "method.beta=0.1,0.5",  # two cells: the launcher, resumption and analysis are the point
        "eval.suites=[hhh]",
        "eval.limit=2",
        "eval.gen_prompts=2",
        "eval.gen_max_new_tokens=8",
        "reference.max_new_tokens=8",
        "data.n_train=8",
        "data.n_heldout=4",
        "hydra/launcher=local_submitit",
        "name=grid",
        f"paths.runs_dir={runs}",
        f"paths.cache_dir={tiny_cache}",
    ]
    t0 = time.perf_counter()
    env = {**ENV, "OMP_NUM_THREADS": "1"}  # 2 jobs share 2 cores: no thread oversubscription
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    t1 = time.perf_counter()
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    root = runs / "grid"
    before = _tree_state(root)
    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    t2 = time.perf_counter()
    assert again.returncode == 0, again.stderr[-3000:]
    report = json.loads((root / "multirun_report.json").read_text())
    assert report["counts"] == {"skipped": 2}, report["counts"]
    for job in report["jobs"]:
        log = Path(job["run_dir"], "main.log").read_text()
        assert log.count("nothing to do") == 1 and log.count("stage train: start") == 1
    assert _tree_state(root) == before  # zero recomputation: no output rewritten
    df = load_runs(root)
    assert len(df) == 2 and set(df["status"]) == {"complete"}
    assert set(zip(df["method.name"], df["method.beta"], strict=True)) == {
        ("bapo", 0.1),
        ("bapo", 0.5),
    }
    assert analysis_main([str(root), "--figure", "frontier", "--out", str(tmp_path / "f")]) == 0
    for suffix in (".png", ".pdf"):
        assert (tmp_path / "f" / f"grid{suffix}").stat().st_size > 1000
    sys.stderr.write(f"grid: first launch {t1 - t0:.1f} s, re-launch {t2 - t1:.1f} s\n")
