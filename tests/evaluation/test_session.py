"""A ``SuiteSession`` builds the suites' tasks and requests once and scores any model on them.

A model evaluated again by a session after its weights changed in place (what training does
between two evaluation points) must get exactly what a fresh ``evaluate`` of the changed model
gets: the reused requests, responses and encodings carry nothing over from the earlier run.
"""

from __future__ import annotations

import pytest
import torch

from bapo_exp.evaluation.harness import SuiteSession, evaluate
from bapo_exp.synthetic import write_world
from tests.modeling.conftest import tiny_cfg
from tests.synthetic.conftest import small_config

SUITES = ["synthetic_knowledge", "synthetic_alignment"]
VARYING = ("wall_time_s",)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def world_root(tmp_path_factory):
    return write_world(small_config(), tmp_path_factory.mktemp("session") / "world")


@pytest.fixture
def tiny(tmp_path):
    from bapo_exp.modeling.load import load_model

    return load_model(tiny_cfg(), tmp_path)


def fixed(records: dict) -> dict:
    """The records without run-specific entries: wall time, and the temporary task files'
    paths (``configs.<task>.metadata.config_source``)."""
    out = {}
    for suite, record in records.items():
        out[suite] = {k: v for k, v in record.items() if k not in VARYING}
        out[suite]["configs"] = {
            task: {**c, "metadata": {k: v for k, v in c.get("metadata", {}).items()
                                     if k != "config_source"}}
            for task, c in record["configs"].items()
        }  # fmt: skip
    return out


def perturb(model, seed: int) -> None:
    """A training step's worth of change to every weight."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))


def test_session_rescoring_a_changed_model_equals_a_fresh_evaluation(
    world_root, tiny, tmp_path, monkeypatch
):
    from lm_eval.api.task import ConfigurableTask

    builds = []
    original = ConfigurableTask.build_all_requests

    def counted(self, **kwargs):
        builds.append(self.config.task)
        return original(self, **kwargs)

    monkeypatch.setattr(ConfigurableTask, "build_all_requests", counted)
    model, tok = tiny
    args = {"limit": None, "batch_size": 4}
    with SuiteSession(SUITES, world_root, **args) as session:
        first = session.run(model, tok, out_dir=tmp_path / "first")
        n_tasks = len(builds)
        lm = session.lm(model, tok)
        perturb(model, 0)
        again = session.run(model, tok, out_dir=tmp_path / "again")
        assert session.lm(model, tok) is lm  # the same LM: its encodings are reused
    assert len(builds) == n_tasks > 0  # the second run rendered no request
    fresh = evaluate(model, tok, suites=SUITES, data_root=world_root, **args)
    assert fixed(again) == fixed(fresh)
    assert fixed(first) != fixed(again)  # the weights did change what was scored
    assert (tmp_path / "again" / "synthetic_knowledge.json").exists()
    assert not model.training


def test_session_restores_training_mode(world_root, tiny):
    model, tok = tiny
    model.train()
    with SuiteSession(SUITES[1:], world_root, limit=2, batch_size=4) as session:
        session.run(model, tok)
    assert model.training


def test_shared_session_is_kept_per_settings(world_root, tiny):
    from bapo_exp.evaluation.harness import shared_session

    model, tok = tiny
    a = shared_session(SUITES[1:], world_root, limit=2, batch_size=4)
    assert shared_session(SUITES[1:], world_root, limit=2, batch_size=4) is a
    assert shared_session(SUITES[1:], world_root, limit=3, batch_size=4) is not a
    a.run(model, tok)
    a.release()  # the next cell's model replaces this one; the tasks stay
    assert a._lm is None and a.loaded
