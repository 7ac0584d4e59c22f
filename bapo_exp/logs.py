"""Console versus ``main.log``: the file gets every record; the console shows our progress (stage
start and done, re-launch changes, the result tables), our warnings and anyone's errors.
Everything else (lm-eval's and transformers' INFO and WARNING chatter, Python warnings of other
libraries, our modules' detail lines such as data counts and cache hits) goes to ``main.log``.

Used by ``conf/hydra/job_logging/bapo.yaml`` (``hydra/job_logging=bapo``, the default);
``quiet_libraries`` is called once per job (``main``).
"""

from __future__ import annotations

import logging
from pathlib import Path

# Loggers whose INFO records reach the console (exact names: our modules' own INFO lines are
# detail for main.log). "bapo_exp" is the entrypoint's (main, launch): stages, results, relaunch.
CONSOLE_INFO = ("bapo_exp", "bapo_exp.run.multirun", "bapo_exp.training.loop",
                "hydra_plugins.bapo_exp_launcher.slurm_launcher")  # fmt: skip
OURS = ("bapo_exp", "hydra_plugins.bapo_exp_launcher")  # our warnings reach the console


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OURS)


class ConsoleFilter(logging.Filter):
    """Errors from everyone; warnings from our loggers; INFO only from ``CONSOLE_INFO``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        if record.levelno >= logging.WARNING:
            return _ours(record.name)
        return record.name in CONSOLE_INFO


def quiet_libraries() -> None:
    """Send other libraries' Python warnings to the log (``py.warnings``: main.log only) and
    switch off transformers' progress bars ("Loading weights", "Writing model shards")."""
    logging.captureWarnings(True)
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency
        return
    hf_logging.disable_progress_bar()


def run_file_handlers(root: Path) -> list[logging.Handler]:
    """The root logger's handlers that write a file inside ``root`` (a run's ``main.log``)."""
    inside = Path(root).resolve()
    return [h for h in logging.getLogger().handlers
            if (name := getattr(h, "baseFilename", None))
            and Path(name).resolve().is_relative_to(inside)]  # fmt: skip


def drop_file_logging(root: Path) -> None:
    """Detach this process from the log files inside ``root``; stderr stays."""
    for handler in run_file_handlers(root):
        logging.getLogger().removeHandler(handler)
        handler.close()
