"""The benchmark scripts stay runnable (issue 22): no script shadows an installed package, and
every script's ``--quick`` mode runs (``benchmarks/run_all.sh --quick`` for the README's
performance benchmarks, the others one by one), writing only into a scratch folder.

``--quick`` is a smoke run of each script's whole code path on tiny models (SmolLM2 replaced by
the tiny test model with the same LoRA set-up); its numbers are not measurements."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SUBPROCESS_ENV, require_shared

BENCH = REPO / "benchmarks"
# run_all.sh's scripts: the README's table, the read-back cost and the study cell
RUN_ALL = {"mfu", "method_overhead", "dpo_vs_trl", "eval_throughput", "verify_cost", "study_cell"}
OTHERS = {"drift_bapo_vs_dpo": "drift_bapo_vs_dpo", "eval_baseline": "eval_baseline",
          "reference_stage": "reference_stage", "micro_kernels": "kernels",
          "synthetic_instrument": "synthetic_instrument"}  # fmt: skip


def quick_env(out: Path) -> dict[str, str]:
    return {**SUBPROCESS_ENV, "THREADS": "1", "TQDM_DISABLE": "1", "PY": sys.executable,
            "BAPO_BENCH_QUICK_OUT": str(out)}  # fmt: skip


def committed_results() -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (BENCH / "results").glob("*.json")}


def test_no_benchmark_module_shadows_an_installed_package() -> None:
    """``python benchmarks/x.py`` puts benchmarks/ first on sys.path: a module there named like
    an installed package (``kernels``, which transformers imports) breaks every script."""
    shadowing = {}
    for path in BENCH.glob("*.py"):
        spec = importlib.util.find_spec(path.stem)
        if spec is not None and spec.origin and Path(spec.origin).parent != BENCH:
            shadowing[path.name] = spec.origin
    assert not shadowing, f"benchmark modules shadow installed packages: {shadowing}"


def test_every_script_is_smoke_tested() -> None:
    scripts = {p.stem for p in BENCH.glob("*.py")} - {"common"}
    assert scripts == RUN_ALL | set(OTHERS), "add the new script to run_all.sh or OTHERS"
    for name in scripts:
        assert '"--quick"' in (BENCH / f"{name}.py").read_text(), f"{name}.py has no --quick"


@pytest.mark.integration
def test_run_all_quick_writes_what_the_readme_reads(tmp_path: Path) -> None:
    from bapo_exp.analysis.perf_report import markdown

    require_shared("hhh_alignment")
    before = committed_results()
    proc = subprocess.run(["bash", str(BENCH / "run_all.sh"), "--quick"], cwd=REPO,
                          env=quick_env(tmp_path), capture_output=True, text=True,
                          timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    written = {p.stem: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    assert set(written) == {"mfu", "method_overhead", "dpo_vs_trl", "dpo_vs_trl_smollm2",
                            "eval_throughput", "verify_cost", "study_cell"}  # fmt: skip
    assert all(r["settings"]["quick"] for r in written.values())
    table = markdown(tmp_path)  # the README's generator reads what the scripts write
    for row in ("step time over DPO's", "model FLOP utilisation", "eval scoring vs lm-eval",
                "greedy generation vs"):  # fmt: skip
        assert f"| {row}" in table, table
    assert committed_results() == before, "a quick run changed benchmarks/results/"


@pytest.mark.integration
@pytest.mark.parametrize("script", sorted(OTHERS))
def test_script_quick_mode_runs(script: str, tmp_path: Path) -> None:
    require_shared("dsp")
    before = committed_results()
    proc = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--quick"], cwd=REPO,
                          env=quick_env(tmp_path), capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert json.loads((tmp_path / f"{OTHERS[script]}.json").read_text())
    assert committed_results() == before, f"{script} --quick changed benchmarks/results/"
