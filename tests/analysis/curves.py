"""Synthetic training curves with known effects, for the study's statistics tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

STEPS = (0, 10, 20, 40, 80)


def curves(
    effect: float = 0.1,
    n_bases: int = 4,
    n_seeds: int = 3,
    base_sd: float = 0.02,
    noise: float = 0.01,
    rng: int = 0,
    treatment_x_scale: float = 1.0,
    steps: tuple[int, ...] = STEPS,
) -> pd.DataFrame:
    """DPO and BAPO curves per (base, seed); BAPO's knowledge = DPO's + an effect after step 0.

    Both methods share the untrained base point (step 0, x = 0.1). x rises linearly with the
    step to 0.9 at the last step (times ``treatment_x_scale`` for BAPO, so a scale below 1 makes
    BAPO miss the top levels). DPO's knowledge falls with x; BAPO's is DPO's at the same x plus
    ``effect + b + e``: ``b`` per base (sd ``base_sd``), ``e`` per point (sd ``noise``), so the
    true paired difference at every step, and at every level from the first trained point's x
    on (x = 0.2 at step 10 with the default steps), is ``effect``.
    """
    gen = np.random.default_rng(rng)
    rows = []
    for base in range(n_bases):
        offset, b = gen.normal(0, 0.05), gen.normal(0, base_sd)
        for seed in range(n_seeds):
            for step in steps:
                frac = step / steps[-1]
                for method, scale in (("DPO", 1.0), ("BAPO", treatment_x_scale)):
                    x = 0.1 + 0.8 * frac * scale
                    know = 0.9 + offset - 0.4 * (x - 0.1)
                    if method == "BAPO" and step > 0:
                        know += effect + b + gen.normal(0, noise)
                    rows.append(
                        {
                            "base": f"b{base}",
                            "seed": seed,
                            "method": method,
                            "strength": float(step),
                            "x": x,
                            "knowledge": know,
                            "preference": "concise",
                        }
                    )
    return pd.DataFrame(rows)


def units(
    gen: np.random.Generator, n_bases: int, n_seeds: int, truth: float, base_sd: float, sd: float
) -> pd.DataFrame:
    """(base, seed, value) with value = truth + base effect + seed noise (normal)."""
    base = np.repeat(np.arange(n_bases), n_seeds)
    value = truth + gen.normal(0, base_sd, n_bases)[base] + gen.normal(0, sd, base.size)
    return pd.DataFrame(
        {"base": base, "seed": np.tile(np.arange(n_seeds), n_bases), "value": value}
    )
