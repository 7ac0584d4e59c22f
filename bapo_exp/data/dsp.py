"""DSP: domain-specific preferences (Cheng et al. 2023, arXiv 2309.03126), official schema.

Each record is ``{"query": str, "responses": {academy, business, entertainment, literature,
normal}}``. For a target domain D the chosen response is ``responses[D]`` and each other
domain's response (plus ``normal`` with ``include_normal``, as in the official pair
conversion) is a rejected one. Splits are by query: with ``data.train_path`` (the official
train file) the official test file is the held-out set; otherwise the test file's queries are
split with ``data.split_seed`` / ``data.heldout_frac``.

    python -m bapo_exp method=dpo data=dsp data.preferences=[academy,business]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bapo_exp.config import DataConfig
from bapo_exp.data.heterogeneity import SplitPools, split_groups
from bapo_exp.data.io import read_records, resolve_path
from bapo_exp.data.types import PreferenceExample
from bapo_exp.data.validation import (
    DataError,
    check_preferences,
    require_known,
    require_mapping,
    require_str,
)

log = logging.getLogger(__name__)

DOMAINS = ("academy", "business", "entertainment", "literature")
RESPONSE_KEYS = (*DOMAINS, "normal")
DEFAULT_PATH = "dsp/domain_specific_preference.test.json"


@dataclass(frozen=True)
class Query:
    """One validated DSP record."""

    index: int
    query: str
    responses: dict[str, str]


def read_dsp(path: Path, used: set[str], *, allow_empty: bool) -> list[Query]:
    """Read and validate a DSP file.

    Args:
        path: official-schema JSON list.
        used: response keys the requested pairs use; blank strings there are errors unless
            ``allow_empty`` (then the pairs are dropped and counted later).
        allow_empty: ``data.empty_responses == "drop"``.
    Raises:
        DataError: naming file, record index and field.
    """
    out = []
    for i, rec in enumerate(read_records(path)):
        rec = require_mapping(rec, path=path, index=i, field="<record>")
        query = require_str(rec, "query", path=path, index=i)
        if "responses" not in rec:
            raise DataError(f"{path}: record {i}, field 'responses': missing")
        resp = require_mapping(rec["responses"], path=path, index=i, field="responses")
        for key in resp:
            require_known(
                key, RESPONSE_KEYS, path=path, index=i, field=f"responses.{key}", kind="domain"
            )
        texts = {
            key: require_str(
                resp,
                key,
                path=path,
                index=i,
                field=f"responses.{key}",
                allow_empty=allow_empty or key not in used,
            )
            for key in RESPONSE_KEYS
        }
        out.append(Query(i, query, texts))
    return out


def make_pairs(
    queries: list[Query], preferences: list[str], *, include_normal: bool, tag: str, path: Path
) -> dict[str, list[PreferenceExample]]:
    """Pairs per target domain: chosen = the domain's answer, rejected = each other one."""
    by_pref: dict[str, list[PreferenceExample]] = {p: [] for p in preferences}
    for pref in preferences:
        rejected = [d for d in DOMAINS if d != pref] + (["normal"] if include_normal else [])
        for q in queries:
            for rej in rejected:
                by_pref[pref].append(
                    PreferenceExample(
                        id=f"dsp/{pref}/{tag}{q.index:05d}/{rej}",
                        prompt=q.query,
                        chosen=q.responses[pref],
                        rejected=q.responses[rej],
                        preference=pref,
                        source={
                            "dataset": "dsp",
                            "file": str(path),
                            "query_index": str(q.index),
                            "rejected_domain": rej,
                        },
                    )
                )
    return by_pref


def _split(
    cfg: DataConfig, test: list[Query], train: list[Query] | None
) -> tuple[list, list, dict]:
    """Train/held-out queries (never the same query text on both sides) and the split report."""
    if train is not None:
        heldout_texts = {q.query for q in test}
        kept = [q for q in train if q.query not in heldout_texts]
        note = {
            "method": "official",
            "n_train_queries": len(kept),
            "n_heldout_queries": len(test),
            "train_queries_dropped_as_in_test": len(train) - len(kept),
        }
        if len(kept) < len(train):
            log.warning(
                "DSP: dropped %d train queries that also occur in the test file",
                len(train) - len(kept),
            )
        return kept, test, note
    held = split_groups([q.query for q in test], heldout_frac=cfg.heldout_frac, seed=cfg.split_seed)
    train_q = [q for q in test if q.query not in held]
    heldout_q = [q for q in test if q.query in held]
    note = {
        "method": "by_query",
        "seed": cfg.split_seed,
        "heldout_frac": cfg.heldout_frac,
        "n_train_queries": len({q.query for q in train_q}),
        "n_heldout_queries": len(held),
        "note": "no official train file given (data.train_path): the test file's queries were "
        "split into train and held-out",
    }
    log.info(
        "DSP: no data.train_path; split the %d test queries by query (seed %d, heldout_frac %.3g): "
        "%d train / %d held out",
        len(test),
        cfg.split_seed,
        cfg.heldout_frac,
        note["n_train_queries"],
        len(held),
    )
    return train_q, heldout_q, note


def build(cfg: DataConfig, *, data_root: str, cache_dir: str, load_writer=None) -> SplitPools:
    """DSP pairs for ``cfg.preferences`` (empty = all four domains), split by query."""
    del cache_dir, load_writer  # DSP needs neither
    prefs = check_preferences(
        cfg.preferences, DOMAINS, kind="DSP domain", defined_in="bapo_exp.data.dsp"
    )
    used = set(DOMAINS) | ({"normal"} if cfg.include_normal else set())  # chosen or rejected
    policy = cfg.empty_responses
    if policy not in ("error", "drop"):
        raise DataError(f"data.empty_responses must be 'error' or 'drop', got {policy!r}")
    allow_empty = policy == "drop"
    test_path = resolve_path(cfg.path, data_root, DEFAULT_PATH)
    test = read_dsp(test_path, used, allow_empty=allow_empty)
    train_path = Path(cfg.train_path) if cfg.train_path else None
    train = read_dsp(train_path, used, allow_empty=allow_empty) if train_path else None
    train_q, heldout_q, split_note = _split(cfg, test, train)
    kw = {"include_normal": cfg.include_normal}
    pools = SplitPools(
        train=make_pairs(
            train_q, prefs, tag="train-q" if train_path else "q", path=train_path or test_path, **kw
        ),
        heldout=make_pairs(heldout_q, prefs, tag="q", path=test_path, **kw),
    )
    pools.report = {
        "dataset": "dsp",
        "files": [str(p) for p in (train_path, test_path) if p],
        "preferences": prefs,
        "include_normal": cfg.include_normal,
        "n_queries": len(test) + (len(train) if train else 0),
        "split": split_note,
    }
    return pools
