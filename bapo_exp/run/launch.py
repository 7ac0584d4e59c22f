"""What happens between Hydra handing over a config and the first stage (``main`` calls these).

1. ``launch_config``: a new run directory runs the composed config; an existing one runs its
   own saved config with this launch's run-independent overrides (``bapo_exp.run.relaunch``).
2. ``checked_config``: the method is required, then ``validate`` checks every setting and input
   file before any model is loaded. A failure in a new run directory removes it again (no empty
   ``runs/<name>/<stamp>``); a failure in an existing one leaves its files byte-identical
   (``main.log`` is not written until the checks pass).
3. ``run_stages``: each stage in order, skipping finished ones. A stage re-run with
   ``force=true`` moves its previous outputs aside and puts them back if it fails, so a failed
   re-evaluation never loses the old one.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bapo_exp.config import Config, typed_config
from bapo_exp.logs import drop_file_logging, run_file_handlers
from bapo_exp.readback import load_saved_config
from bapo_exp.run.relaunch import SAVED, RelaunchConflict, is_new_run, merge_saved
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.workers import is_worker

log = logging.getLogger("bapo_exp")


def user_errors() -> tuple[type[Exception], ...]:
    """Mistakes in the command or its inputs: one line, no traceback. Imported when an error
    is caught (``stages.evaluate`` imports torch, which ``--help`` and a grid's parent skip)."""
    from bapo_exp.data.validation import DataError
    from bapo_exp.readback import DamagedFileError
    from bapo_exp.run.validate import ConfigError
    from bapo_exp.stages.evaluate import MissingCheckpointError

    return (ConfigError, DataError, RelaunchConflict, MissingCheckpointError, DamagedFileError)


PREVIOUS = ".previous"  # <run>/.previous/<stage>/: a forced stage's old outputs while it re-runs


def launch_config(
    dcfg: DictConfig, run: RunDir, overrides: list[str]
) -> tuple[DictConfig, list[str] | None]:
    """``(config, changes)``: for a re-launch of ``run`` (it holds a saved config), the saved
    config merged with this launch's allowed overrides and what they changed; for a new run,
    the composed config and None."""
    saved = run.root / SAVED
    if is_new_run(run.root) or not saved.exists() or is_worker():  # a worker follows rank 0
        return dcfg, None
    with _quiet_run_log(run):
        merged, changes = merge_saved(load_saved_config(saved), dcfg, overrides, run.root)
    return typed_config(OmegaConf.to_container(merged, resolve=False)), changes


def typed(dcfg: DictConfig) -> Config:
    """The typed config of ``dcfg`` once a method is chosen and no value is missing."""
    from bapo_exp.run.validate import ConfigError

    if OmegaConf.is_missing(dcfg, "method"):
        from bapo_exp.run.usage import method_options

        raise ConfigError(f"choose a method: method=<name>, one of {method_options()} "
                          "(bapo-exp --help describes each)")  # fmt: skip
    if missing := OmegaConf.missing_keys(dcfg):
        raise ConfigError(f"missing config values: {sorted(missing)}")
    return OmegaConf.to_object(dcfg)


def typed_checked(dcfg: DictConfig) -> Config:
    """``typed``, then ``validate``: every setting and input file (module docstring)."""
    from bapo_exp.run.validate import validate

    cfg = typed(dcfg)
    validate(cfg)
    return cfg


def checked_config(dcfg: DictConfig, run: RunDir, changes: list[str] | None) -> Config:
    """The typed config after every check (see the module docstring)."""
    relaunch = changes is not None
    with _quiet_run_log(run):
        try:
            cfg = typed_checked(dcfg)
            from bapo_exp.stages.eval_window import check_window

            check_window(cfg, at_start=True)  # needs the tokenizer: in the job, not the sweeper
            if relaunch:
                _check_done_stages(cfg, run, changes)
            if "eval" in cfg.stages and (run.is_done("train") or cfg.eval.ckpt):
                from bapo_exp.stages.evaluate import at_step_checkpoints, checkpoint_of

                checkpoint_of(cfg, run)  # the models to evaluate exist (before any work)
                at_step_checkpoints(cfg, run)
        except Exception:
            if not relaunch:
                _remove_fresh(run)
            raise
    return cfg


def _check_done_stages(cfg: Config, run: RunDir, changes: list[str]) -> None:
    """A finished eval stage is not silently kept when the launch asks for other eval settings."""
    from bapo_exp.run.validate import ConfigError

    asked = [c for c in changes if c.startswith("eval.") or c.startswith("eval:")]
    if asked and "eval" in cfg.stages and run.is_done("eval") and not cfg.force:
        raise ConfigError(
            f"the eval stage of {run.root} is done with other settings ({'; '.join(asked)}); "
            f"add force=true to re-evaluate (bapo-exp eval {run.root} ... does)"
        )
    for line in changes:
        log.info("re-launch of %s: %s", run.root, line)


@contextmanager
def _quiet_run_log(run: RunDir):
    """Keep ``main.log`` untouched while the checks run (restored after they pass; closed when
    the checks failed and removed the new run directory, whose ``main.log`` cannot be opened:
    a record logged to it would raise, e.g. in the multirun report's ``on_job_end``)."""
    top = logging.getLogger()
    files = run_file_handlers(run.root)
    for h in files:
        top.removeHandler(h)
    try:
        yield
    finally:
        for h in files:
            if run.root.is_dir():
                top.addHandler(h)
            else:
                h.close()


def _remove_fresh(run: RunDir) -> None:
    """Remove a run directory that holds nothing but what Hydra wrote for this launch."""
    leftovers = {p.name for p in run.root.iterdir()} - {".hydra", "main.log"}
    log_file = run.root / "main.log"
    if leftovers or (log_file.exists() and log_file.stat().st_size):
        return
    drop_file_logging(run.root)
    shutil.rmtree(run.root, ignore_errors=True)


def restore_interrupted(run: RunDir, stage: str, outputs: tuple[str, ...]) -> None:
    """A forced re-run killed mid-way left the old outputs aside: put them back."""
    aside = run.root / PREVIOUS / stage
    if not aside.is_dir() or run.is_done(stage):
        return
    log.warning("stage %s: a forced re-run was interrupted; restoring its previous outputs from "
                "%s", stage, aside)  # fmt: skip
    _swap_back(run, aside, outputs)


def _swap_back(run: RunDir, aside: Path, outputs: tuple[str, ...]) -> None:
    for name in outputs:
        shutil.rmtree(run.root / name, ignore_errors=True)
        if (aside / name).exists():
            (aside / name).rename(run.root / name)
    _drop_aside(run, aside)


def _drop_aside(run: RunDir, aside: Path) -> None:
    shutil.rmtree(aside, ignore_errors=True)
    with contextlib.suppress(OSError):  # not empty: another stage's outputs are aside
        (run.root / PREVIOUS).rmdir()


@contextmanager
def redo(run: RunDir, stage: str, outputs: tuple[str, ...]):
    """Move ``stage``'s finished outputs aside while it re-runs; back if it fails."""
    aside = run.root / PREVIOUS / stage
    shutil.rmtree(aside, ignore_errors=True)
    aside.mkdir(parents=True)
    for name in outputs:
        if (run.root / name).exists():
            (run.root / name).rename(aside / name)
    try:
        yield
    except BaseException:
        log.error("stage %s failed; its previous outputs are put back", stage)
        _swap_back(run, aside, outputs)
        raise
    _drop_aside(run, aside)
