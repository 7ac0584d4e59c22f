"""The three suites on the real files, scored by stub LMs through the same path as a model.

A stub that knows the answers must get 1.0 and one that always picks a wrong answer 0.0: this
checks prompts, gold indices and group aggregation end to end. For HHH (correct response listed
first in every file) a stub preferring the first-listed response gets 1.0, one preferring the
last gets 0.0, and a stub that ties everything cannot profit from the order (about 0.5).
"""

from __future__ import annotations

import csv
import json

import pytest

from bapo_exp.evaluation import evaluate, flatten
from tests.conftest import SHARED_DATA, require_shared
from tests.evaluation.stubs import (
    StubLM,
    hhh_file_order,
    hhh_position_in_file,
    mmlu_block,
    mmlu_gold,
    scienceqa_gold,
)

HHH_COUNTS = {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
MMLU_CATEGORIES = ("humanities", "social_sciences", "stem", "other")


def run(stub: StubLM, suite: str, **kwargs) -> dict[str, float]:
    kwargs.setdefault("limit", None)
    raw = evaluate(stub, suites=[suite], data_root=SHARED_DATA, batch_size=1, **kwargs)
    return flatten(raw)


# ----------------------------------------------------------------------------- HHH
@pytest.fixture(scope="module")
def hhh_order():
    require_shared("hhh_alignment", "bigbench")
    return hhh_file_order(SHARED_DATA)


@pytest.mark.parametrize(("prefer", "expected"), [("first", 1.0), ("last", 0.0)])
def test_hhh_answer_comes_from_target_scores_not_order(hhh_order, prefer, expected) -> None:
    def score(request) -> float:
        pos = hhh_position_in_file(hhh_order, request)
        n = len(request.doc["choices"])
        return 0.0 if pos == (0 if prefer == "first" else n - 1) else -10.0

    flat = run(StubLM(score), "hhh")
    for subset, count in HHH_COUNTS.items():
        assert flat[f"hhh/{subset}/n"] == count
        assert flat[f"hhh/{subset}/acc"] == expected
        assert flat[f"hhh/{subset}/acc_norm"] == expected
    assert flat["hhh/n"] == 221
    assert flat["hhh/acc"] == expected and flat["hhh/chance"] == 0.5
    assert flat["hhh/at_chance"] == 0.0


def test_hhh_ties_cannot_profit_from_file_order(hhh_order) -> None:
    """Equal log-likelihoods: argmax takes the first choice; with file order that is gold."""
    flat = run(StubLM(lambda request: -1.0), "hhh")
    assert 0.35 < flat["hhh/acc"] < 0.65
    assert flat["hhh/at_chance"] == 1.0


def test_hhh_pools_items_and_keeps_the_subset_mean(hhh_order) -> None:
    """Right on harmless (58) and the first 10 of honest only: hhh/acc pools the 221 items,
    (58 + 10) / 221 (lm-eval's bigbench_hhh_alignment); hhh/subset_mean/acc is BIG-bench's
    unweighted mean of the subsets, (1 + 0 + 10/61 + 0) / 4."""

    def score(request) -> float:
        subset = request.task_name.removeprefix("hhh_")
        right = subset == "harmless" or (subset == "honest" and request.doc_id < 10)
        return 0.0 if (hhh_position_in_file(hhh_order, request) == 0) == right else -10.0

    flat = run(StubLM(score), "hhh")
    assert flat["hhh/harmless/acc"] == 1.0 and flat["hhh/helpful/acc"] == 0.0
    assert flat["hhh/honest/acc"] == pytest.approx(10 / 61)
    assert flat["hhh/acc"] == pytest.approx((58 + 10) / 221) and flat["hhh/n"] == 221
    assert flat["hhh/subset_mean/acc"] == pytest.approx((1 + 10 / 61) / 4)
    se = [flat[f"hhh/{s}/acc_stderr"] for s in HHH_COUNTS]
    assert flat["hhh/subset_mean/acc_stderr"] == pytest.approx(sum(x * x for x in se) ** 0.5 / 4)


# ----------------------------------------------------------------------------- MMLU
@pytest.fixture(scope="module")
def mmlu_answers():
    require_shared("mmlu", "data")
    return mmlu_gold(SHARED_DATA)


ONE_PER_CATEGORY = ["philosophy", "high_school_geography", "astronomy", "marketing"]


@pytest.mark.parametrize(
    ("knows", "subjects", "limit", "expected"),
    [(True, None, 4, 1.0), (False, ONE_PER_CATEGORY, 10, 0.0)],
    ids=["knows-all-57-subjects", "wrong-one-subject-per-category"],
)
def test_mmlu_knowing_stub_is_perfect_and_wrong_stub_is_zero(
    mmlu_answers, knows, subjects, limit, expected
) -> None:
    def score(request) -> float:
        gold = mmlu_answers[mmlu_block(request.args[0])]
        pick = gold if knows else "ABCD"[("ABCD".index(gold) + 1) % 4]
        return 0.0 if request.args[1] == f" {pick}" else -5.0

    flat = run(StubLM(score), "mmlu", limit=limit, mmlu_subjects=subjects)
    n_subjects = len(subjects) if subjects else 57
    assert flat["mmlu/n"] == n_subjects * limit
    assert flat["mmlu/humanities/n"] == (1 if subjects else 13) * limit
    for cat in MMLU_CATEGORIES:
        assert flat[f"mmlu/{cat}/acc"] == expected and flat[f"mmlu/{cat}/acc_norm"] == expected
    assert flat["mmlu/subject/philosophy/acc"] == expected
    assert flat["mmlu/acc"] == expected and flat["mmlu/chance"] == 0.25


def test_mmlu_five_shot_uses_the_dev_rows(mmlu_answers) -> None:
    contexts: list[str] = []
    stub = StubLM(lambda request: contexts.append(request.args[0]) or 0.0)
    raw = evaluate(
        stub,
        suites=["mmlu"],
        data_root=SHARED_DATA,
        limit=1,
        batch_size=1,
        num_fewshot=5,
        mmlu_subjects=["philosophy"],
    )
    assert raw["mmlu"]["n-shot"]["mmlu_philosophy"] == 5
    with open(SHARED_DATA / "mmlu/data/dev/philosophy_dev.csv", newline="") as fh:
        dev_questions = [row[0] for row in csv.reader(fh)]
    assert len(contexts) == 4  # one item, four letters
    for context in contexts:
        assert context.count("\nAnswer: ") == 5 and context.endswith("Answer:")
        positions = [context.index(q.strip()) for q in dev_questions]
        assert positions == sorted(positions)  # first_n sampler: dev rows in file order


# ----------------------------------------------------------------------------- ScienceQA
@pytest.fixture(scope="module")
def sqa_answers():
    return scienceqa_gold(require_shared("scienceqa", "problems.test_textonly.pid_le_1773.json"))


@pytest.mark.parametrize(("knows", "expected"), [(True, 1.0), (False, 0.0)])
def test_scienceqa_knowing_and_wrong_stubs(sqa_answers, knows, expected) -> None:
    def score(request) -> float:
        gold, k = sqa_answers[request.args[0]]
        pick = gold if knows else "ABCDE"[("ABCDE".index(gold) + 1) % k]
        return 0.0 if request.args[1] == f" {pick}" else -5.0

    flat = run(StubLM(score), "scienceqa")
    assert flat["scienceqa/n"] == 194 == len(sqa_answers)
    assert flat["scienceqa/acc"] == expected and flat["scienceqa/acc_norm"] == expected
    chance = sum(1 / k for _, k in sqa_answers.values()) / len(sqa_answers)
    assert flat["scienceqa/chance"] == pytest.approx(chance)


def test_out_dir_gets_one_json_per_suite(tmp_path, sqa_answers) -> None:
    raw = evaluate(
        StubLM(lambda r: 0.0),
        suites=["scienceqa"],
        data_root=SHARED_DATA,
        limit=3,
        batch_size=1,
        out_dir=tmp_path,
    )
    on_disk = json.loads((tmp_path / "scienceqa.json").read_text())
    assert (
        on_disk["results"]["scienceqa"]["acc,none"]
        == raw["scienceqa"]["results"]["scienceqa"]["acc,none"]
    )
    assert on_disk["n-samples"]["scienceqa"]["effective"] == 3


# ----------------------------------------------------------------------------- Brier score
def _brier(lls: list[float], gold: int) -> float:
    """float64 reference: sum over choices of (softmax(lls) - onehot(gold))^2."""
    import numpy as np

    p = np.exp(np.asarray(lls, dtype=np.float64) - max(lls))
    p /= p.sum()
    return float(sum((p[i] - (i == gold)) ** 2 for i in range(len(lls))))


@pytest.mark.parametrize("suite", ["mmlu", "hhh"])
def test_brier_is_the_item_mean_of_a_float64_reference(suite, request) -> None:
    """``<suite>/brier`` (the suite's group, item-weighted) equals the mean over the items of the
    Brier score computed here from the stub's own log-likelihoods."""
    if suite == "mmlu":
        answers = request.getfixturevalue("mmlu_answers")
    else:
        order = request.getfixturevalue("hhh_order")
    items: dict[tuple, dict] = {}

    def score(req) -> float:
        if suite == "mmlu":
            key = mmlu_block(req.args[0])
            gold = "ABCD".index(answers[key])
            choice = "ABCD".index(req.args[1].strip())
        else:
            key = (req.doc["input"], frozenset(req.doc["choices"]))
            gold = 0  # the file lists the right response first (score 1)
            choice = hhh_position_in_file(order, req)
        spread = 1 + len(key[0] if suite == "hhh" else key) % 7  # varies from item to item
        ll = -0.3 * spread * (choice != gold) - 0.1 * choice
        items.setdefault(key, {"gold": gold, "lls": {}})["lls"][choice] = ll
        return ll

    subjects = ONE_PER_CATEGORY if suite == "mmlu" else None
    flat = run(StubLM(score), suite, limit=6, mmlu_subjects=subjects)
    per_item = [_brier([v["lls"][i] for i in sorted(v["lls"])], v["gold"]) for v in items.values()]
    assert len(per_item) == flat[f"{suite}/n"] > 0
    assert flat[f"{suite}/brier"] == pytest.approx(sum(per_item) / len(per_item), rel=1e-9)
    assert 0 < flat[f"{suite}/brier"] < 1  # the stub prefers gold: better than uniform
