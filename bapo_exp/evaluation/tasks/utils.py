"""Local readers for the evaluation suites, in their official schemas (no hub access).

lm-eval imports this file through ``!function utils.<name>`` in the task templates beside it;
``bapo_exp.evaluation.harness`` imports it as a module to discover subjects and subsets.

Layout under a data root (the shared folder or the synthetic world's own root)::

    mmlu/data/{test,dev}/<subject>_{test,dev}.csv   no header: question,A,B,C,D,answer
    mmlu/subject_categories.json                    subject -> category (optional)
    scienceqa/problems.json | problems.test_textonly.pid_le_1773.json
    hhh_alignment/bigbench/<subset>/task.json       BIG-bench: examples[{input, target_scores}]

HHH files list the correct response first. The loader therefore never keeps the file order:
it takes the gold index from ``target_scores`` and permutes the responses with a permutation
seeded by a hash of the item, so that a model that ties (identical log-likelihoods) cannot
profit from ``argmax`` picking the first choice.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import random
import re
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJ"
MMLU_COLUMNS = ("question", "A", "B", "C", "D", "answer")
SCIENCEQA_FILES = ("problems.json", "problems.test_textonly.pid_le_1773.json")
UNCATEGORIZED = "uncategorized"


# ----------------------------------------------------------------------------- discovery
def mmlu_subjects(data_root: str | Path) -> list[str]:
    """Subjects with a ``<subject>_test.csv`` under ``<data_root>/mmlu/data/test``, sorted."""
    test_dir = Path(data_root) / "mmlu" / "data" / "test"
    if not test_dir.is_dir():
        raise FileNotFoundError(f"MMLU test CSVs not found: {test_dir} is not a directory")
    return sorted(p.name[: -len("_test.csv")] for p in test_dir.glob("*_test.csv"))


def category_slug(name: str) -> str:
    """Category key: ``"other (business, health, misc.)"`` -> ``other``, ``"STEM"`` -> ``stem``."""
    head = name.split("(")[0].strip().lower()
    return re.sub(r"[^a-z0-9]+", "_", head).strip("_") or UNCATEGORIZED


def mmlu_categories(data_root: str | Path, subjects: list[str]) -> dict[str, str]:
    """Map each subject to a category slug from ``mmlu/subject_categories.json``.

    Accepts ``subject_to_category`` or the hendrycks ``subcategories`` + ``categories`` pair.
    Subjects the file does not name (or a missing file) go to ``uncategorized``, with a warning.
    """
    path = Path(data_root) / "mmlu" / "subject_categories.json"
    mapping: dict[str, str] = {}
    if path.exists():
        meta = json.loads(path.read_text())
        if "subject_to_category" in meta:
            mapping = dict(meta["subject_to_category"])
        else:
            sub_to_cat = {s: c for c, subs in meta.get("categories", {}).items() for s in subs}
            for subject, subs in meta.get("subcategories", {}).items():
                cats = [sub_to_cat[s] for s in subs if s in sub_to_cat]
                if cats:
                    mapping[subject] = cats[0]
    missing = [s for s in subjects if s not in mapping]
    if missing:
        log.warning("MMLU subjects without a category in %s: %s", path, missing)
    return {s: category_slug(mapping[s]) if s in mapping else UNCATEGORIZED for s in subjects}


def hhh_subsets(data_root: str | Path) -> list[str]:
    """Subsets with a ``task.json`` under ``<data_root>/hhh_alignment/bigbench``, sorted."""
    base = Path(data_root) / "hhh_alignment" / "bigbench"
    subsets = sorted(p.parent.name for p in base.glob("*/task.json"))
    if not subsets:
        raise FileNotFoundError(f"no HHH subsets found: no {base}/<subset>/task.json")
    return subsets


def scienceqa_file(data_root: str | Path) -> Path:
    """The full ``problems.json`` when present, else the shared text-only test subset."""
    base = Path(data_root) / "scienceqa"
    for name in SCIENCEQA_FILES:
        if (base / name).exists():
            return base / name
    raise FileNotFoundError(f"no ScienceQA problems file in {base} (looked for {SCIENCEQA_FILES})")


# ----------------------------------------------------------------------------- readers
def read_mmlu_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows of one MMLU CSV as ``{question, choices[4], answer: int}``."""
    docs = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if not row:
                continue
            if len(row) != len(MMLU_COLUMNS) or row[5].strip() not in LETTERS[:4]:
                raise ValueError(f"{path}: bad MMLU row (want {MMLU_COLUMNS}): {row[:1]}...")
            docs.append(
                {"question": row[0], "choices": row[1:5], "answer": LETTERS.index(row[5].strip())}
            )
    return docs


