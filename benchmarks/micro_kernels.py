"""Why the micro base differs between machines: the same pretraining under other kernel settings.

    .venv/bin/python benchmarks/micro_kernels.py [--steps 200]   -> benchmarks/results/kernels.json
    .venv/bin/python benchmarks/micro_kernels.py --quick  # native and portable, 3 steps (smoke)

(Not ``kernels.py``: a script's folder is first on ``sys.path``, and ``kernels`` is the package
transformers imports for its hub kernels.)

Each setting pretrains the default micro base (``steps`` steps, native kernels inside a fresh
process with the setting's environment, so torch picks its kernels as a machine of that kind
would) and prints the weights' fingerprint and the CPU time. Equal fingerprints: the setting does
not change the numerics here; different ones: it does (docs/REPRODUCIBILITY.md). The last setting
is ``kernels=portable``'s (``PORTABLE_ENV``), run twice.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import results_dir, set_quick  # benchmarks/common.py (scripts run from here)

from bapo_exp.synthetic.pretrain import PORTABLE_ENV

SETTINGS = {
    "native": {},
    "native again": {},
    "ATEN_CPU_CAPABILITY=avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "ATEN_CPU_CAPABILITY=default": {"ATEN_CPU_CAPABILITY": "default"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "2 threads": {"OMP_NUM_THREADS": "2", "BAPO_THREADS": "2"},
    "portable": PORTABLE_ENV,
    "portable again": PORTABLE_ENV,
}
CHILD = """
import os, resource, sys, json, dataclasses
import torch
from bapo_exp.modeling.fingerprint import files_digest
from bapo_exp.synthetic import MicroTrainConfig, WorldConfig, ensure_micro_base, micro_model_config
train = MicroTrainConfig(steps=int(sys.argv[1]), kernels="native", progress=False,
                         threads=int(os.environ.get("BAPO_THREADS", "1")))
out = ensure_micro_base(WorldConfig(), micro_model_config(), train, sys.argv[2])
usage = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"digest": files_digest(sorted(out.glob("*.safetensors"))),
                  "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


def run(env: dict, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(steps), cache],
                             env={**os.environ, **env}, capture_output=True, text=True,
                             check=True)  # fmt: skip
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["wall_s"] = round(time.perf_counter() - t0, 1)
        row["cpu_s"] = round(row["cpu_s"], 1)
        return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--out", type=Path, default=None, help="default: <results>/kernels.json")
    p.add_argument("--quick", action="store_true", help="native and portable, 3 steps")
    args = p.parse_args()
    set_quick(args.quick)
    args.out = args.out or results_dir() / "kernels.json"
    settings = {k: SETTINGS[k] for k in ("native", "portable")} if args.quick else SETTINGS
    if args.quick:
        args.steps = 3
    load = os.getloadavg()[0]
    rows = {}
    for name, env in settings.items():
        rows[name] = {"env": env, **run(env, args.steps)}
        print(f"{name:<30} {rows[name]['digest'][7:23]}  cpu {rows[name]['cpu_s']:6.1f} s  "
              f"({rows[name]['cpu_capability']})", flush=True)  # fmt: skip
    native = rows["native"]["digest"]
    result = {"steps": args.steps, "load_avg_1min": load, "settings": rows,
              "same_as_native": {k: v["digest"] == native for k, v in rows.items()}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
