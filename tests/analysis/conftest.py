"""Hand-written run directories (what Hydra and the stages write), for the analysis tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml


def make_run(
    root: Path,
    rel: str,
    cfg: dict,
    evals: dict | None,
    done=("reference", "train", "eval"),
    metrics: list[dict] | None = None,
    het: dict | None = None,
) -> Path:
    run = root / rel
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for stage in done:
        (run / stage).mkdir(exist_ok=True)
        (run / stage / "DONE").write_text("")
    if evals is not None:
        (run / "eval").mkdir(exist_ok=True)
        (run / "eval" / "summary.json").write_text(json.dumps(evals))
    if metrics:
        (run / "train").mkdir(exist_ok=True)
        (run / "train" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    if het:
        (run / "reference").mkdir(exist_ok=True)
        (run / "reference" / "heterogeneity.json").write_text(json.dumps(het))
    return run


def cfg(method: str, seed: int, prefs=("academy",), beta: float = 0.1, refs=()) -> dict:
    m = {"name": method, "beta": beta}
    if method == "mrpo":
        m["references"] = [{"name": r} for r in refs]
    return {
        "name": "toy",
        "seed": seed,
        "stages": ["reference", "train", "eval"],
        "method": m,
        "data": {"name": "dsp", "preferences": list(prefs)},
        "model": {"name": "tiny"},
        "train": {"steps": 4},
    }


@pytest.fixture
def toy_runs(tmp_path: Path) -> Path:
    """dpo and bapo x seeds 0,1,2 with known accuracies, one base run, one incomplete run."""
    root = tmp_path / "toy"
    accs = {"dpo": [0.50, 0.60, 0.70], "bapo": [0.80, 0.80, 0.90]}
    for method, values in accs.items():
        for seed, acc in enumerate(values):
            steps = [
                {
                    "step": s,
                    "probe/drift/base": -s * (2 if method == "dpo" else 0.5),
                    "drift/chosen": 0.1 * s,
                    "drift/rejected": -0.3 * s,
                }
                for s in (1, 2, 3)
            ]
            make_run(
                root,
                f"whatever_{method}_{seed}",
                cfg(method, seed),
                {"hhh/acc": acc, "personal/pref_acc": 0.6 + seed / 10},
                metrics=steps,
                het={"academy": {"n_pairs": 10, "nll_distance": 1.0, "ref_margin": -2.0}},
            )
    make_run(root, "base", cfg("none", 0) | {"stages": ["eval"]}, {"hhh/acc": 0.95}, done=("eval",))
    make_run(root, "broken", cfg("dpo", 7), None, done=("reference",))
    return root


@pytest.fixture
def demo_runs(tmp_path: Path) -> Path:
    """Files shaped like `make demo`'s: 2 methods x 2 preferences x 2 steps, and the base."""
    root = tmp_path / "demo"
    for i, (method, pref, steps) in enumerate(
        (m, p, s) for m in ("dpo", "bapo") for p in ("concise", "poetic") for s in (20, 60)
    ):
        run_cfg = cfg(method, 0, prefs=(pref,)) | {"name": "demo", "train": {"steps": steps}}
        run_cfg["model"] = {"name": "micro"}
        make_run(root, f"cell{i}", run_cfg, {
            "gen/style_share": 0.1 * i, "synthetic_knowledge/neutral/acc": 0.9 - 0.02 * i,
            "synthetic_knowledge/acc": 0.95 - 0.01 * i, "synthetic_alignment/acc": 1.0 - 0.01 * i,
        })  # fmt: skip
    base = cfg("none", 0) | {"name": "demo", "stages": ["eval"], "model": {"name": "micro"}}
    make_run(root, "base_model", base, {"gen/style_share": 0.0,
             "synthetic_knowledge/neutral/acc": 0.95, "synthetic_knowledge/acc": 0.96,
             "synthetic_alignment/acc": 1.0}, done=("eval",))  # fmt: skip
    return root
