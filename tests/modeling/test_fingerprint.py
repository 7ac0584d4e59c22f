"""The base fingerprint recorded in every eval summary (issue 17): the weights, exactly."""

from __future__ import annotations

from pathlib import Path

import torch

from bapo_exp.modeling.fingerprint import base_fingerprint, files_digest, tensors_digest
from bapo_exp.modeling.load import load_model
from bapo_exp.modeling.sources import resolve_model_path
from tests.modeling.conftest import tiny_cfg


def test_fingerprint_is_the_weights_to_the_last_bit(model_cache, tmp_path) -> None:
    cfg = tiny_cfg()
    digest = base_fingerprint(cfg, model_cache)
    model, _ = load_model(cfg, model_cache)
    assert digest == tensors_digest(model.named_parameters())  # file == memory, ties once
    assert base_fingerprint(cfg, model_cache) == digest  # the cached digest
    with torch.no_grad():
        w = next(model.parameters())
        w.view(-1)[7] = torch.nextafter(w.view(-1)[7], torch.tensor(float("inf")))  # 1 ulp
    assert tensors_digest(model.named_parameters()) != digest
    model.save_pretrained(tmp_path / "nudged")
    assert files_digest(sorted((tmp_path / "nudged").glob("*.safetensors"))) != digest
    folder = resolve_model_path(cfg, model_cache)
    assert files_digest(sorted(Path(folder).glob("*.safetensors"))) == digest
