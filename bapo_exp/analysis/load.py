"""Collect every run under a results folder into one tidy DataFrame (one row per run).

    from bapo_exp.analysis import load_runs
    df = load_runs("runs/fig5_drift")

A run is a folder holding ``.hydra/config.yaml`` (written by Hydra for every job). Its row is
the flattened config (``method.name``, ``data.preferences``, ``seed`` ...), then each stage's
``<stage>/summary.json`` as ``<stage>/<key>`` (``eval/hhh/acc``, ``train/loss``), then the
measured heterogeneity of METHODS §7 (``het/nll_distance``, ``het/ref_margin``,
``het/n_preferences``). What a run is comes from its files, never from its directory name.
Runs whose stages are not all done are kept with ``status == "incomplete"`` and the missing
stages listed in ``missing``; ``complete_only=True`` drops them after a warning.

``run_id`` is each run's identity (``bapo_exp.run.identity.run_identity``: the resolved config that
changes results). Two runs with one identity would be averaged as if they were two seeds, so
``load_runs`` refuses them (``DuplicateRunsError``, naming the folders) unless told to keep the
first complete one of each group (``duplicates="first"``, with a warning) or all of them.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import UnsupportedInterpolationType

from bapo_exp.readback import load_saved_config, read_json_file, read_jsonl_file

log = logging.getLogger(__name__)
CONFIG = Path(".hydra") / "config.yaml"
RUN_FILE_FIX = ("a run's own record, which cannot be rebuilt from its other files: restore it "
                "from a copy (W&B mirrors the run), re-run that stage with force=true, or leave "
                "the run out")  # fmt: skip


class DuplicateRunsError(ValueError):
    """Runs with the same identity (config that changes results) under one results folder."""


SUMMARY_STAGES = ("reference", "train", "eval")


def find_run_dirs(root: str | Path) -> list[Path]:
    """Folders under ``root`` (itself included) that hold ``.hydra/config.yaml``.

    Hidden folders other than ``.hydra`` (``.submitit``, ``.multirun``) are not searched.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"results folder not found: {root}")
    found = []
    for cfg in root.rglob("config.yaml"):
        rel = cfg.relative_to(root).parts
        if rel[-2:] != (".hydra", "config.yaml"):
            continue
        if any(p.startswith(".") for p in rel[:-2]):
            continue
        found.append(cfg.parent.parent)
    return sorted(found)


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> dotted keys. A list of scalars becomes a comma-joined string (hashable,
    readable in a legend: ``"academy,business"``); a list of dicts becomes its JSON text."""
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return {prefix: ",".join(str(v) for v in obj)}
        return {prefix: json.dumps(obj, sort_keys=True)}
    return {prefix: obj}


def _read_json(path: Path) -> Any:
    """A run's JSON file, checked: ``DamagedFileError`` (a ``ValueError``) names it."""
    return read_json_file(path, what="run file", fix=RUN_FILE_FIX)


@functools.cache
def _resolvers() -> None:
    """The resolvers a saved config may use (``${add:...}``, plug-ins' own), once per process."""
    from bapo_exp.plugins import load_plugins
    from bapo_exp.run.register import register_resolvers

    register_resolvers()
    load_plugins()


