"""Extension points (issue 16): the synthetic world is a plug-in the rest does not need (its data
and model schemas included); a new method is a loss, a LossSpec and a config schema registered
from outside the package, and a new data source a schema, a builder and a conf option (issue
23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV, require_shared

pytestmark = pytest.mark.integration
SMALL = ["debug=tiny", "eval.suites=[hhh]", "eval.limit=2", "eval.gen_prompts=2", "train.steps=2"]

WITHOUT_SYNTHETIC = """
import importlib, pkgutil, sys
sys.modules["bapo_exp.synthetic"] = None  # the folder "deleted": every import of it fails
import bapo_exp
names = [m.name for m in pkgutil.walk_packages(bapo_exp.__path__, "bapo_exp.")
         if not m.name.startswith("bapo_exp.synthetic") and not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
from bapo_exp.data import DATASETS
from bapo_exp.plugins import load_plugins
assert load_plugins() == [] and DATASETS.get("synthetic") is None, DATASETS
print("imported", len(names), "modules")
sys.argv = ["bapo-exp", *sys.argv[1:]]
from bapo_exp.run.cli import main
main()
"""

HINGE_PLUGIN = '''
"""A test-only method: a hinge on the DPO margin, registered from outside the package."""
from dataclasses import dataclass

import torch
from hydra.core.config_store import ConfigStore

from bapo_exp.config import MethodConfig, register_method_schema
from bapo_exp.losses import LOSSES, LossSpec
from bapo_exp.losses.types import LossOutput


def hinge_loss(policy, reference, *, beta=0.1, label_smoothing=0.0, margin=1.0):
    z = beta * ((policy.chosen - reference.chosen) - (policy.rejected - reference.rejected))
    losses = torch.relu(margin - z)
    return LossOutput(losses, {"hinge/active": (losses > 0).to(z.dtype).detach()})


@dataclass
class HingeConfig(MethodConfig):
    name: str = "hinge"
    margin: float = 1.0


def register():
    LOSSES.register("hinge", LossSpec(hinge_loss))
    register_method_schema("hinge", HingeConfig)
    ConfigStore.instance().store(group="method", name="hinge", node=HingeConfig)
'''


def run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, env=env or SUBPROCESS_ENV, capture_output=True,
                          text=True, timeout=900)  # fmt: skip


def test_everything_but_the_synthetic_world_works_without_it(tmp_path: Path, tiny_cache) -> None:
    require_shared("dsp")
    script = tmp_path / "without_synthetic.py"
    script.write_text(WITHOUT_SYNTHETIC)
    out = run([sys.executable, str(script), *SMALL, "method=dpo",
               f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tiny_cache}"])  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "imported" in out.stdout
    assert (tmp_path / "run" / "eval" / "DONE").exists()
    # the synthetic data source's schema comes with the plug-in, as do the micro model source
    # and its schemas (the core model spec has no `micro`)
    unknown = run([sys.executable, str(script), "data=synthetic", "method=dpo",
                   f"hydra.run.dir={tmp_path / 'synth'}"])  # fmt: skip
    assert unknown.returncode != 0
    assert "Could not load 'schema/data/synthetic'" in unknown.stderr, unknown.stderr[-2000:]
    unknown = run([sys.executable, str(script), "data=dsp", "model=micro", "method=dpo",
                   f"hydra.run.dir={tmp_path / 'micro'}"])  # fmt: skip
    assert unknown.returncode != 0
    assert "Could not load 'schema/model/micro'" in unknown.stderr, unknown.stderr[-2000:]
    micro_ref = "method.references=[{name: m, source: micro, pretrained: m, micro: {steps: 5}}]"
    unknown = run([sys.executable, str(script), *SMALL, "method=mrpo", micro_ref,
                   f"hydra.run.dir={tmp_path / 'micro_ref'}"])  # fmt: skip
    assert unknown.returncode != 0
    assert "method.references[0].micro: Key 'micro' not in 'ModelSpec'" in unknown.stderr


ECHO_PLUGIN = '''
"""A test-only data source: its schema, its builder and a conf option, from outside the package."""
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore

from bapo_exp.config import DataConfig, register_data_schema
from bapo_exp.data import DATASETS, DatasetSpec
from bapo_exp.data.heterogeneity import SplitPools
from bapo_exp.data.types import PreferenceExample


@dataclass
class EchoDataConfig(DataConfig):
    name: str = "echo"
    n_queries: int = 8  # this source's own setting: the core schema does not know it
    word: str = "Echo"


def pair(cfg, i):
    return PreferenceExample(id=f"echo-{i}", prompt=f"What is item {i}?",
                             chosen=f"{cfg.word}: item {i} is a number.",
                             rejected=f"Item {i} is a number.", preference="echo",
                             source={"dataset": "echo"})


def build(cfg, *, data_root, cache_dir, load_writer=None):
    pairs = [pair(cfg, i) for i in range(cfg.n_queries)]
    half = cfg.n_queries // 2
    return SplitPools({"echo": pairs[:half]}, {"echo": pairs[half:]},
                      {"dataset": "echo", "n_queries": cfg.n_queries, "word": cfg.word})


def register():
    register_data_schema("echo", EchoDataConfig)
    DATASETS.register("echo", DatasetSpec(build))
    ConfigStore.instance().store(group="data", name="echo", node=EchoDataConfig)
'''


def plugin_env(tmp_path: Path, module: str, source: str) -> dict:
    """``SUBPROCESS_ENV`` with ``BAPO_PLUGINS=module``, written to ``tmp_path`` on the path."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    path = os.pathsep.join([str(tmp_path), SUBPROCESS_ENV.get("PYTHONPATH", "")])
    return {**SUBPROCESS_ENV, "BAPO_PLUGINS": module, "PYTHONPATH": path}


def test_a_data_source_registered_by_a_plugin_runs_end_to_end(tmp_path: Path, tiny_cache) -> None:
    require_shared("hhh_alignment")
    env = plugin_env(tmp_path, "echo_plugin", ECHO_PLUGIN)
    run_dir = tmp_path / "run"
    out = run([sys.executable, "-m", "bapo_exp", *SMALL, "data=echo", "data.n_queries=40",
               "data.word=Hello", "method=dpo", f"hydra.run.dir={run_dir}",
               f"paths.cache_dir={tiny_cache}"], env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "n_queries: 40" in saved and "word: Hello" in saved and "train_path" not in saved
    assert (run_dir / "eval" / "DONE").exists()
    assert "data echo: 16 train / 8 held-out pairs" in (run_dir / "main.log").read_text()
    # the source's own key is checked against its schema, with the key named
    typo = run([sys.executable, "-m", "bapo_exp", *SMALL, "data=echo", "data.n_querys=3",
                "method=dpo", f"hydra.run.dir={tmp_path / 'typo'}"], env)  # fmt: skip
    assert typo.returncode != 0 and "n_querys" in typo.stderr


def test_a_method_registered_by_a_plugin_runs_end_to_end(tmp_path: Path, tiny_cache) -> None:
    require_shared("dsp")
    env = plugin_env(tmp_path, "hinge_plugin", HINGE_PLUGIN)
    out = run(
        [
            sys.executable,
            "-m",
            "bapo_exp",
            *SMALL,
            "method=hinge",
            "method.margin=0.5",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.cache_dir={tiny_cache}",
        ],
        env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = [
        json.loads(x) for x in (tmp_path / "run/train/metrics.jsonl").read_text().splitlines()
    ]
    assert [m["step"] for m in metrics] == [1, 2] and "hinge/active" in metrics[0]
    assert metrics[0]["loss"] == pytest.approx(0.5)  # policy == reference at step 1: z = 0
    assert (tmp_path / "run" / "eval" / "DONE").exists()
