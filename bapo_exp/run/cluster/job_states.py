"""Job states for submitit on a Slurm cluster without accounting.

submitit asks ``sacct`` for the state of every job it waits for. Without an accounting database
(``AccountingStorageType=accounting_storage/none``, as in ``scripts/local_slurm.sh``) every call
fails and submitit logs "Bypassing sacct error ... status may be inaccurate" at each poll; worse,
a job that ends without a result file (``scancel``, a node failure) then stays ``UNKNOWN`` and
the launcher waits for it forever. ``squeue --states=all`` answers the same question from
slurmctld's memory, which keeps finished jobs for ``MinJobAge`` seconds (default 300; the local
cluster keeps them a day). The launcher switches to it only when accounting is off.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterable
from functools import lru_cache

from submitit.slurm.slurm import SlurmInfoWatcher

log = logging.getLogger(__name__)
SACCT_HEADER = "JobID|State|NodeList"  # the columns submitit asks sacct for


@lru_cache(maxsize=1)
def accounting_enabled() -> bool:
    """False when slurmctld reports ``AccountingStorageType = accounting_storage/none``.

    If ``scontrol`` cannot answer, accounting is assumed on (submitit's default behaviour).
    """
    try:
        out = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return True
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() not in ("accounting_storage/none", "(null)", "")
    return True


class SqueueInfoWatcher(SlurmInfoWatcher):
    """submitit's Slurm watcher, asking ``squeue --states=all`` instead of ``sacct``.

    squeue's ``%i|%T|%N`` columns are sacct's ``JobID|State|NodeList`` with the same job-id
    forms (``12_3``, ``12_[4-7]``) and state names, so submitit's parser reads them unchanged.
    A job id squeue no longer knows (older than ``MinJobAge``) is reported ``COMPLETED``: the
    launcher then looks for its result file and, without one, names the cell as unfinished.
    """

    def _make_command(self) -> list[str] | None:
        ids = sorted({x.split("_")[0] for x in self._registered - self._finished})
        if not ids:
            return None
        return ["squeue", "--states=all", "--noheader", "-o", "%i|%T|%N", "-j", ",".join(ids)]

    def update(self) -> None:
        """One squeue call for every unfinished job (submitit's ``update`` with squeue's errors).

        squeue fails with "Invalid job id specified" when no asked id is known any more: that
        is an empty answer, not an error.
        """
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as err:
            log.warning("squeue failed (%s); job states may be stale", err)
        else:
            if proc.returncode == 0 or "Invalid job id" in proc.stderr:
                self._output = proc.stdout.encode()
                self._info_dict.update(self.read_info(proc.stdout))
            else:
                log.warning("squeue failed (%s); job states may be stale", proc.stderr.strip())
        self._last_status_check = time.time()
        for job_id in self._registered - self._finished:
            if self.is_done(job_id, mode="cache"):
                self._finished.add(job_id)

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        text = string.decode() if isinstance(string, bytes) else string
        info = super().read_info(f"{SACCT_HEADER}\n{text}")
        for job_id in self._registered - self._finished - set(info):
            info[job_id] = {"JobID": job_id, "State": "COMPLETED", "NodeList": ""}
        return info


def use_squeue_without_accounting(jobs: Iterable, delay_s: float = 60.0) -> bool:
    """Give ``jobs`` (submitit SlurmJobs) a squeue watcher if the cluster has no accounting.

    Returns whether it did. One watcher serves all jobs (one squeue call per poll); polls come
    at most every ``delay_s`` seconds, sooner while the jobs are young (submitit's schedule).
    """
    if accounting_enabled():
        return False
    watcher = SqueueInfoWatcher(delay_s=delay_s)
    for job in jobs:
        job.watcher = watcher
    log.info("Slurm accounting is off: job states come from squeue --states=all")
    return True
