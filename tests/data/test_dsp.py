"""DSP pairs: counts on the real test file, the query split, the official split, mixing."""

from __future__ import annotations

import json

import pytest

from bapo_exp.data import DataError, build_dataset
from bapo_exp.data.dsp import DOMAINS, RESPONSE_KEYS
from tests.data import data_cfg, shared_data

N_QUERIES = 661


@pytest.fixture(scope="module")
def dsp_root():
    shared_data("dsp", "domain_specific_preference.test.json")
    return str(shared_data())


def build(root: str, **kw):
    return build_dataset(data_cfg(name="dsp", **kw), data_root=root, cache_dir="unused")


def built(data, pref: str) -> int:
    return sum(data.report["pairs_built"][side][pref] for side in ("train", "heldout"))


def test_real_counts_three_pairs_per_query(dsp_root):
    data = build(dsp_root)  # preferences [] = all four domains
    for pref in DOMAINS:
        assert built(data, pref) == N_QUERIES * 3
    cleaning = data.report["cleaning"]["total"]
    kept = len(data.train) + len(data.heldout)
    assert kept + cleaning["identical"] + cleaning["duplicates"] == 4 * N_QUERIES * 3


def test_real_counts_four_pairs_with_normal(dsp_root):
    # record 60's `normal` answer is empty in the official file: an error unless dropped
    with pytest.raises(DataError, match=r"record 60, field 'responses.normal': empty"):
        build(dsp_root, include_normal=True)
    data = build(dsp_root, include_normal=True, empty_responses="drop")
    for pref in DOMAINS:
        assert built(data, pref) == N_QUERIES * 4
    assert data.report["cleaning"]["total"]["empty"] == len(DOMAINS)


def test_real_query_split_disjoint_and_reproducible(dsp_root):
    data = build(dsp_root, preferences=["academy", "entertainment"], split_seed=5)
    train_q = {e.prompt for e in data.train}
    held_q = {e.prompt for e in data.heldout}
    assert train_q.isdisjoint(held_q)
    split = data.report["split"]
    assert split["method"] == "by_query" and split["n_heldout_queries"] == 132
    assert split["n_train_queries"] + split["n_heldout_queries"] == N_QUERIES
    again = build(dsp_root, preferences=["academy", "entertainment"], split_seed=5)
    assert [e.id for e in again.heldout] == [e.id for e in data.heldout]
    assert [e.id for e in again.train] == [e.id for e in data.train]
    other = build(dsp_root, preferences=["academy", "entertainment"], split_seed=6)
    assert {e.prompt for e in other.heldout} != held_q


def test_real_pair_content_and_ids(dsp_root):
    data = build(dsp_root, preferences=["business"], heldout_frac=0.0)
    records = json.loads(shared_data("dsp", "domain_specific_preference.test.json").read_text())
    by_id = {e.id: e for e in data.train}
    ex = by_id["dsp/business/q00000/literature"]
    assert ex.prompt == records[0]["query"]
    assert ex.chosen == records[0]["responses"]["business"]
    assert ex.rejected == records[0]["responses"]["literature"]
    assert ex.preference == "business" and ex.source["rejected_domain"] == "literature"


def test_real_mixing_counts_in_report(dsp_root, caplog):
    caplog.set_level("INFO")
    data = build(
        dsp_root, preferences=["academy", "business", "literature"], n_train=100, n_heldout=31
    )
    assert data.report["counts"] == {
        "train": {"academy": 34, "business": 33, "literature": 33},
        "heldout": {"academy": 11, "business": 10, "literature": 10},
    }
    assert len(data.train) == 100 and len(data.heldout) == 31
    assert "split the 661 test queries by query" in caplog.text


def synthetic(n: int, start: int = 0) -> list[dict]:
    return [
        {"query": f"Q{i}?", "responses": {k: f"{k}-{i}" for k in RESPONSE_KEYS}}
        for i in range(start, start + n)
    ]


def test_official_split_uses_test_file_as_heldout(tmp_path):
    test, train = tmp_path / "test.json", tmp_path / "train.json"
    test.write_text(json.dumps(synthetic(5)))
    train.write_text(json.dumps(synthetic(20, start=3)))  # Q3, Q4 also in the test file
    data = build_dataset(
        data_cfg(name="dsp", path=str(test), train_path=str(train), preferences=["academy"]),
        data_root="unused",
        cache_dir="unused",
    )
    assert len(data.heldout) == 5 * 3 and len(data.train) == 18 * 3
    assert {e.prompt for e in data.train}.isdisjoint({e.prompt for e in data.heldout})
    split = data.report["split"]
    assert split["method"] == "official" and split["train_queries_dropped_as_in_test"] == 2
    assert all("/train-q" in e.id for e in data.train) and all("/q" in e.id for e in data.heldout)


def test_a_training_set_larger_than_the_data_fails_the_check_before_any_model(tmp_path):
    """check_dataset (run in the launching process) mixes too: a short pool is a DataError."""
    from bapo_exp.data import check_dataset

    test = tmp_path / "test.json"
    test.write_text(json.dumps(synthetic(10)))
    cfg = data_cfg(name="dsp", path=str(test), preferences=["academy"], n_train=1000)
    with pytest.raises(DataError, match=r"cannot draw 1000 pairs .* lower data.n_train"):
        check_dataset(cfg, data_root="unused", cache_dir="unused")
