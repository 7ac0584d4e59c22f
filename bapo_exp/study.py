"""The study's orchestration (docs/STUDY_PROTOCOL.md): calibrate, commit the choice, test.

    python -m bapo_exp.study calibrate [--launcher L] [-- key=value ...]   # make study-calibrate
    python -m bapo_exp.study choose                                        # make study-choose
    python -m bapo_exp.study test [--launcher L] [-- key=value ...]        # make study

``calibrate`` pretrains the calibration bases, runs the regime grids, chooses the regime on them
(``analysis.study --calibrate`` into ``runs/study/results/calibration/``), runs the anchor,
control and mixing grids at that regime (given as overrides: ``conf/`` is not touched) and
chooses the anchor weight. It writes only under ``runs/study/``.

``choose`` is the one step that changes tracked files, like ``make results``: it copies that
calibration into ``results/study_calibration/`` and renders the presets every test grid uses
(``conf/experiment/study_regime.yaml``, ``conf/method/bapo_study.yaml``) from its
``choice.json``. Commit them, with the protocol, before the test run.

``test`` refuses unless the committed presets are what the committed, calibrated choice renders;
then it pretrains the test bases, runs the test grids (finished cells are skipped, so a re-run
resumes) and writes the verdicts into ``runs/study/results/`` (``make results`` commits them).
Each grid's multirun report is kept as ``runs/study/reports/<preset>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("runs/study")
CHOSEN = Path("results/study_calibration")
REGIME = ["study_calibrate_bases", "study_calibrate"]
ANCHOR = ["study_calibrate_anchor", "study_calibrate_control", "study_calibrate_mixing"]
TEST = ["study_bases", "study_dpo", "study_anchor", "study_anchor_next", "study_mixing",
        "study_mrpo", "study_mrpo_controls"]  # fmt: skip


def run(*args: str) -> int:
    sys.stdout.write("+ python " + " ".join(args) + "\n")
    sys.stdout.flush()
    return subprocess.run([sys.executable, *args]).returncode


def pretrain(presets: list[str], extra: list[str]) -> int:
    """Every micro base the grids need, ``nproc`` at once, before the grids (issue 24)."""
    procs = str(os.cpu_count() or 1)
    return run("-m", "bapo_exp.synthetic.bases", *presets, "--processes", procs, "--", *extra)


def grids(presets: list[str], launcher: str, extra: list[str]) -> int:
    """Each preset's grid into ``runs/study``; its report kept per preset; 1 if any failed."""
    rc = 0
    (ROOT / "reports").mkdir(parents=True, exist_ok=True)
    for preset in presets:
        rc |= run("-m", "bapo_exp", "-m", f"experiment={preset}",
                  f"hydra/launcher={launcher}", *extra) != 0  # fmt: skip
        if (ROOT / "multirun_report.json").exists():
            shutil.copy(ROOT / "multirun_report.json", ROOT / "reports" / f"{preset}.json")
    return rc


def regime_overrides(choice: dict) -> list[str]:
    """The chosen regime as overrides of the committed ``study_regime`` preset."""
    steps = [s for s in choice["eval_steps"] if s < choice["horizon"]]
    return [f"train.lr={choice['lr']:g}", f"train.steps={choice['horizon']}",
            f"eval.at_steps=[{','.join(map(str, steps))}]"]  # fmt: skip


def calibrate(args: argparse.Namespace) -> int:
    out = ROOT / "results"
    choose = ["-m", "bapo_exp.analysis.study", str(ROOT), "--calibrate", "--no-presets",
              "--out", str(out)]  # fmt: skip
    rc = pretrain(REGIME + ANCHOR, args.overrides)
    rc |= grids(REGIME, args.launcher, args.overrides)
    if run(*choose, "--no-figures"):
        return 2
    choice = json.loads((out / "calibration" / "choice.json").read_text())
    rc |= grids(ANCHOR, args.launcher, [*regime_overrides(choice), *args.overrides])
    return 2 if run(*choose) else rc


def write_choice(source: Path = ROOT / "results" / "calibration", repo: Path = Path(".")) -> list:
    """Copy the calibration into ``results/study_calibration/``, render the presets."""
    from bapo_exp.analysis.calibration import presets

    if not (source / "choice.json").exists():
        raise FileNotFoundError(f"{source}/choice.json: run `make study-calibrate` first")
    shutil.rmtree(repo / CHOSEN, ignore_errors=True)
    shutil.copytree(source, repo / CHOSEN)
    choice = json.loads((source / "choice.json").read_text())
    for rel, text in presets(choice).items():
        (repo / rel).write_text(text)
    return [repo / CHOSEN, *(repo / rel for rel in presets(choice))]


def check_choice(repo: Path = Path(".")) -> str | None:
    """Why the test grids must not run on the committed presets, or None."""
    from bapo_exp.analysis.calibration import presets

    path = repo / CHOSEN / "choice.json"
    if not path.exists():
        return f"{path} is missing: run `make study-calibrate`, then `make study-choose`"
    choice = json.loads(path.read_text())
    if choice.get("provisional"):
        return f"{path} is provisional: run `make study-calibrate`, then `make study-choose`"
    stale = [rel for rel, text in presets(choice).items() if (repo / rel).read_text() != text]
    if stale:
        return f"{', '.join(stale)} differ from what {path} renders: run `make study-choose`"
    return None


def test(args: argparse.Namespace) -> int:
    if (why := check_choice()) is not None:
        sys.stderr.write(f"error: {why}\n")
        return 2
    start = time.time()
    ours = ROOT / "results" / "calibration"
    shutil.rmtree(ours, ignore_errors=True)  # the committed choice is the one judged by
    shutil.copytree(CHOSEN, ours)
    if (CHOSEN / "deviations.md").exists():  # the lead's list (protocol section 13)
        shutil.copy(CHOSEN / "deviations.md", ROOT / "results" / "deviations.md")
    rc = pretrain(TEST, args.overrides)
    rc |= grids(TEST, args.launcher, args.overrides)
    wall = str(round(time.time() - start))
    rc |= run("-m", "bapo_exp.analysis.study", str(ROOT), "--out", str(ROOT / "results"),
              "--wall-seconds", wall) != 0  # fmt: skip
    minutes, seconds = divmod(int(wall), 60)
    sys.stdout.write(f"make study: {minutes} min {seconds} s\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("step", choices=["calibrate", "choose", "test"])
    p.add_argument("--launcher", default="local_joblib", help="hydra/launcher of every grid")
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    args = p.parse_args(argv[:cut])
    args.overrides = argv[cut + 1 :]  # key=value ... for every grid
    if args.step == "choose":
        for path in write_choice():
            sys.stdout.write(f"wrote {path}\n")
        return 0
    return calibrate(args) if args.step == "calibrate" else test(args)


if __name__ == "__main__":
    raise SystemExit(main())
