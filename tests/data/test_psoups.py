"""P-Soups pairs in the official rm_training schema, from the fixture file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bapo_exp.data import build_dataset
from bapo_exp.data.psoups import load_persona_prompts
from tests.data import FIXTURES, data_cfg, shared_data

# The persona prompts as embedded in the official rows (rm_training_prompt) and in the RLPHF
# policy code (policy_prompt); the real file is <data_root>/psoups/personas.json.
PERSONAS = {
    "P1A": "Generate a response that can be easily understood by an elementary school student.",
    "P1B": "Generate a response that only a PhD Student in that specific field could understand.",
    "P2A": "Generate a response that is concise and to the point without being verbose.",
    "P2B": "Generate a response that is very informative "
    "without missing any background information.",
    "P3A": "Generate a response that is friendly, witty, funny, and humorous, like a close friend.",
    "P3B": "Generate a response in an unfriendly manner.",
}
POLICY_VARIANTS = {
    "P2A": "Generate a response that is concise and to the point, without being verbose.",
    "P2B": "Generate a response that is very informative, "
    "without missing any background information.",
}


def write_personas(tmp_path: Path) -> Path:
    """A data root holding psoups/personas.json in the shared file's schema."""
    root = tmp_path / "data_root"
    (root / "psoups").mkdir(parents=True, exist_ok=True)
    personas = {
        pid: {"rm_training_prompt": text, "policy_prompt": POLICY_VARIANTS.get(pid, text)}
        for pid, text in PERSONAS.items()
    }
    (root / "psoups" / "personas.json").write_text(json.dumps({"personas": personas}))
    return root


def build(tmp_path, **kw):
    root = write_personas(tmp_path)
    cfg = data_cfg(name="psoups", path=str(FIXTURES / "psoups_pairs.json"), **kw)
    return build_dataset(cfg, data_root=str(root), cache_dir=str(tmp_path / "cache"))


def everything(data):
    return data.train + data.heldout


def test_strip_persona_prompt(tmp_path):
    data = build(tmp_path, strip_persona_prompt=True)
    prompts = {ex.prompt for ex in everything(data)}
    assert "Explain what a black hole is." in prompts
    assert "Translate 'good morning' into French." in prompts  # policy-prompt variant stripped too
    assert not any("Generate a response" in p for p in prompts)


def test_keep_persona_prompt(tmp_path):
    data = build(tmp_path, strip_persona_prompt=False)
    by_id = {ex.id: ex for ex in everything(data)}
    assert by_id["psoups/P1A/r000000"].prompt == f"Explain what a black hole is. {PERSONAS['P1A']}"
    assert all("Generate a response" in ex.prompt for ex in by_id.values())


def test_fixture_counts_chosen_and_cleaning(tmp_path):
    data = build(tmp_path, heldout_frac=0.0)
    report = data.report
    assert report["n_rows"] == {"P1A": 2, "P1B": 1, "P2A": 3, "P2B": 1, "P3A": 1, "P3B": 1}
    assert report["cleaning"]["total"] == {
        "empty": 0,
        "identical": 1,
        "duplicates": 1,
        "over_length": 0,
    }
    assert len(data.train) == 9 - 2 and data.heldout == []
    ex = next(e for e in data.train if e.id == "psoups/P1B/r000001")
    assert ex.chosen.startswith("A black hole is a region of spacetime")  # completion_a = chosen
    assert ex.preference == "P1B"


def test_split_by_prompt_and_preferences(tmp_path):
    data = build(tmp_path, heldout_frac=0.4, preferences=["P1A", "P1B"])
    train_prompts = {e.prompt for e in data.train}
    assert train_prompts.isdisjoint({e.prompt for e in data.heldout})
    assert {e.preference for e in everything(data)} == {"P1A", "P1B"}
    # the P1A and P1B rows of the same instruction fall on the same side
    black_hole = [e for e in everything(data) if e.prompt == "Explain what a black hole is."]
    assert len(black_hole) == 2 and len({e in data.train for e in black_hole}) == 1


def test_rm_training_folder_layout(tmp_path):
    folder = tmp_path / "rm_training"
    folder.mkdir()
    rows = json.loads((FIXTURES / "psoups_pairs.json").read_text())
    (folder / "P1A.json").write_text(json.dumps([rows[0], rows[5]]))
    (folder / "P1B.json").write_text(json.dumps([rows[1]]))
    root = write_personas(tmp_path)
    cfg = data_cfg(name="psoups", path=str(folder), preferences=["P1A", "P1B"], heldout_frac=0.0)
    data = build_dataset(cfg, data_root=str(root), cache_dir="x")
    assert sorted(e.id for e in data.train) == [
        "psoups/P1A/r000000",
        "psoups/P1A/r000001",
        "psoups/P1B/r000000",
    ]


def test_missing_pairs_point_to_source(tmp_path):
    root = write_personas(tmp_path)
    cfg = data_cfg(name="psoups", preferences=["P1A"])
    with pytest.raises(Exception, match="SOURCE.md"):
        build_dataset(cfg, data_root=str(root), cache_dir="x")


def test_fixture_persona_prompts_match_the_real_personas_file(tmp_path):
    real = load_persona_prompts(shared_data("psoups", "personas.json"))
    assert sorted(real) == sorted(PERSONAS)
    for pid, text in PERSONAS.items():
        assert text in real[pid]
    root = tmp_path / "real_root"
    (root / "psoups").mkdir(parents=True)
    shutil.copy(shared_data("psoups", "personas.json"), root / "psoups" / "personas.json")
    cfg = data_cfg(name="psoups", path=str(FIXTURES / "psoups_pairs.json"))
    data = build_dataset(cfg, data_root=str(root), cache_dir="x")
    assert not any("Generate a response" in e.prompt for e in everything(data))
