"""Aggregation over seeds (mean, standard error, n) and forgetting against the base model.

table = aggregate(df, by=["method.name", "data.preferences"], metrics=["eval/hhh/acc"])
"""

from __future__ import annotations

import math

import pandas as pd

BASE_METHOD = "none"  # method.name of the untrained base model's runs (the reference line)


def pick_metric(df: pd.DataFrame, candidates: list[str]) -> str:
    """The first candidate column that exists and holds at least one number."""
    for key in candidates:
        if key in df and pd.to_numeric(df[key], errors="coerce").notna().any():
            return key
    raise KeyError(f"none of {candidates} found in the runs' summaries")


def aggregate(
    df: pd.DataFrame, by: list[str], metrics: list[str], seed_col: str = "seed"
) -> pd.DataFrame:
    """Mean, standard error of the mean (ddof=1; NaN for one run) and count per group.

    Args:
        df: rows from :func:`bapo_exp.analysis.load_runs` (filter to complete runs first).
        by: the columns that define a cell, without the seed.
        metrics: numeric columns to aggregate.
        seed_col: listed per group as ``seeds`` (a check that seeds, not duplicates, were averaged).

    Returns:
        One row per group: ``by`` columns, ``<m>`` (mean), ``<m>_se``, ``<m>_n``, ``n``, ``seeds``.
    """
    missing = [c for c in [*by, *metrics] if c not in df]
    if missing:
        raise KeyError(f"columns not in the runs table: {missing}")
    rows = []
    for keys, group in df.groupby(by, dropna=False, sort=True):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys, strict=True))
        row["n"] = len(group)
        row["seeds"] = (
            ",".join(str(s) for s in sorted(group[seed_col])) if seed_col in group else ""
        )
        for m in metrics:
            values = pd.to_numeric(group[m], errors="coerce").dropna()
            n = len(values)
            row[m] = values.mean() if n else math.nan
            row[f"{m}_se"] = values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
            row[f"{m}_n"] = n
        rows.append(row)
    return pd.DataFrame(rows)


def base_scores(
    df: pd.DataFrame, metrics: list[str], match: tuple[str, ...] = ("model.name",)
) -> pd.DataFrame:
    """Mean score of the base-model runs (``method.name == "none"``) per ``match`` group."""
    base = df[df["method.name"] == BASE_METHOD]
    if base.empty:
        return pd.DataFrame(columns=[*match, *metrics])
    return base.groupby(list(match), dropna=False)[metrics].mean(numeric_only=True).reset_index()


def add_forgetting(
    df: pd.DataFrame, metrics: list[str], match: tuple[str, ...] = ("model.name",)
) -> pd.DataFrame:
    """Add ``forget/<m>`` = base score - score (positive = forgotten), base matched on ``match``.

    ``<m>`` loses its ``eval/`` prefix: ``eval/hhh/acc`` -> ``forget/hhh/acc``. Rows without a
    matching base run get NaN (the table says so rather than inventing a baseline).
    """
    base = base_scores(df, metrics, match).rename(columns={m: f"__base_{m}" for m in metrics})
    out = df.merge(base, on=list(match), how="left") if not base.empty else df.copy()
    for m in metrics:
        b = out.get(f"__base_{m}")
        name = "forget/" + m.removeprefix("eval/")
        out[name] = (b - pd.to_numeric(out[m], errors="coerce")) if b is not None else math.nan
    return out.drop(columns=[c for c in out if c.startswith("__base_")])
