"""The registry contract between ``bapo_exp.config`` method schemas and the loss functions."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest
import torch

from bapo_exp.config import METHOD_SCHEMAS
from bapo_exp.losses import LOSSES, AnchorLogps, LossOutput, PairLogps, get_loss

METHODS = sorted(set(METHOD_SCHEMAS) - {"none"})
DATA_ARGS = {"policy", "reference", "references", "anchors"}


def test_every_trainable_method_has_a_loss():
    assert {n for n, spec in LOSSES.items() if spec.trains} == set(METHODS)


@pytest.mark.parametrize("method", METHODS)
def test_schema_fields_match_the_signature(method):
    """Every ``loss_kwargs()`` key is a keyword of the loss with the same default, and every
    hyperparameter of the loss is settable from the config (no hidden knobs)."""
    kwargs = METHOD_SCHEMAS[method]().loss_kwargs()
    params = inspect.signature(get_loss(method).fn).parameters
    hyper = {n: p for n, p in params.items() if n not in DATA_ARGS}
    assert set(kwargs) == set(hyper), (method, set(kwargs) ^ set(hyper))
    for name, value in kwargs.items():
        assert hyper[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert hyper[name].default == value, (name, hyper[name].default, value)


@pytest.mark.parametrize("method", METHODS)
def test_called_the_way_the_train_loop_calls_it(method):
    spec, n = get_loss(method), 4
    gen = torch.Generator().manual_seed(0)

    def pair():
        tokens = torch.randint(1, 20, (n,), generator=gen)
        logps = -10 * torch.rand(2, n, generator=gen)
        return PairLogps(logps[0], logps[1], tokens, tokens)

    policy, refs = pair(), [pair(), pair()]
    inputs = {"policy": policy}
    if spec.multi_reference:
        inputs["references"] = refs
    else:
        inputs["reference"] = refs[0]
    if spec.needs_anchors:
        inputs["anchors"] = AnchorLogps(refs[0].chosen + 1, refs[0].chosen, policy.chosen_tokens)
    out = spec.fn(**inputs, **METHOD_SCHEMAS[method]().loss_kwargs())
    assert isinstance(out, LossOutput) and out.losses.shape == (n,)


def test_unknown_loss_lists_the_available_ones():
    with pytest.raises(KeyError, match="bapo.*dpo.*ipo.*mrpo"):
        get_loss("orpo")


def test_losses_import_only_torch():
    code = (
        "import sys, bapo_exp.losses, bapo_exp.modeling.logps\n"
        "heavy = {'transformers', 'peft', 'wandb', 'hydra', 'omegaconf'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout
