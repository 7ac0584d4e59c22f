"""Reference stage: base responses (BAPO's anchors) and reference log-probs, cached.

python -m bapo_exp method=bapo stages=[reference]

Fills the shared caches under ``paths.cache_dir`` (generations) and ``reference.cache_dir``
(log-probs); later stages and other runs of a sweep then do no reference forward pass.
"""

from __future__ import annotations

import time

from bapo_exp.config import Config
from bapo_exp.losses import get_loss
from bapo_exp.reference_tables import disagreement, heterogeneity
from bapo_exp.stages.common import load_data, reference_tables
from bapo_exp.tracking.run_dir import RunDir
from bapo_exp.tracking.tracker import Tracker


def run(cfg: Config, run: RunDir, tracker: Tracker) -> dict:
    t0 = time.perf_counter()
    data = load_data(cfg, run)
    if not get_loss(cfg.method.name).trains and "train" not in cfg.stages:
        return {"skipped": f"method={cfg.method.name} trains nothing: no references needed"}
    base, train, heldout, _ = reference_tables(cfg, data)
    het = heterogeneity(data.train, train)
    run.write_json("reference/heterogeneity.json", het)
    return {
        "n_train_pairs": len(data.train),
        "n_heldout_pairs": len(data.heldout),
        "n_base_responses": len(base),
        "n_references": train.n_references,
        "n_computed": train.n_computed + heldout.n_computed,  # forward-scored sequences
        "cache_fingerprints": train.fingerprints,
        "seconds": time.perf_counter() - t0,
        **{f"{p}/{k}": v for p, d in het.items() for k, v in d.items()},
        **disagreement(train),  # mrpo/ref_disagreement etc. (K >= 2 references)
    }
