"""Malformed input fails before training with a message naming file, record index and field."""

from __future__ import annotations

import json
import re

import pytest

from bapo_exp.data import DataError, build_dataset, clean_pairs
from bapo_exp.data.dsp import RESPONSE_KEYS
from bapo_exp.data.io import read_prompts
from bapo_exp.data.types import PreferenceExample
from tests.data import data_cfg
from tests.data.test_psoups import write_personas


def dsp_record(i: int) -> dict:
    return {"query": f"Question {i}?", "responses": {k: f"{k} answer {i}" for k in RESPONSE_KEYS}}


def write_dsp(tmp_path, records) -> str:
    path = tmp_path / "dsp_bad.json"
    path.write_text(json.dumps(records))
    return str(path)


def build_dsp(path: str, **kw):
    return build_dataset(
        data_cfg(name="dsp", path=path, **kw), data_root="/nonexistent", cache_dir="x"
    )


def assert_names(err: pytest.ExceptionInfo, path: str, index: int, field: str | None) -> None:
    msg = str(err.value)
    assert path in msg, msg
    assert re.search(rf"\brecord {index}\b", msg), msg
    if field is not None:
        assert f"field '{field}'" in msg, msg


def test_bad_json_names_file_and_record(tmp_path):
    good = json.dumps([dsp_record(0), dsp_record(1)])
    path = tmp_path / "broken.json"
    path.write_text(good[:-1] + ', {"query": "x", "responses": {"academy": "a",}}]')
    with pytest.raises(DataError, match="invalid JSON at line") as err:
        build_dsp(str(path))
    assert_names(err, str(path), 2, None)


@pytest.mark.parametrize(
    ("field", "mutate", "problem"),
    [
        ("query", lambda r: r.pop("query"), "missing"),
        ("responses", lambda r: r.pop("responses"), "missing"),
        ("responses.business", lambda r: r["responses"].pop("business"), "missing"),
        ("responses.academy", lambda r: r["responses"].update(academy=3), "expected a string"),
        ("query", lambda r: r.update(query=["a"]), "expected a string"),
        ("responses.literature", lambda r: r["responses"].update(literature="  "), "empty string"),
        ("responses.science", lambda r: r["responses"].update(science="x"), "unknown domain"),
    ],
)
def test_dsp_record_errors(tmp_path, field, mutate, problem):
    records = [dsp_record(i) for i in range(3)]
    mutate(records[1])
    path = write_dsp(tmp_path, records)
    with pytest.raises(DataError, match=problem) as err:
        build_dsp(path)
    assert_names(err, path, 1, field)


def test_dsp_empty_unused_normal_is_fine_and_drop_policy_counts(tmp_path):
    records = [dsp_record(i) for i in range(4)]
    records[2]["responses"]["normal"] = ""
    path = write_dsp(tmp_path, records)
    assert len(build_dsp(path, heldout_frac=0.0).train) == 4 * 4 * 3  # `normal` unused
    with pytest.raises(DataError, match="empty string") as err:
        build_dsp(path, include_normal=True)
    assert_names(err, path, 2, "responses.normal")
    data = build_dsp(path, include_normal=True, empty_responses="drop", heldout_frac=0.0)
    assert data.report["cleaning"]["total"]["empty"] == 4  # one pair per target domain
    assert len(data.train) == 4 * 4 * 4 - 4


def test_unknown_domain_in_config():
    with pytest.raises(DataError, match=r"data.preferences: unknown DSP domain \['science'\]"):
        build_dsp("unused.json", preferences=["science"])


def write_pairs(tmp_path, rows) -> str:
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps(rows))
    return str(path)


P1A = "Generate a response that can be easily understood by an elementary school student."


def pair(i: int, **extra) -> dict:
    return {
        "user_input": f"Task {i}. {P1A}",
        "completion_a": f"a{i}",
        "completion_b": f"b{i}",
        **extra,
    }


@pytest.mark.parametrize(
    ("field", "row", "problem"),
    [
        ("persona", pair(1, persona="P9Z"), "unknown persona 'P9Z'"),
        ("user_input", {**pair(1), "user_input": "Task 1. Be nice."}, "no known persona prompt"),
        ("completion_b", {k: v for k, v in pair(1).items() if k != "completion_b"}, "missing"),
        ("completion_a", {**pair(1), "completion_a": None}, "expected a string"),
        ("completion_a", {**pair(1), "completion_a": ""}, "empty string"),
    ],
)
def test_psoups_record_errors(tmp_path, field, row, problem):
    root = write_personas(tmp_path)
    path = write_pairs(tmp_path, [pair(0), row, pair(2)])
    cfg = data_cfg(name="psoups", path=path)
    with pytest.raises(DataError, match=problem) as err:
        build_dataset(cfg, data_root=str(root), cache_dir="x")
    assert_names(err, path, 1, field)


def test_unknown_persona_in_config(tmp_path):
    root = write_personas(tmp_path)
    cfg = data_cfg(name="psoups", path=write_pairs(tmp_path, [pair(0)]), preferences=["P4A"])
    with pytest.raises(DataError, match="unknown persona") as err:
        build_dataset(cfg, data_root=str(root), cache_dir="x")
    assert "personas.json" in str(err.value)


def test_prompt_file_errors(tmp_path):
    path = tmp_path / "prompts.json"
    path.write_text(json.dumps([{"id": "0", "prompt": "ok"}, {"id": "1", "text": "no prompt"}]))
    with pytest.raises(DataError, match="missing") as err:
        read_prompts(path)
    assert_names(err, str(path), 1, "prompt")
    path.write_text(json.dumps({"prompt": "not a list"}))
    with pytest.raises(DataError, match="expected a JSON list"):
        read_prompts(path)


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        build_dsp(str(tmp_path / "nope.json"))


def ex(prompt: str, chosen: str, rejected: str) -> PreferenceExample:
    return PreferenceExample(
        id="x", prompt=prompt, chosen=chosen, rejected=rejected, preference="p"
    )


def test_clean_pairs_counts_and_drops():
    exs = [
        ex("p", "a", "b"),
        ex("p", "a", "b"),
        ex("p", "a", "a"),
        ex("p", "x" * 50, "b"),
        ex("p", " ", "b"),
    ]
    kept, counts = clean_pairs(exs, max_chars=20)
    assert counts == {"empty": 1, "identical": 1, "duplicates": 1, "over_length": 1}
    assert kept == [exs[0]]
    kept, counts = clean_pairs(exs, drop_duplicates=False, drop_identical=False)
    assert len(kept) == 4 and counts["duplicates"] == 1 and counts["identical"] == 1
