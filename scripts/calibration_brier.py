"""Knowledge and alignment Brier scores at every saved point of the study's calibration runs.

    python scripts/calibration_brier.py runs/study --neutral-only \
        --out results/study_calibration/brier.csv
    python scripts/calibration_brier.py --summarise results/study_calibration


The calibration (``make study-calibrate``) scored knowledge and alignment by accuracy only. This
re-scores the checkpoints it kept (``checkpoints/at_step_<N>`` and ``final``; the base model for
``method=none`` cells) on the same suites and items, in one process (the suites' tasks and
requests are built once), and writes one row per (cell, step): ``knowledge_brier``,
``alignment_brier`` and the accuracies beside them (which must equal the calibration's
``cells.csv``: the check that the same items and models were scored). Used once, to decide the
primary outcome's instrument before any test-base run (docs/STUDY_PROTOCOL.md, section 13).

``--summarise`` joins ``brier.csv`` to the calibration's ``cells.csv`` and writes
``brier_check.json``: per outcome (accuracy and 1 - Brier, knowledge and alignment), DPO's
forgetting over the x-range (the base's score minus the pooled control frontier's mean over
0.2-0.8: the most a perfect anchor could win back), BAPO(lambda*) minus that frontier per unit
and per base, and the minimum detectable effect at 10 test bases from the between-base spread
(protocol section 8) -- the check the review asked for.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import replace
from pathlib import Path

STEP = re.compile(r"at_step_(\d+)$")
KEYS = {
    "knowledge": "synthetic_knowledge/neutral/acc",
    "knowledge_brier": "synthetic_knowledge/neutral/brier",
    "alignment": "synthetic_alignment/acc",
    "alignment_brier": "synthetic_alignment/brier",
}


def points(run: Path, horizon: int) -> list[tuple[int, str | None]]:
    """(step, checkpoint) of a run; step 0 and no checkpoint for an untrained base."""
    ckpts = run / "checkpoints"
    if not ckpts.is_dir():
        return [(0, None)]
    out = [(int(m.group(1)), str(p)) for p in ckpts.iterdir() if (m := STEP.search(p.name))]
    if (ckpts / "final").is_dir():
        out.append((horizon, str(ckpts / "final")))
    return sorted(out)


def config_of(run: Path):
    from omegaconf import OmegaConf

    from bapo_exp.config import typed_config
    from bapo_exp.readback import load_saved_config

    saved = load_saved_config(run / ".hydra" / "config.yaml")
    return OmegaConf.to_object(typed_config(OmegaConf.to_container(saved, resolve=True)))


def summarise(folder: Path) -> dict:
    """``brier_check.json`` of a calibration folder holding ``cells.csv``, ``brier.csv`` and
    ``choice.json`` (see the module docstring)."""
    import json

    import pandas as pd

    from bapo_exp.analysis.claims import DPO_POOLED, _anchor
    from bapo_exp.analysis.frontier import fit, frontier_mean
    from bapo_exp.analysis.load import SKILLS, read_cells
    from bapo_exp.analysis.protocol import ALPHA, PLANNED_TEST_BASES, X_RANGE
    from bapo_exp.analysis.stats import mde
    from bapo_exp.analysis.verdicts import runs, units

    choice = json.loads((folder / "choice.json").read_text())
    cells = read_cells(folder / "cells.csv").drop(columns=[*SKILLS, *SKILLS.values()])
    brier = pd.read_csv(folder / "brier.csv")
    acc = cells.merge(brier, on=["cell", "step"], suffixes=("", "_rescored"))
    bad = acc[(acc["knowledge"] - acc["knowledge_rescored"]).abs() > 1e-9]
    if len(acc) != len(brier) or len(bad):
        raise SystemExit(f"brier.csv does not match cells.csv: {len(brier) - len(acc)} rows "
                         f"unmatched, {len(bad)} with another knowledge accuracy")  # fmt: skip
    for skill, b in SKILLS.items():
        acc[skill] = 1.0 - acc[b]
    weight = float(choice["anchor_weight"])
    where = (("lr", choice["lr"]), ("horizon", choice["horizon"]))
    out: dict = {"anchor_weight": weight, "units": int(acc.groupby(["base", "seed"]).ngroups),
                 "n_rescored_points": len(acc), "outcomes": {}}  # fmt: skip
    for metric in ("knowledge", "alignment", *SKILLS):
        pooled = runs(acc, DPO_POOLED + where)
        forget = []
        for _, g in pooled.groupby(["base", "seed"]):
            start = float(g.loc[g["step"] == 0, metric].iloc[0])
            forget.append(start - frontier_mean(fit(g["x"], g[metric]), X_RANGE))
        c = _anchor(choice, weight, metric, "P")
        c = replace(c, where_t=c.where_t + where, where_c=c.where_c + where,
                    reach_c=c.reach_c + where)  # fmt: skip
        u = units(c, acc)
        per_base = u.groupby("base")["value"].mean()
        out["outcomes"][metric] = {
            "dpo_forgetting_over_range": [round(float(v), 6) for v in forget],
            "gap_per_unit": [round(float(v), 6) for v in u["value"]],
            "gap_per_base": {int(k): round(float(v), 6) for k, v in per_base.items()},
            "sd_between_bases": round(float(per_base.std(ddof=1)), 6),
            "mde_at_test_bases": round(
                mde(float(per_base.std(ddof=1)), PLANNED_TEST_BASES, alpha=ALPHA / 5), 6
            ),  # fmt: skip
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="?", help="the calibration's grid folder")
    parser.add_argument("--out", type=Path, help="CSV to write")
    parser.add_argument(
        "--summarise",
        type=Path,
        metavar="FOLDER",
        help="write FOLDER/brier_check.json from its cells.csv and brier.csv",
    )
    parser.add_argument("--only", default="", help="regex: cells whose folder name matches")
    parser.add_argument(
        "--neutral-only",
        action="store_true",
        help="score the neutral wording's knowledge subjects only (the outcome's)",
    )
    args = parser.parse_args(argv)
    if args.summarise:
        import json

        check = summarise(args.summarise)
        (args.summarise / "brier_check.json").write_text(json.dumps(check, indent=1) + "\n")
        sys.stdout.write(json.dumps(check, indent=1) + "\n")
        return 0
    if args.runs is None or args.out is None:
        parser.error("give the runs folder and --out (or --summarise FOLDER)")

    from tqdm import tqdm

    from bapo_exp.evaluation.harness import SuiteSession
    from bapo_exp.evaluation.summary import flatten
    from bapo_exp.run.register import register_configs
    from bapo_exp.stages.evaluator import load_evaluated

    register_configs()
    runs = sorted(p for p in args.runs.iterdir() if (p / ".hydra" / "config.yaml").is_file()
                  and (p / "eval" / "DONE").exists() and re.search(args.only, p.name))  # fmt: skip
    if not runs:
        sys.exit(f"no finished runs under {args.runs}")
    cfg0 = config_of(runs[0])
    e = cfg0.eval
    subjects = [
        s
        for s in e.mmlu_subjects or []
        if not args.neutral_only or "_" not in s.removeprefix("world_")
    ] or None  # world_capitals, not world_capitals_concise
    session = SuiteSession(e.suites, cfg0.paths.data_root, limit=e.limit, batch_size=e.batch_size,
                           mmlu_subjects=subjects, mc_format=e.mc_format,
                           data=cfg0.data, cache_dir=cfg0.paths.cache_dir)  # fmt: skip
    todo = [(run, cfg, step, ckpt) for run in runs for cfg in [config_of(run)]
            for step, ckpt in points(run, cfg.train.steps)]  # fmt: skip
    rows = []
    for run, cfg, step, ckpt in tqdm(todo, desc="calibration points", unit="point"):
        if cfg.data.world != cfg0.data.world or cfg.eval.suites != e.suites:
            sys.exit(f"{run}: another world or suites than {runs[0]}: score them apart")
        model, tokenizer = load_evaluated(cfg, ckpt)
        flat = flatten(session.run(model, tokenizer))
        session.release()
        rows.append({"cell": run.name, "step": step, **{k: flat[v] for k, v in KEYS.items()}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["cell", "step", *KEYS])
        writer.writeheader()
        writer.writerows(rows)
    sys.stdout.write(f"{len(rows)} points -> {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
