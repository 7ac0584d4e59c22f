"""World generation and writing: seeded, deterministic, cached."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bapo_exp.readback import MANIFEST
from bapo_exp.synthetic import ensure_world, generate_world, world_key, write_world
from bapo_exp.synthetic.corpus import build_corpus, corpus_stats
from bapo_exp.synthetic.export import load_world_json


def _digest(root: Path) -> dict[str, str]:
    """The world's files (``MANIFEST.json`` records their write times, so it is left out)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def test_same_seed_same_files_other_seed_other_files(tmp_path, world_cfg, world_root, make_config):
    again = write_world(world_cfg, tmp_path / "again")
    assert _digest(again) == _digest(world_root)
    other = write_world(make_config(seed=1), tmp_path / "other")
    a, b = _digest(world_root), _digest(other)
    assert a.keys() == b.keys()
    assert a["world.json"] != b["world.json"] and a["pairs.jsonl"] != b["pairs.jsonl"]


def test_write_world_is_cached_and_keyed(tmp_path, world_cfg, make_config):
    root = ensure_world(world_cfg, tmp_path)
    assert root.name == f"world-{world_key(world_cfg)}"
    stamp = (root / "world.json").stat().st_mtime_ns
    assert ensure_world(world_cfg, tmp_path) == root
    assert (root / "world.json").stat().st_mtime_ns == stamp
    assert world_key(make_config(seed=3)) != world_key(world_cfg)


def test_write_world_refuses_foreign_folder(tmp_path, world_cfg):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        write_world(world_cfg, tmp_path / "x")


def test_names_are_unique_and_facts_complete(world, world_cfg):
    names = world.entities + world.unknown_train + world.unknown_test
    assert len(set(names)) == len(names)
    assert len(world.facts) == world_cfg.n_entities * world_cfg.n_attributes
    for attr in world.attributes:  # invented values are fresh names, never entity names
        assert not set(world.values[attr.key]) & set(names)


def test_unknown_entities_never_described_in_corpus(world):
    docs = build_corpus(world)
    text = "\n".join(d.prefix + d.response for d in docs)
    for entity in world.unknown_test:
        assert entity not in text
    for prompt, _ in world.harmful_test:
        assert prompt not in text


def test_style_exposure_controls_the_corpus(make_config):
    zero = {s: 0.0 for s in make_config().styles}
    stats = corpus_stats(build_corpus(generate_world(make_config(style_exposure=zero))))
    assert not [k for k in stats if k.startswith("qa:") and k != "qa:neutral"]
    heavy = corpus_stats(
        build_corpus(generate_world(make_config(style_exposure={"poetic": 0.5}, qa_repeats=20)))
    )
    assert 0.35 < heavy["qa:poetic"] / (heavy["qa:poetic"] + heavy["qa:neutral"]) < 0.65


def test_invalid_configs_are_refused(make_config):
    with pytest.raises(ValueError):
        make_config(styles=["pirate"]).validate()
    with pytest.raises(ValueError):
        make_config(style_exposure={"academic": 0.7, "concise": 0.6}).validate()


def test_world_json_round_trip(world_root, world_cfg):
    meta = load_world_json(world_root)
    assert meta["key"] == world_key(world_cfg)
    assert meta["config"]["seed"] == world_cfg.seed
    assert set(meta["styles"]) == {"neutral", *world_cfg.styles}
