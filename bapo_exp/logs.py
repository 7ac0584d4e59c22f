"""Console versus ``main.log``: the file gets every record, the console only this package's
progress (stage start/done, the result table) and every warning. lm-eval's and transformers'
INFO chatter (thousands of lines per grid) goes to ``main.log`` only.

Used by ``conf/hydra/job_logging/bapo.yaml`` (``hydra/job_logging=bapo``, the default).
"""

from __future__ import annotations

import logging
from pathlib import Path

CONSOLE_INFO = ("bapo_exp",)  # loggers whose INFO records reach the console


class ConsoleFilter(logging.Filter):
    """Pass warnings and errors from everyone, INFO only from ``CONSOLE_INFO`` loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.split(".")[0] in CONSOLE_INFO


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
