"""Compare methods at matched generated personalisation, or at the same strength, within a base.

    from bapo_exp.analysis.matched import matched, paired_differences
    m = matched(curves, levels=[0.25, 0.5, 0.75], metrics=["knowledge"], by=["preference"])
    d = paired_differences(m, treatment="BAPO lambda=0.01", control="DPO")

``curves`` is long: one row per evaluated point of a training curve, with ``base`` (the base
model, the random factor), ``seed`` (data order within a base), ``method`` (label with its
setting), ``strength`` (position on the curve, e.g. step; the untrained base is strength 0),
the personalisation column ``x`` (generated style share) and metric columns. A *curve* is one
(by..., base, seed, method). Pairs are always formed within a (by..., base, seed).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

UNIT = ("base", "seed")
MATCHED_COLS = ("base", "seed", "method", "level", "metric", "value", "reached", "strength")
START = 0.0  # strength of the untrained base model, the first point of every curve


class LevelValue(NamedTuple):
    """``y`` where a curve first reaches an ``x`` level, and the strength it took."""

    value: float
    reached: bool
    strength: float


def value_at_level(
    strength: Sequence[float] | np.ndarray,
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    level: float,
) -> LevelValue:
    """``y`` at the first point where one curve's ``x`` reaches ``level``, linearly interpolated.

    Points are ordered by strength (the first one should be the untrained base, strength 0).
    If the first point already has ``x >= level`` its ``y`` is returned (reached at the start).
    Otherwise the first segment ``i`` with ``x[i] < level <= x[i+1]`` is taken, also on a
    non-monotone curve (a later crossing after a dip is ignored), and ``y`` and the strength are
    interpolated linearly in ``x`` on it. A curve that never gets there gives
    ``(nan, False, nan)``: "not reached". Points with a NaN ``x`` or strength are dropped (they
    cannot be placed); a NaN ``y`` at the crossing gives ``(nan, True, strength)``. Linear
    interpolation in ``x`` is ours (the issue says "interpolate").

    Args:
        strength, x, y: the curve's points, shape ``(P,)`` each, in any order.
        level: the ``x`` value to match.

    Returns:
        :class:`LevelValue` ``(value, reached, strength)``.
    """
    s, xs, ys = (np.asarray(a, dtype=float) for a in (strength, x, y))
    if not s.shape == xs.shape == ys.shape or s.ndim != 1:
        shapes = (s.shape, xs.shape, ys.shape)
        raise ValueError(f"strength, x, y must be 1-d of one length, got shapes {shapes}")
    keep = ~(np.isnan(s) | np.isnan(xs))
    order = np.argsort(s[keep], kind="stable")
    s, xs, ys = s[keep][order], xs[keep][order], ys[keep][order]
    if s.size == 0:
        return LevelValue(math.nan, False, math.nan)
    if np.any(np.diff(s) == 0):
        raise ValueError(f"two points of one curve share a strength: {s.tolist()}")
    if xs[0] >= level:
        return LevelValue(float(ys[0]), True, float(s[0]))
    hits = np.flatnonzero((xs[:-1] < level) & (level <= xs[1:]))
    if hits.size == 0:
        return LevelValue(math.nan, False, math.nan)
    i = hits[0]
    t = (level - xs[i]) / (xs[i + 1] - xs[i])  # x[i] < level <= x[i+1]: no division by 0
    return LevelValue(
        float(ys[i] + t * (ys[i + 1] - ys[i])), True, float(s[i] + t * (s[i + 1] - s[i]))
    )


def check_columns(df: pd.DataFrame, cols: Sequence[str], what: str) -> None:
    """KeyError naming the columns ``what`` needs and the table lacks."""
    missing = [c for c in cols if c not in df]
    if missing:
        raise KeyError(f"{what}: columns {missing} not in the table (has {list(df.columns)})")


def check_unique(df: pd.DataFrame, keys: Sequence[str], what: str) -> None:
    """ValueError naming the first key that appears on two rows."""
    dup = df.duplicated(list(keys), keep=False)
    if dup.any():
        first = dict(zip(keys, df.loc[dup, list(keys)].iloc[0].tolist(), strict=True))
        raise ValueError(
            f"{what}: several rows for {first}; add the column that tells them apart to `by` "
            "or filter the table first"
        )


def attach_base(
    df: pd.DataFrame, base_method: str, by: Sequence[str] = (), start: float = START
) -> pd.DataFrame:
    """Copy the untrained base's rows (``method == base_method``) into every other method's
    curve of the same (by..., base, seed), at strength ``start``; the base rows are dropped.

    For tables where the base model was evaluated once per (by..., base, seed) rather than
    repeated under each method. A method without a matching base row gets no start point.
    """
    keys = [*by, *UNIT]
    check_columns(df, [*keys, "method", "strength"], "attach_base")
    is_base = df["method"] == base_method
    if not is_base.any():
        raise ValueError(f"attach_base: no row has method == {base_method!r}")
    methods = df.loc[~is_base, [*keys, "method"]].drop_duplicates()
    copies = df[is_base].drop(columns="method").merge(methods, on=keys, how="inner")
    copies["strength"] = start
    return pd.concat([df[~is_base], copies[df.columns]], ignore_index=True)


def _prepare(
    df: pd.DataFrame, by: Sequence[str], cols: Sequence[str], base_method: str | None, what: str
) -> pd.DataFrame:
    check_columns(df, [*by, *UNIT, "method", "strength", *cols], what)
    if base_method is not None:
        df = attach_base(df, base_method, by)
    check_unique(df, [*by, *UNIT, "method", "strength"], what)
    return df


def _check_start(curve: pd.DataFrame, keys: dict[str, Any], start: float | None) -> None:
    if start is not None and not (curve["strength"] == start).any():
        raise ValueError(
            f"curve {keys} has no point at strength {start} (the untrained base); its first "
            f"point is at {curve['strength'].min()}. Add the base rows (see attach_base) or "
            "pass start=None"
        )


def matched(
    df: pd.DataFrame,
    levels: Sequence[float],
    metrics: Sequence[str],
    by: Sequence[str] = (),
    x: str = "x",
    start: float | None = START,
    base_method: str | None = None,
) -> pd.DataFrame:
    """Every curve's metrics at each personalisation level (:func:`value_at_level`).

    Args:
        df: the long curves table (module docstring).
        levels: ``x`` levels, e.g. ``[0.25, 0.5, 0.75]``.
        metrics: the ``y`` columns, e.g. ``["knowledge", "alignment"]``.
        by: extra columns that define a curve (``preference``, ``exposure`` ...), kept as keys.
        x: the personalisation column.
        start: every curve must have a point at this strength (the base): without it a level
            between the base's ``x`` and the first trained point would read as reached at the
            first trained point. ``None`` accepts curves as they are (ours: strict by default).
        base_method: if the base rows carry their own method label, copy them into every curve
            (:func:`attach_base`).

    Returns:
        One row per (by..., base, seed, method, level, metric): ``value``, ``reached`` and the
        interpolated ``strength`` at the crossing.
    """
    df = _prepare(df, by, [x, *metrics], base_method, "matched")
    keys = [*by, *UNIT, "method"]
    rows = []
    for key, curve in df.groupby(keys, sort=True, dropna=False):
        ids = dict(zip(keys, key, strict=True))
        _check_start(curve, ids, start)
        s, xs = curve["strength"].to_numpy(float), curve[x].to_numpy(float)
        for metric in metrics:
            ys = pd.to_numeric(curve[metric], errors="coerce").to_numpy(float)
            for level in levels:
                r = value_at_level(s, xs, ys, level)
                rows.append({**ids, "level": float(level), "metric": metric, **r._asdict()})
    return pd.DataFrame(rows, columns=[*by, *MATCHED_COLS])


def _status(value: pd.Series, reached: pd.Series | None) -> np.ndarray:
    """ "reached", "not reached" or "missing" (no curve, or no measured value at the point)."""
    if reached is None:
        return np.where(value.notna(), "reached", "missing")
    return np.select(
        [reached.isna(), ~reached.eq(True), value.isna()],
        ["missing", "not reached", "missing"],
        "reached",
    )


def _pair(
    table: pd.DataFrame, keys: list[str], treatment: str, control: str, cols: list[str]
) -> pd.DataFrame:
    present = set(table["method"])
    for label in (treatment, control):
        if label not in present:
            raise ValueError(f"method {label!r} not in the table (has {sorted(present, key=str)})")
    sides = [
        table.loc[table["method"] == label, [*keys, *cols]].rename(
            columns={c: f"{side}_{c}" for c in cols}
        )
        for side, label in (("treatment", treatment), ("control", control))
    ]
    out = sides[0].merge(sides[1], on=keys, how="outer", sort=True)
    out.insert(0, "treatment", treatment)
    out.insert(1, "control", control)
    out["diff"] = out["treatment_value"] - out["control_value"]
    return out


def paired_differences(
    matched_df: pd.DataFrame, treatment: str, control: str, by: Sequence[str] | None = None
) -> pd.DataFrame:
    """``treatment - control`` per (by..., base, seed, level, metric) from :func:`matched`.

    ``diff`` is NaN unless both sides reached the level with a measured value. Each side's
    ``*_status`` is ``"reached"``, ``"not reached"`` or ``"missing"`` (that method has no curve
    for the unit, or no measured value at the crossing), so "not reached" can be counted.

    Args:
        matched_df: output of :func:`matched`.
        treatment, control: method labels, e.g. ``"BAPO lambda=0.01"`` and ``"DPO"``.
        by: the extra key columns; default: every column of ``matched_df`` that is not one of
            :data:`MATCHED_COLS`.
    """
    by = [c for c in matched_df if c not in MATCHED_COLS] if by is None else list(by)
    check_columns(matched_df, [*by, *MATCHED_COLS], "paired_differences")
    keys = [*by, *UNIT, "level", "metric"]
    out = _pair(matched_df, keys, treatment, control, ["value", "reached", "strength"])
    for side in ("treatment", "control"):
        out[f"{side}_status"] = _status(out[f"{side}_value"], out.pop(f"{side}_reached"))
    return out


def paired_at_strength(
    df: pd.DataFrame,
    treatment: str,
    control: str,
    metrics: Sequence[str],
    by: Sequence[str] = (),
    strengths: Sequence[float] | None = None,
    start: float | None = START,
    base_method: str | None = None,
) -> pd.DataFrame:
    """``treatment - control`` at equal strength (no interpolation), per (by..., base, seed,
    strength, metric).

    Strengths are matched by exact equality (steps are integers). The start point (``start``,
    the shared untrained base) is left out: there the difference is 0 by construction (ours;
    ``start=None`` keeps it). ``strengths`` restricts the comparison to those values. A side
    without a row, or with a NaN metric, at a strength is ``"missing"`` and ``diff`` is NaN.
    """
    df = _prepare(df, by, metrics, base_method, "paired_at_strength")
    if start is not None:
        df = df[df["strength"] != start]
    if strengths is not None:
        df = df[df["strength"].isin(list(strengths))]
    long = df.melt(
        id_vars=[*by, *UNIT, "method", "strength"],
        value_vars=list(metrics),
        var_name="metric",
        value_name="value",
    )
    long["value"] = pd.to_numeric(long["value"], errors="coerce")
    out = _pair(long, [*by, *UNIT, "strength", "metric"], treatment, control, ["value"])
    for side in ("treatment", "control"):
        out[f"{side}_status"] = _status(out[f"{side}_value"], None)
    return out
