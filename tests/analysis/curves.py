"""Synthetic study tables with known effects (columns of ``analysis.load.CELL_COLUMNS``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bapo_exp.analysis.load import CELL_COLUMNS

HORIZON = 96
STEPS = (3, 6, 12, 18, 24, 36, 48, 60, 72, 84, 96)


def row(**values) -> dict:
    """A row; the continuous retention measures (``*_skill``) follow the accuracies unless
    given, so a known effect on one is the same effect on the other."""
    for m in ("knowledge", "alignment"):
        if m in values and f"{m}_skill" not in values:
            values[f"{m}_skill"] = values[m]
    return (
        {c: np.nan for c in CELL_COLUMNS}
        | {
            "role": "test",
            "seed": 0,
            "exposure": 0.1,
            "n_pairs": 128,
            "preferences": "concise",
            "k_prefs": 1,
            "lr": 1.5e-4,
            "horizon": HORIZON,
            "beta": 0.1,
        }
        | values
    )


def base_row(base, knowledge: float, alignment: float, exposure: float = 0.1, x: float = 0.05):
    return row(
        cell=f"base-{base}-{exposure}",
        base=base,
        method="base",
        method_name="none",
        step=0,
        x=x,
        knowledge=knowledge,
        alignment=alignment,
        exposure=exposure,
        horizon=0,
        role="calibration" if base >= 100 else "test",
    )


def rise(step: int, speed: float = 1.0, top: float = 0.95) -> float:
    """Style share along a run: 0.05 at step 0, logistic in the step, 0.5 near step 30 / speed."""
    return (
        0.05
        + (top - 0.05) / (1 + np.exp(-(speed * step - 30) / 8))
        - (top - 0.05) / (1 + np.exp(30 / 8))
    )


def run_rows(
    cell,
    base,
    method,
    method_name,
    keep,
    speed=1.0,
    top=0.95,
    gen=None,
    noise=0.0,
    steps=STEPS,
    **design,
) -> list[dict]:
    """One run: x rises with the step, ``keep(x)`` gives (knowledge, alignment) at that x."""
    out = []
    for s in steps:
        x = rise(s, speed, top)
        k, a = keep(x)
        eps = gen.normal(0, noise, 2) if gen is not None and noise else (0.0, 0.0)
        out.append(
            row(
                cell=cell,
                base=base,
                method=method,
                method_name=method_name,
                step=s,
                x=x,
                knowledge=k + eps[0],
                alignment=a + eps[1],
                role="calibration" if base >= 100 else "test",
                **design,
            )
        )
    return out


def study_cells(
    effect: float = 0.05,
    n_bases: int = 10,
    noise: float = 0.004,
    seed: int = 0,
    bapo_speed: float = 1.0,
    bases=None,
) -> pd.DataFrame:
    """Per base: the untrained row, DPO at beta 0.05/0.1/0.2 (beta moves the speed, not the
    trade-off: knowledge falls 0.3 per unit of style share, alignment 0.1), and BAPO
    lambda=0.01 whose knowledge and alignment are DPO's at the same x plus ``effect`` once
    trained: the true frontier gap is ``effect`` everywhere on the x-range."""
    gen = np.random.default_rng(seed)
    rows = []
    for b in bases if bases is not None else range(n_bases):
        k0, a0 = 0.9 + gen.normal(0, 0.02), 0.95 + gen.normal(0, 0.01)
        b_eff = effect + gen.normal(0, 0.005)
        rows.append(base_row(b, k0, a0))

        def dpo(x, k0=k0, a0=a0):
            return k0 - 0.3 * (x - 0.05), a0 - 0.1 * (x - 0.05)

        def bapo(x, dpo=dpo, e=b_eff):
            k, a = dpo(x)
            return k + e, a + e

        for beta, speed in ((0.05, 1.3), (0.1, 1.0), (0.2, 0.8)):
            label = "DPO" if beta == 0.1 else f"DPO beta={beta:g}"
            rows += run_rows(
                f"dpo-{b}-{beta}", b, label, "dpo", dpo, speed, gen=gen, noise=noise, beta=beta
            )
        rows += run_rows(
            f"bapo-{b}",
            b,
            "BAPO lambda=0.01",
            "bapo",
            bapo,
            bapo_speed,
            gen=gen,
            noise=noise,
            anchor_weight=0.01,
        )
    return pd.DataFrame(rows, columns=CELL_COLUMNS)


def units(
    gen: np.random.Generator, n_bases: int, n_seeds: int, truth: float, base_sd: float, sd: float
) -> pd.DataFrame:
    """(base, seed, value) with value = truth + base effect + seed noise (normal)."""
    base = np.repeat(np.arange(n_bases), n_seeds)
    value = truth + gen.normal(0, base_sd, n_bases)[base] + gen.normal(0, sd, base.size)
    return pd.DataFrame(
        {"base": base, "seed": np.tile(np.arange(n_seeds), n_bases), "value": value}
    )