def _config(run_dir: Path, cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` (the run's saved config) as a plain dict, resolved."""
    _resolvers()
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except UnsupportedInterpolationType as err:
        if "hydra" not in str(err):  # ${hydra:...} only resolves inside Hydra: keep it as text
            raise ValueError(f"{run_dir / CONFIG}: {err}") from err
        return OmegaConf.to_container(cfg, resolve=False)  # type: ignore[return-value]


def heterogeneity(run_dir: Path) -> dict[str, float]:
    """Pair-weighted means over the preferences of ``reference/heterogeneity.json``."""
    path = run_dir / "reference" / "heterogeneity.json"
    if not path.exists():
        return {}
    per_pref = _read_json(path)
    total = sum(float(v.get("n_pairs", 0)) for v in per_pref.values())
    out: dict[str, float] = {"het/n_preferences": float(len(per_pref))}
    for key in ("nll_distance", "ref_margin"):
        pairs = [(float(v[key]), float(v.get("n_pairs", 0))) for v in per_pref.values() if key in v]
        if pairs and total > 0:
            out[f"het/{key}"] = sum(x * n for x, n in pairs) / total
    return out


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """One run's row: config columns, ``<stage>/<metric>`` columns, status."""
    from bapo_exp.run.identity import run_identity

    run_dir = Path(run_dir)
    saved = load_saved_config(run_dir / CONFIG)
    cfg = _config(run_dir, saved)
    row: dict[str, Any] = {"run_dir": str(run_dir), "run_id": run_identity(saved),
                           **flatten(cfg)}  # fmt: skip
    prefs = cfg.get("data", {}).get("preferences")
    if isinstance(prefs, list):
        row["data.n_preferences"] = len(prefs)
    refs = cfg.get("method", {}).get("references")
    row["method.n_references"] = 1 + len(refs) if isinstance(refs, list) else 1
    name = row.get("method.name")
    row["method.label"] = f"{name}-K{row['method.n_references']}" if refs else name
    for stage in SUMMARY_STAGES:
        path = run_dir / stage / "summary.json"
        if path.exists():
            for key, value in _read_json(path).items():
                row[f"{stage}/{key}"] = value
    row.update(heterogeneity(run_dir))
    stages = list(cfg.get("stages") or SUMMARY_STAGES)
    missing = [s for s in stages if not (run_dir / s / "DONE").exists()]
    row["status"] = "incomplete" if missing else "complete"
    row["missing"] = ",".join(missing)
    return row


def load_runs(
    root: str | Path, complete_only: bool = False, duplicates: str = "error"
) -> pd.DataFrame:
    """One tidy row per run under ``root`` (see the module docstring).

    Args:
        root: a results folder, e.g. ``runs/fig2_knowledge_retention``, or one run directory.
        complete_only: drop runs with a missing stage (they are logged first).
        duplicates: runs with one identity: ``error`` (raise ``DuplicateRunsError``), ``first``
            (keep the first complete one of each group, warn) or ``keep`` (warn only).

    Returns:
        DataFrame with ``run_dir``, ``run_id``, ``status``, ``missing``, config and metrics.
    """
    rows = [read_run(d) for d in find_run_dirs(root)]
    df = pd.DataFrame(rows, columns=None if rows else ["run_dir", "run_id", "status", "missing"])
    incomplete = df[df["status"] != "complete"]
    for _, r in incomplete.iterrows():
        log.warning("incomplete run (missing %s): %s", r["missing"], r["run_dir"])
    if complete_only:
        df = df[df["status"] == "complete"].reset_index(drop=True)
    return resolve_duplicates(df, duplicates)


def resolve_duplicates(df: pd.DataFrame, how: str = "error") -> pd.DataFrame:
    """Refuse, or merge loudly, rows with the same ``run_id`` (see ``load_runs``)."""
    if how not in ("error", "first", "keep"):
        raise ValueError(f"duplicates={how!r}; choose error, first or keep")
    groups = [g for _, g in df.groupby("run_id", sort=True) if len(g) > 1] if len(df) else []
    if not groups:
        return df
    text = "\n".join("  same run: " + ", ".join(g["run_dir"]) for g in groups)
    if how == "error":
        raise DuplicateRunsError(
            f"{len(groups)} run(s) appear more than once (equal configs; averaging them would "
            f"count one run as several seeds):\n{text}\nDelete the extra folders, or pass "
            "duplicates='first' (CLI: --duplicates first) to keep the first complete one."
        )
    log.warning("duplicate runs (%s):\n%s", how, text)
    if how == "keep":
        return df
    order = df.assign(_done=df["status"] != "complete").sort_values(["_done", "run_dir"])
    return order.drop_duplicates("run_id").drop(columns="_done").sort_index()


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """``train/metrics.jsonl`` of one run, one row per logged step (empty if none)."""
    path = Path(run_dir) / "train" / "metrics.jsonl"
    if not path.exists():
        return pd.DataFrame()
    return pd.DataFrame(read_jsonl_file(path, what="training metrics", fix=RUN_FILE_FIX))


def read_curve(run_dir: str | Path, row: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One run's evaluated points: ``eval/at_step/<N>/summary.json`` (``step`` N) and the final
    ``eval/summary.json`` (``step`` = the trained steps; 0 for an untrained model), each with the
    run's row (``row``, or :func:`read_run`) and ``eval/<metric>`` columns."""
    run_dir = Path(run_dir)
    row = read_run(run_dir) if row is None else row
    base = {k: v for k, v in row.items() if not k.startswith("eval/")}
    trained = row.get("train/total_steps")
    final = int(trained) if isinstance(trained, int | float) and trained == trained else 0
    points = [(final, run_dir / "eval" / "summary.json")]
    for path in (run_dir / "eval" / "at_step").glob("*/summary.json"):
        points.append((int(path.parent.name), path))
    out = []
    for step, path in sorted(points):
        if path.exists():
            metrics = {f"eval/{k}": v for k, v in _read_json(path).items()}
            out.append({**base, **metrics, "step": step})
    return out


def load_curves(root: str | Path, duplicates: str = "error") -> pd.DataFrame:
    """Every evaluated point of every complete run under ``root``: one row per (run, step)."""
    runs = load_runs(root, complete_only=True, duplicates=duplicates)
    rows = [point for row in runs.to_dict("records") for point in read_curve(row["run_dir"], row)]
    return pd.DataFrame(rows)


# --- The study's table (docs/STUDY_PROTOCOL.md): one row per (cell, evaluated step) ----------
KEYS = ["cell", "base", "role", "seed", "method", "step"]
DESIGN = ["method_name", "beta", "anchor_weight", "ctro_eps", "lr", "horizon", "exposure",
          "n_pairs", "preferences", "k_prefs"]  # fmt: skip
# column -> the summary keys it is read from, the first present wins (model-agnostic: the
# synthetic world's suites first, then the real ones; "_se" as the instrument writes it, then
# "_stderr" as the older suites do).
SOURCES: dict[str, tuple[str, ...]] = {
    "x": ("eval/gen/style_share", "eval/gen/win_rate"),
    "x_se": ("eval/gen/style_share_se", "eval/gen/style_share_stderr", "eval/gen/win_rate_stderr"),
    "x_n": ("eval/gen/n",),
    "x_base": ("eval/gen/base_style_share",),
    "well_formed": ("eval/gen/well_formed",),
    "logodds": ("eval/personal/style_logodds",),
    "logodds_se": ("eval/personal/style_logodds_se", "eval/personal/style_logodds_stderr"),
    "knowledge": ("eval/synthetic_knowledge/neutral/acc", "eval/mmlu/acc"),
    "knowledge_se": ("eval/synthetic_knowledge/neutral/acc_stderr", "eval/mmlu/acc_stderr"),
    "knowledge_n": ("eval/synthetic_knowledge/neutral/n",),
    "knowledge_all": ("eval/synthetic_knowledge/acc",),
    "alignment": ("eval/synthetic_alignment/acc", "eval/hhh/acc"),
    "alignment_se": ("eval/synthetic_alignment/acc_stderr", "eval/hhh/acc_stderr"),
    "alignment_n": ("eval/synthetic_alignment/n",),
    "knowledge_brier": ("eval/synthetic_knowledge/neutral/brier", "eval/mmlu/brier"),
    "alignment_brier": ("eval/synthetic_alignment/brier", "eval/hhh/brier"),
    "pref_acc": ("eval/personal/pref_acc",),
    "hard_margin": ("eval/personal/hard_margin",),
    "hard_margin_se": ("eval/personal/hard_margin_se", "eval/personal/hard_margin_stderr"),
    "hard_pref_acc": ("eval/personal/hard_pref_acc",),
    "ref_disagreement": (
        "eval/mrpo/ref_disagreement",
        "train/mrpo/ref_disagreement",
        "reference/mrpo/ref_disagreement",
    ),  # fmt: skip
    "distance": ("het/nll_distance",),
}
# The continuous retention measures: 1 - Brier score (higher is better, like the accuracies, so
# the frontier and loss code reads them as it reads accuracy; evaluation.summary defines Brier).
SKILLS = {"knowledge_skill": "knowledge_brier", "alignment_skill": "alignment_brier"}
METRICS = [*SOURCES, *SKILLS, "knowledge_pref", "clip_frac", "base_fingerprint"]
CELL_COLUMNS = [*KEYS, *DESIGN, *METRICS]
DEFAULT_BETA = 0.1  # labels name beta only when it differs (the methods' YAML default)


def method_label(row: dict[str, Any]) -> str:
    """``DPO``, ``DPO beta=0.05``, ``BAPO lambda=0.01``, ``MRPO eps=0.1``, ``base`` (the untrained
    model): a label per setting the study varies; settings at their default are not named."""
    name = row.get("method.name")
    if name == "none":
        return "base"
    parts = {"bapo": ["BAPO"], "mrpo": ["MRPO"], "dpo_rescaled": ["DPO rescaled"]}.get(
        name, [str(name).upper()]
    )
    if name == "bapo":
        parts.append(f"lambda={_num(row['method.anchor.weight'])}")
        if float(row.get("method.anchor.margin", 0) or 0):
            parts.append(f"margin={_num(row['method.anchor.margin'])}")
        for key, default in (("reduce", "sum"), ("type", "hinge"), ("prompts", "train")):
            if (value := row.get(f"method.anchor.{key}", default)) != default:
                parts.append(f"{key}={value}")
    if name in ("mrpo", "dpo_rescaled"):
        parts.append(f"eps={_num(row['method.ctro_eps'])}")
    beta = row.get("method.beta")
    if beta is not None and beta == beta and float(beta) != DEFAULT_BETA:
        parts.append(f"beta={_num(beta)}")
    return " ".join(parts)


def _num(value: Any) -> str:
    return f"{float(value):g}"


def base_of(row: dict[str, Any]) -> Any:
    """The replication unit's base: the micro (or tiny) model's seed; for a pretrained model,
    one base, the held-out split ``data.split_seed`` (docs/STUDY_PROTOCOL.md section 2)."""
    source = row.get("model.source")
    key = f"model.{source}.seed" if source in ("micro", "tiny") else "data.split_seed"
    value = row.get(key)
    return int(value) if value is not None and value == value else 0


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if (value := row.get(key)) is not None and not (
            isinstance(value, float) and value != value
        ):
            return value
    return None


def _clip_frac(run_dir: str) -> float:
    """MRPO's ``mrpo/clip_frac_1`` averaged over the logged training steps (NaN otherwise)."""
    metrics = load_metrics(run_dir)
    if "mrpo/clip_frac_1" not in metrics:
        return float("nan")
    return float(pd.to_numeric(metrics["mrpo/clip_frac_1"], errors="coerce").mean())


def cell_row(point: dict[str, Any], clip_frac: float = float("nan")) -> dict[str, Any]:
    """One evaluated point of :func:`read_curve` as a row of the study's table."""
    from bapo_exp.analysis.protocol import role

    prefs = str(point.get("data.preferences", ""))
    first = prefs.split(",")[0]
    exposure = _first(point, (f"model.micro.style_exposure.{first}",
                              f"data.world.style_exposure.{first}"))  # fmt: skip
    base = base_of(point)
    row = {
        "cell": Path(point["run_dir"]).name, "base": base, "role": role(base),
        "seed": int(point.get("seed", 0)), "method": method_label(point),
        "step": int(point["step"]), "method_name": point.get("method.name"),
        "beta": point.get("method.beta"), "anchor_weight": point.get("method.anchor.weight"),
        "ctro_eps": point.get("method.ctro_eps"), "lr": point.get("train.lr"),
        "horizon": point.get("train.steps"), "exposure": exposure,
        "n_pairs": point.get("data.n_train"), "preferences": prefs,
        "k_prefs": prefs.count(",") + 1 if prefs else 0,
    }  # fmt: skip
    row.update({col: _first(point, keys) for col, keys in SOURCES.items()})
    row.update(_skills(row))
    row["knowledge_pref"] = point.get(f"eval/synthetic_knowledge/{first}/acc")
    row["clip_frac"] = clip_frac
    row["base_fingerprint"] = point.get("eval/base_fingerprint")
    return row


def _skills(row: dict[str, Any]) -> dict[str, float]:
    """``SKILLS`` of a row: 1 - its Brier score (NaN where the run has none)."""
    out = {}
    for skill, brier in SKILLS.items():
        b = row.get(brier)
        ok = isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b)
        out[skill] = 1.0 - float(b) if ok else float("nan")
    return out


def load_cells(root: str | Path, duplicates: str = "error") -> pd.DataFrame:
    """The study's table from the run folders under ``root`` (every complete run)."""
    runs = load_runs(root, complete_only=True, duplicates=duplicates)
    rows = []
    for run in runs.to_dict("records"):
        clip = _clip_frac(run["run_dir"])
        rows.extend(cell_row(point, clip) for point in read_curve(run["run_dir"], run))
    out = pd.DataFrame(rows, columns=CELL_COLUMNS)
    return out.sort_values(KEYS[:1] + KEYS[3:]).reset_index(drop=True)


def read_cells(path: str | Path) -> pd.DataFrame:
    """``cells.csv`` (the committed source of the study's results), with the columns an older
    table lacks filled in: ``role`` from the base, ``method_name`` from the label, ``beta`` at
    its default, ``horizon`` as the run's last evaluated step; other new columns empty."""
    from bapo_exp.analysis.protocol import role

    df = pd.read_csv(path, dtype={"preferences": str, "base_fingerprint": str, "cell": str})
    if "role" not in df:
        df["role"] = df["base"].map(role)
    if "method_name" not in df:
        first = df["method"].str.split().str[0].str.lower()
        df["method_name"] = first.mask(df["method"].str.startswith("DPO resc"), "dpo_rescaled")
        df["method_name"] = df["method_name"].replace({"base": "none"})
    if "beta" not in df:
        df["beta"] = DEFAULT_BETA
    for col, pattern in (
        ("anchor_weight", r"lambda=([0-9.e-]+)"),
        ("ctro_eps", r"eps=([0-9.e-]+)"),
    ):
        if col not in df:
            df[col] = pd.to_numeric(df["method"].str.extract(pattern)[0], errors="coerce")
    if "horizon" not in df:
        df["horizon"] = df.groupby("cell")["step"].transform("max")
    for col in CELL_COLUMNS:
        if col not in df:
            df[col] = np.nan
    for skill, brier in SKILLS.items():
        df[skill] = df[skill].fillna(1.0 - pd.to_numeric(df[brier], errors="coerce"))
    return df[CELL_COLUMNS]
