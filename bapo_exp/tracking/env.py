"""Environment snapshot written to ``env.json`` at the start of every run."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = [
    "bapo-exp", "torch", "transformers", "peft", "tokenizers", "lm-eval", "hydra-core",
    "omegaconf", "accelerate", "datasets", "wandb",
]  # fmt: skip


def _git(*args: str) -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "OMP_NUM_THREADS")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _device() -> dict[str, object]:
    """What decides float rounding on this machine (docs/REPRODUCIBILITY.md): the CPU, the
    kernels torch dispatches to, the BLAS build, the thread count and their environment."""
    import os

    import torch

    blas = [x.strip(" -") for x in torch.__config__.show().splitlines() if "Math Kernel" in x]
    info: dict[str, object] = {
        "cuda": torch.cuda.is_available(),
        "threads": torch.get_num_threads(),
        "cpu": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas[0] if blas else None,
        "kernel_env": {k: os.environ.get(k) for k in KERNEL_ENV},
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def env_snapshot() -> dict[str, object]:
    """Git SHA and dirty flag, package versions, device, host and command line."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "argv": sys.argv,
        "packages": _versions(),
        "device": _device(),
    }
