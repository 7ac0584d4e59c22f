"""One launch per run directory (``bapo_exp.run.lock``): a second one is refused with the
holder named, and a holder that died (kill -9) leaves no stale lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bapo_exp.run.lock import LOCK, RunInUse, holder, run_lock


def test_a_second_holder_is_refused_with_the_first_one_named(tmp_path: Path) -> None:
    with run_lock(tmp_path):
        with pytest.raises(RunInUse, match=rf"in use by pid {os.getpid()} on .*, since "):
            with run_lock(tmp_path):
                pass  # pragma: no cover
    with run_lock(tmp_path):  # released at the end of the block
        pass
    assert (tmp_path / LOCK).read_text() == ""  # no holder recorded once it is free


def test_the_lock_is_released_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyError), run_lock(tmp_path):
        raise KeyError("a failing stage")
    with run_lock(tmp_path):
        pass


def test_a_holder_killed_with_sigkill_leaves_no_stale_lock(tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from bapo_exp.run.lock import "
            "run_lock\nwith run_lock(Path(sys.argv[1])):\n print('held', flush=True)\n "
            "time.sleep(600)")  # fmt: skip
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE,
                              env={**os.environ, "SLURM_JOB_ID": "4242"}, text=True)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunInUse, match=rf"pid {holder.pid} on .*, Slurm job 4242"):
            with run_lock(tmp_path):
                pass  # pragma: no cover
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    deadline = time.monotonic() + 10
    while True:  # the kernel drops the dead holder's lock
        try:
            with run_lock(tmp_path):
                break
        except RunInUse:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.1)


def test_holder_names_a_live_holder_and_creates_nothing(tmp_path: Path) -> None:
    assert holder(tmp_path) is None and not (tmp_path / LOCK).exists()
    with run_lock(tmp_path):
        assert holder(tmp_path).startswith(f"pid {os.getpid()} on ")
        with pytest.raises(RunInUse):  # asking did not take the lock away from its holder
            with run_lock(tmp_path):
                pass  # pragma: no cover
    assert holder(tmp_path) is None
