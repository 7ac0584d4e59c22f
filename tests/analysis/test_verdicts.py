"""Contrasts as per-unit values and their verdict rows (bapo_exp.analysis.verdicts, claims)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bapo_exp.analysis.claims import primary, secondary, verdict_table
from bapo_exp.analysis.verdicts import (
    ROW_COLS,
    Endpoint,
    Frontiers,
    Slope,
    runs,
    units,
    verdict_rows,
)
from tests.analysis.curves import base_row, row, run_rows, study_cells

CHOICE = {"anchor_weight": 0.01, "logodds_range": None}
MAIN = (("exposure", 0.1), ("n_pairs", 128), ("preferences", "concise"))
BAPO = (("method_name", "bapo"), ("anchor_weight", 0.01)) + MAIN
DPO = (("method_name", "dpo"), ("beta", (0.05, 0.1, 0.2))) + MAIN


def p1(**kw) -> Frontiers:
    args = {
        "id": "P1",
        "claim": "C1",
        "statement": "",
        "treatment": "BAPO",
        "control": "DPO",
        "where_t": BAPO,
        "where_c": DPO,
        "metric": "knowledge",
    } | kw
    return Frontiers(**args)


def test_every_run_starts_at_its_base() -> None:
    pts = runs(study_cells(n_bases=2), BAPO)
    starts = pts[pts["step"] == 0]
    assert len(starts) == 2 and set(starts["cell"]) == {"bapo-0", "bapo-1"}
    assert (starts["method_name"] == "bapo").all() and (starts["x"] == 0.05).all()


def test_a_known_frontier_gap_is_supported_and_none_is_inconclusive() -> None:
    real = verdict_rows([p1(), p1(id="P2", metric="alignment")], study_cells(effect=0.03))
    assert list(real.columns) == list(ROW_COLS)
    assert (real["verdict"] == "supported").all(), real[["id", "verdict", "note"]]
    assert (real["lo"] < 0.03).all() and (0.03 < real["hi"]).all()
    assert sorted(real["ci"]) == [0.95, 0.975]  # Holm: 0.05 / 2, then 0.05 / 1
    assert real["n_bases"].tolist() == [10, 10] and (real["reach"].abs() < 0.05).all()
    null = verdict_rows([p1(), p1(id="P2", metric="alignment")], study_cells(effect=0.0))
    assert set(null["verdict"]) == {"inconclusive"}


def test_holm_widens_the_primaries_but_not_the_secondaries() -> None:
    cells = study_cells(effect=0.01, noise=0.01, seed=3)
    alone = verdict_rows([p1()], cells).iloc[0]
    family = verdict_rows(
        [p1(), *[p1(id=f"P{i}", metric="alignment") for i in (2, 3, 4, 5)]], cells
    )
    assert family.iloc[0]["hi"] - family.iloc[0]["lo"] >= alone["hi"] - alone["lo"]
    assert family.iloc[0]["p_holm"] >= alone["p"]
    sec = verdict_rows([p1(family="secondary"), p1(id="P2")], cells).iloc[0]
    assert sec["ci"] == 0.95 and np.isnan(sec["p_holm"])


def test_a_treatment_that_does_not_reach_is_counted_not_dropped() -> None:
    """BAPO moves slowly (its style share stays under 0.3): no gap, and its reach says so."""
    table = verdict_rows([p1()], study_cells(effect=0.03, bapo_speed=0.3)).iloc[0]
    assert table["verdict"] == "not reached" and table["n_units"] == 10
    assert table["n_no_value"] == 10 and table["reach"] < -0.5
    u = units(p1(), study_cells(effect=0.03, bapo_speed=0.45))
    assert u["coverage_t"].max() < 1 and (u["coverage_c"] == 1).all()


def test_fewer_than_five_bases_is_insufficient_and_a_constant_outcome_is_a_ceiling() -> None:
    few = verdict_rows([p1()], study_cells(effect=0.05, n_bases=4)).iloc[0]
    assert few["verdict"] == "insufficient" and few["n_bases"] == 4
    cells = study_cells(effect=0.0)
    cells["pref_acc"] = 1.0  # everyone at the ceiling
    end = Endpoint(
        "P3", "C2", "", "BAPO", "DPO", BAPO, DPO[:1] + (("beta", 0.1),) + MAIN, "pref_acc"
    )
    row_ = verdict_rows([end], cells).iloc[0]
    assert row_["verdict"] == "no information (ceiling)" and row_["lo"] == row_["hi"] == 0


def test_endpoint_pairs_within_unit_and_size_then_averages_sizes() -> None:
    rows = []
    for b in range(6):
        for n, gain in ((4, 0.3), (8, 0.1)):
            for method, extra in (("mrpo", gain), ("dpo", 0.0)):
                for step, margin in ((10, 0.0), (20, 1.0 + extra + b)):
                    rows.append(
                        row(
                            cell=f"{method}-{b}-{n}",
                            base=b,
                            method=method,
                            method_name=method,
                            step=step,
                            n_pairs=n,
                            hard_margin=margin,
                        )
                    )
    cells = pd.DataFrame(rows)
    end = Endpoint(
        "P3",
        "C2",
        "",
        "MRPO",
        "DPO",
        (("method_name", "mrpo"),),
        (("method_name", "dpo"),),
        "hard_margin",
    )
    u = units(end, cells)
    assert u["value"].tolist() == pytest.approx([0.2] * 6)  # mean of 0.3 and 0.1, last step


def mixing_cells(slope: float, leak: float | None = None) -> pd.DataFrame:
    """DPO at 1, 2, 3 mixed preferences (128 pairs), knowledge after the horizon falling by
    ``slope`` per preference; with ``leak``, DPO runs at 16/64/256 pairs (the MRPO controls) at
    1 preference whose loss is ``leak``: they must not enter the trend."""
    gen = np.random.default_rng(0)
    rows = []
    for b in range(6):
        rows.append(base_row(b, 0.9, 0.95))
        for k, prefs in ((1, "concise"), (2, "concise,business"), (3, "concise,business,academic")):
            loss = 0.1 + slope * k + gen.normal(0, 0.003)
            rows += run_rows(
                f"mix-{b}-{k}",
                b,
                "DPO",
                "dpo",
                lambda x, lo=loss: (0.9 - lo * x / 0.93, 0.95),
                preferences=prefs,
                k_prefs=k,
            )
        for n in (16, 64, 256) if leak is not None else ():
            rows += run_rows(
                f"ctl-{b}-{n}", b, "DPO", "dpo", lambda x: (0.9 - leak * x / 0.93, 0.95), n_pairs=n
            )
    return pd.DataFrame(rows)


def test_the_heterogeneity_trend_ignores_other_training_set_sizes() -> None:
    """Issue 25's bug: the trend filtered method, step and exposure but not the training-set
    size, so MRPO-control DPO runs at 16/64/256 pairs leaked into the 1-preference point."""
    mix = primary({**CHOICE, "het_range": None})[-1]  # P5, after the full horizon
    clean = verdict_rows([mix], mixing_cells(0.05)).iloc[0]
    leaked = verdict_rows([mix], mixing_cells(0.05, leak=0.6)).iloc[0]
    assert clean["estimate"] == pytest.approx(0.05, abs=0.005)
    assert leaked["estimate"] == clean["estimate"]
    # protocol section 13, R3: unmatched, the primary is not judged (and spends no Holm step)
    assert leaked["verdict"] == "not matched" and "equal personalisation" in leaked["note"]
    assert math.isnan(leaked["p_holm"]) or leaked["p_holm"] == 1.0
    # without the size filter the leaked runs pull the 1-preference loss up:
    loose = Slope(
        "x", "C3", "", "DPO", (("method_name", "dpo"),), "k_prefs", "k_prefs", "knowledge", "final"
    )
    assert verdict_rows([loose], mixing_cells(0.05, leak=0.6)).iloc[0]["estimate"] < 0


def test_without_a_heterogeneity_range_the_matched_secondaries_say_not_matched() -> None:
    """S5's "matched" rows would repeat the "final" rows' numbers under a label they do not
    earn (the review of the first test run): they read "not matched"; the "final" rows carry
    the slope after the full horizon."""
    cells = mixing_cells(0.05)
    rows = [c for c in secondary({**CHOICE, "het_range": None}, cells)
            if c.id.startswith("S5 mixing DPO")]  # fmt: skip
    table = verdict_rows(rows, cells).set_index("id")
    matched = [i for i in table.index if i.endswith(" matched")]
    final = [i for i in table.index if i.endswith(" final")]
    assert matched and final and len(matched) + len(final) == len(table)
    assert (table.loc[matched, "verdict"] == "not matched").all()
    assert (table.loc[final, "verdict"] != "not matched").all()
    [knowledge] = [i for i in final if "knowledge" in i]  # P5's slope, now exploratory
    assert table.loc[knowledge, "estimate"] == pytest.approx(0.05, abs=0.005)


def test_slope_needs_its_design_points_and_reports_not_reached() -> None:
    cells = mixing_cells(0.05)
    one = cells[~cells["cell"].str.startswith("mix-0-3")]  # base 0 lacks k=3: no unit
    mix = primary(CHOICE)[-1]  # at matched frontier over 0.2-0.8: every run reaches 0.93
    u = units(mix, one)
    assert 0 not in set(u["base"]) and u["value"].notna().all() and len(u) == 5
    slow = cells.copy()
    slow.loc[slow["k_prefs"] == 3, "x"] *= 0.2  # k=3 never reaches the range
    u = units(mix, slow)
    assert len(u) == 6 and u["value"].isna().all()
    assert verdict_rows([mix], slow).iloc[0]["verdict"] == "not reached"


def test_the_study_table_uses_only_test_bases() -> None:
    cells = study_cells(effect=0.03, bases=[*range(10), 100, 101])
    cal = cells["base"] >= 100
    cells.loc[cal & (cells["method_name"] == "bapo"), "knowledge"] = -5.0  # absurd
    table = verdict_table(cells, CHOICE, n_boot=500).set_index("id")
    assert table.loc["P1", "n_bases"] == 10 and table.loc["P1", "verdict"] == "supported"


def test_an_undecidable_primary_spends_no_holm_step() -> None:
    """A primary on 4 bases with a huge effect is "insufficient" whatever its p: in the family
    it counts as p = 1, so it cannot be rejected first and loosen P1's level to 0.05."""
    cells = study_cells(effect=0.03)
    few = cells[cells["base"] < 4]
    mixed = pd.concat([cells, few.assign(cell=few["cell"] + "-few", preferences="few")])
    small = p1(id="Px", where_t=BAPO[:2] + (("preferences", "few"),),
               where_c=DPO[:2] + (("preferences", "few"),), metric="alignment")  # fmt: skip
    table = verdict_rows([p1(), small], mixed).set_index("id")
    assert table.loc["Px", "verdict"] == "insufficient" and table.loc["Px", "p"] < 0.01
    assert table.loc["Px", "p_holm"] == 1.0 and table.loc["P1", "ci"] == 0.975


def test_reach_compares_one_run_with_one_run() -> None:
    """Protocol section 13, R2: BAPO's reach is compared with DPO at its own beta (0.1), not
    with the best of three pooled DPO runs: a BAPO run that reaches as far as that DPO run is
    not "not reached" although a faster beta of the pool reaches farther."""
    cells = study_cells(effect=0.03)
    slow = (cells["method_name"] == "bapo") | (cells["beta"] == 0.1) & (cells["step"] > 0)
    cells.loc[slow & (cells["method_name"] != "none"), "x"] *= 0.75  # reach about 0.71
    p1 = primary(CHOICE)[0]
    one = verdict_rows([p1], cells, n_boot=300).iloc[0]
    assert one["reach"] == pytest.approx(0.0, abs=1e-9) and one["verdict"] == "supported"
    pooled = verdict_rows([replace(p1, reach_c=None)], cells, n_boot=300).iloc[0]
    assert pooled["reach_hi"] < 0 and pooled["verdict"] == "not reached"
