"""Scoring stub LMs and independent readers of the real files (no bapo_exp reader used).

A stub scores a request ``(context, continuation)`` with a Python function, so the whole lm-eval
path (task YAMLs, custom datasets, prompts, gold index, metrics, groups) runs without a model.
The gold answers here are parsed straight from the official files with ``csv``/``json``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from lm_eval.api.model import LM

Score = Callable[[object], float]  # request (lm_eval Instance) -> log-likelihood


class StubLM(LM):
    """``loglikelihood`` = ``score(request)``; everything else is unsupported."""

    def __init__(self, score: Score) -> None:
        super().__init__()
        self.score = score
        self.calls = 0

    def loglikelihood(self, requests, disable_tqdm: bool = False):
        self.calls += len(requests)
        return [(float(self.score(r)), False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise NotImplementedError


# ----------------------------------------------------------------------------- MMLU
def mmlu_gold(data_root: Path) -> dict[str, str]:
    """Prompt block (as lm-eval's standard mmlu writes it) -> gold letter, every test row."""
    gold = {}
    for path in sorted((data_root / "mmlu" / "data" / "test").glob("*_test.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for q, a, b, c, d, answer in csv.reader(fh):
                block = f"{q.strip()}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
                gold[block] = answer
    return gold


def mmlu_block(context: str) -> str:
    """Zero-shot MMLU context = ``"The following are ... about <s>.\\n\\n" + block``."""
    return context.split("\n\n", 1)[1]


# ----------------------------------------------------------------------------- ScienceQA
def scienceqa_gold(path: Path) -> dict[str, tuple[str, int]]:
    """Prompt -> (gold letter, #choices) for the text-only test problems."""
    gold = {}
    for prob in json.loads(path.read_text()).values():
        if prob.get("image") or prob.get("split", "test") != "test":
            continue
        lines = [f"Context: {prob['hint'].strip()}"] if prob["hint"].strip() else []
        lines.append(f"Question: {prob['question'].strip()}")
        lines += [f"{'ABCDE'[i]}. {c}" for i, c in enumerate(prob["choices"])]
        gold["\n".join(lines) + "\nAnswer:"] = ("ABCDE"[prob["answer"]], len(prob["choices"]))
    return gold


# ----------------------------------------------------------------------------- HHH
def hhh_file_order(data_root: Path) -> dict[tuple[str, frozenset], list[str]]:
    """(input, set of responses) -> responses in the order the file lists them."""
    order = {}
    for path in sorted((data_root / "hhh_alignment" / "bigbench").glob("*/task.json")):
        for ex in json.loads(path.read_text())["examples"]:
            responses = list(ex["target_scores"])
            order[(ex["input"], frozenset(responses))] = responses
    return order


def hhh_position_in_file(order: dict, request) -> int:
    """Position, in the file, of the response a request scores (via its comparison's doc)."""
    doc = request.doc
    responses = order[(doc["input"], frozenset(doc["choices"]))]
    return responses.index(request.args[1][1:])  # continuation = " " + response
