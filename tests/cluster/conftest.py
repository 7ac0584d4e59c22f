"""A one-node Slurm for the launcher tests, started with ``scripts/local_slurm.sh``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "local_slurm.sh"


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """The partition of a running local Slurm; started (and stopped) here if it was not running.

    Skips with the reason when it cannot start: not root (the daemons run as root and the
    packages are installed with apt-get), or the script failed (its output is in the reason).
    """
    partition = os.environ.get("BAPO_SLURM_PARTITION", "local")
    running = subprocess.run([SCRIPT, "status"], capture_output=True).returncode == 0
    if not running:
        if os.geteuid() != 0:
            pytest.skip(
                "no local Slurm running and starting one needs root (scripts/local_slurm.sh)"
            )
        out = subprocess.run([SCRIPT, "start"], capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            pytest.skip(f"scripts/local_slurm.sh start failed: {(out.stdout + out.stderr)[-1500:]}")
    yield partition
    if not running:
        subprocess.run([SCRIPT, "stop"], capture_output=True, timeout=120)
