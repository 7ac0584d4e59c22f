"""Console versus ``main.log``: the file gets every record, the console only this package's
progress (stage start/done, the result table) and every warning. lm-eval's and transformers'
INFO chatter (thousands of lines per grid) goes to ``main.log`` only.

Used by ``conf/hydra/job_logging/bapo.yaml`` (``hydra/job_logging=bapo``, the default).
"""

from __future__ import annotations

import logging

CONSOLE_INFO = ("bapo_exp",)  # loggers whose INFO records reach the console


class ConsoleFilter(logging.Filter):
    """Pass warnings and errors from everyone, INFO only from ``CONSOLE_INFO`` loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return record.name.split(".")[0] in CONSOLE_INFO
