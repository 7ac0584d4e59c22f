"""What checking a published folder costs (issue 26, ``bapo_exp/readback.py``).

    .venv/bin/python benchmarks/verify_cost.py [--mb 64 512]   # -> results/verify_cost.json

For a folder of one file of each size (random bytes, in the page cache as right after a save):
the manifest written at publish (every file hashed), the check on every read (sizes only,
after this process hashed it), and a full re-hash (first use in a process of a folder up to
``BAPO_VERIFY_HASH_MB``, a changed modification time, or a failed load). Wall and process CPU
seconds, and MB per CPU second: sha256 is CPU-bound, so the CPU figure holds on a busy machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import finish, machine, set_quick, stamp

from bapo_exp import readback


def timed(fn) -> tuple[float, float]:
    (w0, c0) = stamp()
    fn()
    (w1, c1) = stamp()
    return w1 - w0, c1 - c0


def measure(mb: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (folder / "model.safetensors").open("wb") as fh:
            for _ in range(mb):
                fh.write(os.urandom(1 << 20))
        publish = timed(lambda: readback.write_manifest(folder))
        readback.remember(folder)
        sizes = timed(lambda: readback.folder_problems(folder))
        full = timed(lambda: readback.folder_problems(folder, full=True))
    return {
        "mb": mb,
        "publish_wall_s": round(publish[0], 3), "publish_cpu_s": round(publish[1], 3),
        "read_sizes_wall_s": round(sizes[0], 5),
        "full_hash_wall_s": round(full[0], 3), "full_hash_cpu_s": round(full[1], 3),
        "mb_per_cpu_s": round(mb / full[1], 1) if full[1] > 0 else None,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--quick", action="store_true", help="one 16 MB folder")
    args = parser.parse_args()
    set_quick(args.quick)  # --quick writes into the scratch folder, never benchmarks/results/
    sizes = [16] if args.quick else args.mb
    payload = {"machine": machine(threads=1), "settings": {"quick": args.quick, "mb": sizes},
               "rows": [measure(mb) for mb in sizes]}  # fmt: skip
    columns = ["mb", "publish_wall_s", "read_sizes_wall_s", "full_hash_wall_s",
               "full_hash_cpu_s", "mb_per_cpu_s"]  # fmt: skip
    finish("verify_cost", payload, payload["rows"], columns)


if __name__ == "__main__":
    main()