def read_scienceqa(path: str | Path) -> list[dict[str, Any]]:
    """Text-only test problems (``image`` null, ``split`` test when given), ordered by pid."""
    problems = json.loads(Path(path).read_text())
    docs = []
    for pid in sorted(problems, key=lambda p: int(p) if p.isdigit() else p):
        prob = problems[pid]
        if prob.get("image") or prob.get("split", "test") != "test":
            continue
        choices = [str(c) for c in prob["choices"]]
        docs.append(
            {
                "pid": str(pid),
                "question": prob["question"],
                "hint": prob.get("hint") or "",
                "choices": choices,
                "letters": list(LETTERS[: len(choices)]),
                "answer": int(prob["answer"]),
                "subject": prob.get("subject", ""),
                "grade": prob.get("grade", ""),
            }
        )
    return docs


def _permutation(key: str, n: int) -> list[int]:
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def read_hhh(path: str | Path) -> list[dict[str, Any]]:
    """BIG-bench ``task.json`` items as ``{prompt, choices, label, scores}``.

    ``prompt`` uses the file's ``example_input_prefix``/``example_output_prefix`` (BIG-bench:
    ``"\\nHuman: "``, ``"\\nAssistant:"``), left-stripped. ``label`` is the index (in the permuted
    ``choices``) of the response with the highest target score.
    """
    task = json.loads(Path(path).read_text())
    in_prefix = task.get("example_input_prefix", "\nHuman: ")
    out_prefix = task.get("example_output_prefix", "\nAssistant:")
    docs = []
    for i, ex in enumerate(task["examples"]):
        responses = list(ex["target_scores"])
        order = _permutation(ex["input"] + "\0" + "\0".join(responses), len(responses))
        choices = [responses[j] for j in order]
        scores = [float(ex["target_scores"][c]) for c in choices]
        docs.append(
            {
                "id": i,
                "input": ex["input"],
                "prompt": (in_prefix + ex["input"] + out_prefix).lstrip(),
                "choices": choices,
                "scores": scores,
                "label": max(range(len(scores)), key=scores.__getitem__),
            }
        )
    return docs


# ----------------------------------------------------------------------------- lm-eval hooks
def _dataset_dict(splits: dict[str, list[dict[str, Any]]]):
    from datasets import Dataset, DatasetDict

    return DatasetDict({name: Dataset.from_list(rows) for name, rows in splits.items()})


def load_mmlu(mmlu_dir: str, subject: str, **_: Any):
    """``custom_dataset`` for one MMLU subject: splits ``test`` and ``dev`` (few-shot)."""
    base = Path(mmlu_dir)
    splits = {"test": read_mmlu_csv(base / "test" / f"{subject}_test.csv")}
    dev = base / "dev" / f"{subject}_dev.csv"
    if dev.exists():
        splits["dev"] = read_mmlu_csv(dev)
    return _dataset_dict(splits)


def load_scienceqa(problems_file: str, **_: Any):
    """``custom_dataset`` for ScienceQA text-only test problems (split ``test``)."""
    return _dataset_dict({"test": read_scienceqa(problems_file)})


def load_hhh(task_file: str, **_: Any):
    """``custom_dataset`` for one HHH subset (split ``test``)."""
    return _dataset_dict({"test": read_hhh(task_file)})


def scienceqa_doc_to_text(doc: dict[str, Any]) -> str:
    """``Context: <hint>\\nQuestion: <q>\\nA. <c0>\\nB. <c1>\\n...Answer:`` (context if a hint)."""
    lines = [f"Context: {doc['hint'].strip()}"] if doc["hint"].strip() else []
    lines.append(f"Question: {doc['question'].strip()}")
    pairs = zip(doc["letters"], doc["choices"], strict=True)
    lines += [f"{letter}. {choice}" for letter, choice in pairs]
    return "\n".join(lines) + "\nAnswer:"
