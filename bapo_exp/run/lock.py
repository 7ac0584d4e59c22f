"""One writer per run directory: a second launch of a run that is still running is refused.

    with run_lock(run.root):      # main.py, around the stages of a launch
        ...

Without it, re-launching a run (or a grid on Slurm) while its first launch still runs puts two
processes into one folder: both train into ``checkpoints/``, and the second one's
"restore an interrupted forced re-run" moves the first one's outputs away. The lock is an
``flock`` on ``<run>/.lock``, which holds who has it (host, pid, Slurm job, since when). The
kernel drops it when the holder exits however it ends (kill -9, a node's reboot on NFS), so a
dead launch never blocks the next one.

A filesystem without ``flock`` (Lustre mounted without ``-o flock``) cannot detect a second
launch: that is logged once per launch and the run goes on (design: refusing every run there
would make the tool unusable on such clusters).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
LOCK = ".lock"


class RunInUse(RuntimeError):
    """Another process is running stages in this run directory."""


def _holder() -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _describe(fd: int) -> str:
    try:
        who = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        who = {}
    if not who:
        return "another process"
    job = f", Slurm job {who['slurm_job_id']}" if who.get("slurm_job_id") else ""
    return f"pid {who.get('pid')} on {who.get('host')}{job}, since {who.get('since')}"


def holder(root: Path) -> str | None:
    """Who holds ``root``'s lock now (None: nobody, or no lock file); creates nothing. The Slurm
    launcher asks before submitting a cell, so a cell still running is not submitted twice."""
    try:
        fd = os.open(Path(root) / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(fd)
    except OSError:  # no locks on this filesystem: nothing can be known
        return None
    finally:
        os.close(fd)  # also releases the shared lock taken above
    return None


def _acquire(fd: int, root: Path) -> bool:
    """Take the lock without waiting: True when held, False on a filesystem without locks."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RunInUse(
            f"{root} is in use by {_describe(fd)}: a run directory takes one launch at a "
            "time. Wait for that launch to end (or stop it), then launch again; finished "
            "stages are skipped."
        ) from None
    except OSError as err:
        if err.errno not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOLCK):
            raise
        log.warning("no file locks on this filesystem (%s): a second launch of %s at the "
                    "same time would not be detected", err.strerror, root)  # fmt: skip
        return False
    return True


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold ``root``'s lock while the block runs.

    Raises:
        RunInUse: another live process holds it (named, with what to do).
    """
    fd = os.open(Path(root) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        held = _acquire(fd, root)
        if held:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        try:
            yield
        finally:
            if held:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
