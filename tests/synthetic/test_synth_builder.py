"""build_synthetic: pairs per style, split by entity, balanced mixing."""

from __future__ import annotations

import pytest

from bapo_exp.data import build_dataset
from bapo_exp.synthetic import build_synthetic, detect_style
from bapo_exp.synthetic.builder import SyntheticDataConfig
from bapo_exp.synthetic.styles import NEUTRAL


def _build(root, tmp_path, **kw):
    """Through the DATASETS registry, as the stages call it (cleaning and mixing included)."""
    cfg = SyntheticDataConfig(name="synthetic", path=str(root), **kw)
    return build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))


def test_split_by_entity_is_disjoint(world_root, tmp_path):
    data = _build(world_root, tmp_path, preferences=["academic", "poetic"])
    assert data.train and data.heldout
    train_prompts = {e.prompt for e in data.train}
    held_prompts = {e.prompt for e in data.heldout}
    assert not train_prompts & held_prompts
    assert not {e.source["entity"] for e in data.train} & {e.source["entity"] for e in data.heldout}
    assert sorted(data.report["split"]["heldout_entities"]) == sorted(
        {e.source["entity"] for e in data.heldout}
    )


def test_chosen_in_preferred_style_rejected_not(world_root, tmp_path, world_cfg):
    data = _build(world_root, tmp_path, preferences=["concise"], include_normal=True)
    rejected_styles = set()
    for ex in data.train + data.heldout:
        assert detect_style(ex.chosen) == "concise" == ex.preference
        style = detect_style(ex.rejected, include_neutral=True)
        assert style not in (None, "concise") and style == ex.source["rejected_style"]
        rejected_styles.add(style)
    assert rejected_styles == ({*world_cfg.styles} - {"concise"}) | {NEUTRAL}


def test_include_normal_off_drops_neutral_rejected(world_root, tmp_path):
    data = _build(world_root, tmp_path, preferences=["academic"])
    assert all(e.source["rejected_style"] != NEUTRAL for e in data.train + data.heldout)
    assert data.report["n_dropped_neutral_rejected"] > 0


def test_balanced_mixing_and_caps(world_root, tmp_path):
    data = _build(
        world_root,
        tmp_path,
        preferences=["academic", "business", "poetic"],
        n_train=31,
        n_heldout=6,
        mix_seed=3,
    )
    assert len(data.train) == 31 and len(data.heldout) == 6
    counts = data.report["counts"]["train"]
    assert sorted(counts.values()) == [10, 10, 11]
    again = _build(
        world_root,
        tmp_path,
        preferences=["academic", "business", "poetic"],
        n_train=31,
        n_heldout=6,
        mix_seed=3,
    )
    assert [e.id for e in again.train] == [e.id for e in data.train]


def test_split_seed_changes_heldout(world_root, tmp_path):
    a = _build(world_root, tmp_path, split_seed=0).report["split"]["heldout_entities"]
    b = _build(world_root, tmp_path, split_seed=1).report["split"]["heldout_entities"]
    assert a != b


def test_errors(world_root, tmp_path):
    with pytest.raises(ValueError, match="unknown synthetic style \\[.pirate.\\]"):
        _build(world_root, tmp_path, preferences=["pirate"])
    with pytest.raises(FileNotFoundError):
        _build(tmp_path / "nowhere", tmp_path)


def test_default_world_when_no_path(tmp_path, world_cfg):
    from dataclasses import asdict

    knobs = asdict(world_cfg)
    cfg = SyntheticDataConfig(
        name="synthetic", preferences=["enthusiastic"], n_train=8, n_heldout=4
    )
    cfg.world = knobs
    data = build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))
    assert len(data.train) == 8 and len(data.heldout) == 4
    assert data.report["world"].startswith(str(tmp_path / "synthetic" / "world-"))
    pools = build_synthetic(cfg, data_root=tmp_path, cache_dir=tmp_path)
    assert set(pools.train) == {"enthusiastic"}  # per-preference SplitPools, unmixed


def test_world_knobs_checked_and_written_at_path(tmp_path):
    cfg = SyntheticDataConfig(name="synthetic", path=str(tmp_path / "w"), world={"n_entitys": 3})
    with pytest.raises(ValueError, match="unknown synthetic world knobs"):
        build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))
    cfg.world = {"n_entities": 12, "n_harmful_train": 8, "n_harmful_test": 6}
    build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))
    assert (tmp_path / "w" / "READY").exists()
