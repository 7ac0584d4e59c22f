"""eval.at_steps evaluated inside the train stage equals evaluating the kept checkpoints.

One small synthetic cell (tiny random Llama, a 12-entity world, 6 steps, points at steps 2 and
4 and the final step 6) runs through both paths: ``eval.in_training=true`` (the model in memory,
tasks and requests built once) and ``eval.in_training=false`` (the eval stage loads each
checkpoint). Every scored request's log-likelihood, every item's choice, every generation and
every summary number must agree; training must not notice the evaluation; the checkpoints are
kept; and a run killed between two points resumes without evaluating a finished point again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from bapo_exp.run.main import run_stages
from bapo_exp.tracking.run_dir import RunDir
from tests.conftest import TIMING, compose_cfg, metric_rows

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_torch_thread")]

WORLD = ["data.world.n_entities=12", "data.world.n_attributes=2", "data.world.n_unknown_train=4",
         "data.world.n_unknown_test=4", "data.world.n_harmful_train=6",
         "data.world.n_harmful_test=4", "data.world.n_helpful_test=6",
         "data.world.qa_repeats=1", "data.world.statement_repeats=1"]  # fmt: skip
CELL = ["debug=tiny", "data=synthetic", "eval=synthetic", "method=dpo", "train.steps=6",
        "train.ckpt_every=1000", "eval.at_steps=[2,4]", "eval.limit=3", "eval.gen_prompts=4",
        "eval.mmlu_subjects=[world_capitals,world_colours_concise]",
        "data.n_train=16", "data.n_heldout=8", "model.max_prompt_tokens=24",
        "model.max_response_tokens=8", *WORLD]  # fmt: skip
VARYING = {"ckpt_path", "synthetic_knowledge/wall_time_s", "synthetic_alignment/wall_time_s"}


class Scored:
    """Records every log-likelihood the bapo backend returns: (request text) -> (logp, greedy)."""

    def __init__(self, monkeypatch) -> None:
        from bapo_exp.evaluation.backend import BapoLM

        self.calls: list[dict] = []
        original = BapoLM._loglikelihood_tokens

        def recorded(lm, requests, disable_tqdm=False, override_bs=None):
            out = original(lm, requests, disable_tqdm, override_bs)
            self.calls.append({key: res for (key, _, _), res in zip(requests, out, strict=True)})
            return out

        monkeypatch.setattr(BapoLM, "_loglikelihood_tokens", recorded)


def run_cell(root: Path, cache: Path, *overrides: str) -> RunDir:
    cfg = OmegaConf.to_object(compose_cfg([*CELL, f"paths.cache_dir={cache}", *overrides]))
    run = RunDir(root)
    run_stages(cfg, run, {})
    return run


# full fine-tuning as the study runs it: held-out pair metrics only at the final model
CURVE_PAIRS = {"lora": [], "full": ["eval.curve_pairs=false"]}


@pytest.fixture(scope="module", params=["lora", "full"])
def cells(request, tmp_path_factory, tiny_cache):
    """Both paths, with a fresh LoRA adapter (the tiny default: the main reference is the policy
    with its adapter disabled) and with full fine-tuning (the study's: a separate base model)."""
    root = tmp_path_factory.mktemp(f"in_training_{request.param}")
    mp = pytest.MonkeyPatch()
    try:
        scores = {}
        for name, switch in (("inside", "true"), ("outside", "false")):
            scores[name] = Scored(mp)
            run_cell(root / name, tiny_cache, f"eval.in_training={switch}",
                     f"model.finetune={request.param}", *CURVE_PAIRS[request.param])  # fmt: skip
            mp.undo()
    finally:
        mp.undo()
    return root, tiny_cache, scores, request.param


def summaries(run: Path) -> dict[str, dict]:
    files = [
        run / "eval" / "summary.json",
        *sorted((run / "eval" / "at_step").glob("*/summary.json")),
    ]
    return {str(p.relative_to(run)): json.loads(p.read_text()) for p in files}


def test_same_numbers_choices_and_generations(cells) -> None:
    root, _, scores, _ = cells
    inside, outside = root / "inside", root / "outside"
    assert set(numbers(inside)) == {"eval/summary.json", "eval/at_step/2/summary.json",
                                    "eval/at_step/4/summary.json"}  # fmt: skip
    assert numbers(inside) == numbers(outside)
    a = summaries(inside)
    assert a["eval/summary.json"]["ckpt_path"] == str(inside / "checkpoints" / "final")
    assert a["eval/at_step/2/summary.json"]["ckpt_path"] == str(
        inside / "checkpoints" / "at_step_00000002"
    )
    for rel in ("eval/generations.jsonl", "eval/at_step/2/generations.jsonl"):
        assert (inside / rel).read_text() == (outside / rel).read_text()
    files = {p.relative_to(inside / "eval") for p in (inside / "eval").rglob("*")}
    assert files == {p.relative_to(outside / "eval") for p in (outside / "eval").rglob("*")}
    # every request, at every point: log-likelihood within float rounding, same greedy flag
    first, second = scores["inside"].calls, scores["outside"].calls
    assert len(first) == len(second) == 2 * 3  # 2 suites x 3 points
    second = second[2:] + second[:2]  # the eval stage scores the final model first
    for x, y in zip(first, second, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            assert x[key][0] == pytest.approx(y[key][0], abs=1e-4), key
            assert x[key][1] == y[key][1], key


def test_pair_metrics_before_the_last_point_only_with_curve_pairs(cells) -> None:
    root, _, _, finetune = cells
    points = summaries(root / "inside")
    final = points.pop("eval/summary.json")
    pairs = ("personal/pref_acc", "personal/drift/base", "personal/hard_margin")
    assert all(k in final for k in (*pairs, "personal/style_logodds", "gen/style_share"))
    for point in points.values():
        assert all(k in point for k in ("personal/style_logodds", "gen/style_share"))
        assert all((k in point) == (finetune == "lora") for k in pairs), finetune


def test_training_is_untouched_and_checkpoints_kept(cells) -> None:
    root, _, _, _ = cells
    inside, outside = root / "inside", root / "outside"
    assert metric_rows(inside, TIMING) == metric_rows(outside, TIMING)
    for step in (2, 4, 6):
        point = json.loads(
            (inside / "train" / "eval_points" / str(step) / "point.json").read_text()
        )
        assert 0 < point["model_seconds"] < point["seconds"], point  # the compute inside the point
    for step in (2, 4):
        assert (inside / "checkpoints" / f"at_step_{step:08d}" / "tokenizer.json").exists()
    assert (inside / "checkpoints" / "final" / "tokenizer.json").exists()
    assert not (outside / "train" / "eval_points").exists()


@pytest.mark.parametrize("damage", [None, "point.json", "generations.jsonl"])
def test_killed_run_resumes_without_redoing_a_finished_point(cells, tmp_path, monkeypatch, damage):
    """... and a finished point whose files were damaged since is evaluated again."""
    from bapo_exp.stages.evaluator import Evaluation
    from bapo_exp.training import loop

    root, cache, _, finetune = cells
    if finetune != "full":
        pytest.skip("one fine-tuning mode is enough here")
    evaluated: list[str] = []
    score = Evaluation.__call__

    def counted(self, model, tokenizer, out, final=True):
        evaluated.append(out.name)
        return score(self, model, tokenizer, out, final)

    monkeypatch.setattr(Evaluation, "__call__", counted)
    step = loop.train_step

    def killed_at_step_4(p, cfg, i):  # 0-based: dies while taking step 4, after point 2
        if i == 3:
            raise KeyboardInterrupt
        return step(p, cfg, i)

    monkeypatch.setattr(loop, "train_step", killed_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        run_cell(tmp_path / "killed", cache, "model.finetune=full", *CURVE_PAIRS["full"])
    assert evaluated == [".2.tmp"]
    if damage:  # a torn or flipped file in the finished point: it is not trusted
        path = tmp_path / "killed" / "train" / "eval_points" / "2" / damage
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0x20
        path.write_bytes(bytes(data))
    monkeypatch.setattr(loop, "train_step", step)
    # resumes from step 0: no checkpoint before the kill
    run_cell(tmp_path / "killed", cache, "model.finetune=full", *CURVE_PAIRS["full"])
    again = [".2.tmp"] if damage else []
    assert evaluated == [".2.tmp", *again, ".4.tmp", ".6.tmp"]
    assert numbers(tmp_path / "killed") == numbers(root / "inside")


def numbers(run: Path) -> dict[str, dict]:
    """Every evaluated point's summary without run-specific entries (paths, wall times)."""
    return {f: {k: v for k, v in s.items() if k not in VARYING} for f, s in summaries(run).items()}


def test_the_eval_stage_checks_the_window_only_when_it_scores_something(
    cells, tmp_path, monkeypatch
) -> None:
    """Every point taken from training: nothing is scored, so the eval requests are not built
    to check the window (3 s a study cell); from checkpoints they are, before any model loads."""
    import shutil

    from bapo_exp.stages import eval_window, evaluate
    from bapo_exp.tracking.tracker import NullTracker

    root, cache, _, finetune = cells
    if finetune != "full":
        pytest.skip("one fine-tuning mode is enough here")
    checked: list[str] = []
    monkeypatch.setattr(eval_window, "check_window",
                        lambda cfg, at_start: checked.append(str(at_start)))  # fmt: skip
    for name, switch in (("inside", "true"), ("outside", "false")):
        shutil.copytree(root / name, tmp_path / name)
        overrides = [*CELL, f"paths.cache_dir={cache}", f"eval.in_training={switch}",
                     "model.finetune=full", *CURVE_PAIRS["full"]]  # fmt: skip
        cfg = OmegaConf.to_object(compose_cfg(overrides))
        evaluate.run(cfg, RunDir(tmp_path / name), NullTracker())
        checked.append(f"after {name}")
    assert checked == ["after inside", "False", "after outside"]
    assert numbers(tmp_path / "inside") == numbers(tmp_path / "outside")
