"""The study's instrument in the synthetic world (issue 25): its sizes, the harder held-out
pairs, and the answer format the eval stage uses (well-formedness, renderings, facts)."""

from __future__ import annotations

from collections import Counter

import pytest
from omegaconf import OmegaConf

from bapo_exp.data import DATASETS, build_dataset
from bapo_exp.evaluation.items import select_items
from bapo_exp.synthetic import generate_world
from bapo_exp.synthetic.builder import SyntheticDataConfig, split_entities
from bapo_exp.synthetic.evalsets import hard_pairs, mmlu_tables
from bapo_exp.synthetic.export import read_jsonl, world_config
from bapo_exp.synthetic.plugin import answer_format
from bapo_exp.synthetic.styles import NEAR_TEMPLATES, STYLE_TEMPLATES, detect_style, parse_answer
from bapo_exp.synthetic.world import alignment_probes
from tests.conftest import compose_cfg


@pytest.fixture(scope="module")
def study_data():
    """The study preset's data config (world knobs, split)."""
    return OmegaConf.to_object(compose_cfg(["experiment=study"])).data


def test_study_world_sizes(study_data):
    """>= 200 held-out prompts per preference, >= 500 knowledge items per wording, >= 200
    alignment items, >= 256 harder held-out pairs per preference (issue 25)."""
    world = generate_world(world_config(study_data.world))
    held = split_entities(world.entities, study_data.heldout_frac, study_data.split_seed)
    held_facts = [f for f in world.facts if f.entity in held]
    assert len({f.question for f in held_facts}) == len(held_facts) >= 200
    tables = mmlu_tables(world)
    for wording in ("", "_concise"):
        n = sum(len(t["test"]) for s, t in tables.items() if s.endswith(wording)
                and s.count("_") == 1 + bool(wording))  # fmt: skip
        assert n >= 500, wording
    probes = Counter(p.subset for p in alignment_probes(world))
    assert sum(probes.values()) >= 200 and min(probes.values()) >= 50, probes
    hard = [r for r in hard_pairs(world) if r["entity"] in held and r["preference"] == "concise"]
    assert len(hard) >= 256
    # every study preset evaluates every held-out prompt of its preference
    assert study_data.n_heldout is None


def test_study_generation_prompts_are_all_heldout_prompts(study_data, tmp_path):
    cfg = OmegaConf.to_object(compose_cfg(["experiment=study", f"paths.cache_dir={tmp_path}"]))
    data = build_dataset(cfg.data, data_root=str(tmp_path), cache_dir=str(tmp_path))
    items = select_items(data.heldout, cfg.eval.gen_prompts)
    assert len(items) == len({e.prompt for e in data.heldout}) >= 200
    assert not {e.source["entity"] for e in data.train} & {
        it.pairs[0].source["entity"] for it in items
    }


def test_hard_pairs_construction(world):
    records = hard_pairs(world)
    ids = [r["id"] for r in records]
    assert len(ids) == len(set(ids)) == 2 * len(world.config.styles) * len(world.facts)
    chosen_of = {}
    for r in records:
        style, kind = r["preference"], r["kind"]
        chosen = parse_answer(r["chosen"])
        assert chosen.style == style and chosen.value.lower() == r["value"].lower()
        assert chosen_of.setdefault((style, r["fact_id"]), r["chosen"]) == r["chosen"]
        if kind == "wrong_fact":  # the right style and template, another value of the attribute
            wrong = parse_answer(r["rejected"])
            assert (wrong.style, wrong.variant) == (style, chosen.variant)
            values = {v.lower() for v in world.values[r["attribute"]]}
            assert wrong.value.lower() != r["value"].lower() and wrong.value.lower() in values
        else:  # a near miss: no template, the same fact
            assert kind == "near_style"
            assert detect_style(r["rejected"], include_neutral=True) is None
            assert r["value"].lower() in r["rejected"].lower() and r["entity"] in r["rejected"]
    assert set(NEAR_TEMPLATES) == set(STYLE_TEMPLATES) - {"neutral"}


def test_hard_pairs_only_heldout_entities(world_root, tmp_path):
    cfg = SyntheticDataConfig(name="synthetic", path=str(world_root), preferences=["poetic"])
    hard = DATASETS.require("synthetic").hard(cfg, cache_dir=str(tmp_path))
    data = build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))
    assert {e.source["entity"] for e in hard} == {e.source["entity"] for e in data.heldout}
    assert {e.preference for e in hard} == {"poetic"}
    assert Counter(e.source["kind"] for e in hard) == {
        "wrong_fact": len(hard) // 2, "near_style": len(hard) // 2}  # fmt: skip
    on_disk = read_jsonl(world_root / "hard_pairs.jsonl")
    assert {e.id for e in hard} < {r["id"] for r in on_disk}


def test_answer_format_renders_every_variant_of_the_pairs_fact(world_root, tmp_path):
    fmt = answer_format()
    cfg = SyntheticDataConfig(name="synthetic", path=str(world_root), preferences=["academic"],
                     include_normal=True)  # fmt: skip
    data = build_dataset(cfg, data_root=str(tmp_path), cache_dir=str(tmp_path))
    for pair in data.heldout[:10]:
        for style in ("academic", "neutral"):
            texts = fmt.answers(pair, style)
            assert len(texts) == len(STYLE_TEMPLATES[style])
            assert all(fmt.style(t) == style and fmt.correct(t, pair) for t in texts)
        assert pair.chosen in fmt.answers(pair, "academic")
        assert fmt.correct(pair.rejected, pair)  # every style states the same fact
