"""Local readers for the evaluation suites, in their official schemas (no hub access).

lm-eval imports this file through ``!function utils.<name>`` in the task templates beside it;
``bapo_exp.evaluation.harness`` imports it as a module to discover subjects and subsets.

Layout under a data root (the shared folder or the synthetic world's own root)::

    mmlu/data/{test,dev}/<subject>_{test,dev}.csv   no header: question,A,B,C,D,answer
    mmlu/subject_categories.json                    subject -> category (optional)
    scienceqa/problems.json | problems.test_textonly.pid_le_1773.json
    hhh_alignment/bigbench/<subset>/task.json       BIG-bench: examples[{input, target_scores}]

Every reader validates what it reads and raises ``DataError`` naming the file, the record
(MMLU: CSV line; ScienceQA: pid; HHH: example index) and the field; the eval stage runs the
readers over every configured file before any model is loaded (``evaluation.suites``).

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

from bapo_exp.data.io import read_json
from bapo_exp.data.validation import DataError, record_error

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


def lm_eval_mmlu_categories(subjects: list[str]) -> dict[str, str]:
    """Subject -> lm-eval's category (``stem``, ``humanities``, ``social_sciences``, ``other``),
    read from the installed lm-eval's own ``mmlu_<subject>.yaml`` tags, so ``mmlu/<category>``
    matches the community's lm-eval numbers (hendrycks' file puts e.g. anatomy under other,
    lm-eval under stem). Subjects lm-eval does not know go to ``uncategorized``, with a warning.
    """
    from importlib.resources import files

    folder = files("lm_eval.tasks") / "mmlu" / "default"
    out, missing = {}, []
    for subject in subjects:
        path = folder / f"mmlu_{subject}.yaml"
        tag = None
        if path.is_file():
            tag = re.search(r'"?tag"?:\s*"?mmlu_(\w+?)_tasks', path.read_text())
        if tag is None:
            missing.append(subject)
        out[subject] = tag.group(1) if tag else UNCATEGORIZED
    if missing:
        log.warning("MMLU subjects lm-eval does not categorise: %s", missing)
    return out


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
    """Rows of one MMLU CSV as ``{question, choices[4], answer: int}``.

    Raises:
        DataError: naming the file, the CSV line and the column.
    """
    docs = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for row in reader:
            line = reader.line_num
            if not row:
                continue
            if len(row) != len(MMLU_COLUMNS):
                raise DataError(f"{path}: line {line}: {len(row)} columns, want "
                                f"{len(MMLU_COLUMNS)} {MMLU_COLUMNS}")  # fmt: skip
            answer = row[5].strip()
            if answer not in LETTERS[:4]:
                raise DataError(f"{path}: line {line}, column 'answer': {answer!r} is not one "
                                "of A, B, C, D")  # fmt: skip
            docs.append({"question": row[0], "choices": row[1:5], "answer": LETTERS.index(answer)})
    return docs


def _scienceqa_doc(path: Path, pid: str, prob: Any) -> dict[str, Any]:
    if not isinstance(prob, dict):
        raise DataError(f"{path}: problem {pid!r}: expected an object")
    for key in ("question", "choices", "answer"):
        if key not in prob:
            raise DataError(f"{path}: problem {pid!r}, field {key!r}: missing")
    choices = prob["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise DataError(f"{path}: problem {pid!r}, field 'choices': expected a list of at least "
                        f"2 options, got {choices!r}")  # fmt: skip
    answer = prob["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise DataError(f"{path}: problem {pid!r}, field 'answer': {answer!r} is not an index of "
                        f"its {len(choices)} choices")  # fmt: skip
    return {
        "pid": str(pid),
        "question": str(prob["question"]),
        "hint": prob.get("hint") or "",
        "choices": [str(c) for c in choices],
        "letters": list(LETTERS[: len(choices)]),
        "answer": answer,
        "subject": prob.get("subject", ""),
        "grade": prob.get("grade", ""),
    }


def read_scienceqa(path: str | Path) -> list[dict[str, Any]]:
    """Text-only test problems (``image`` null, ``split`` test when given), ordered by pid.

    Raises:
        DataError: naming the file, the problem id and the field.
    """
    path = Path(path)
    problems = read_json(path)
    if not isinstance(problems, dict):
        raise DataError(f"{path}: expected an object of problems keyed by pid")
    docs = []
    for pid in sorted(problems, key=lambda p: int(p) if p.isdigit() else p):
        prob = problems[pid]
        if isinstance(prob, dict) and (prob.get("image") or prob.get("split", "test") != "test"):
            continue
        docs.append(_scienceqa_doc(path, pid, prob))
    return docs


def _permutation(key: str, n: int) -> list[int]:
    seed = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order


def _hhh_scores(path: Path, i: int, ex: Any) -> dict[str, float]:
    if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
        raise record_error(path, i, "input", "missing or not a string")
    scores = ex.get("target_scores")
    if not isinstance(scores, dict) or len(scores) < 2:
        raise record_error(path, i, "target_scores", "expected an object of at least 2 responses")
    try:
        values = {str(k): float(v) for k, v in scores.items()}
    except (TypeError, ValueError):
        raise record_error(path, i, "target_scores", "scores must be numbers") from None
    best = max(values.values())
    if best <= 0 or list(values.values()).count(best) != 1:
        raise record_error(path, i, "target_scores", f"needs exactly one correct response (one "
                           f"highest score > 0), got {sorted(values.values())}")  # fmt: skip
    return values


def read_hhh(path: str | Path) -> list[dict[str, Any]]:
    """BIG-bench ``task.json`` items as ``{prompt, choices, label, scores}``.

    ``prompt`` uses the file's ``example_input_prefix``/``example_output_prefix`` (BIG-bench:
    ``"\\nHuman: "``, ``"\\nAssistant:"``), left-stripped. ``label`` is the index (in the permuted
    ``choices``) of the response with the highest target score.

    Raises:
        DataError: naming the file, the example index and the field (an item without exactly
            one correct response is rejected, never scored as a silent 0).
    """
    path = Path(path)
    task = read_json(path)
    if not isinstance(task, dict) or not isinstance(task.get("examples"), list):
        raise DataError(f"{path}: field 'examples': missing or not a list")
    in_prefix = task.get("example_input_prefix", "\nHuman: ")
    out_prefix = task.get("example_output_prefix", "\nAssistant:")
    docs = []
    for i, ex in enumerate(task["examples"]):
        target = _hhh_scores(path, i, ex)
        responses = list(target)
        order = _permutation(ex["input"] + "\0" + "\0".join(responses), len(responses))
        choices = [responses[j] for j in order]
        scores = [target[c] for c in choices]
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
