"""The README's performance rows: figures as the benchmark files hold them, every run shown."""

from __future__ import annotations

import json
from pathlib import Path

from bapo_exp.analysis import perf_report

REPO = Path(__file__).resolve().parents[2]


def test_two_decimals_round_half_up_on_the_written_value() -> None:
    # the benchmark writes per-repeat ratios rounded to 3 decimals; ":.2f" turns 1.775 into 1.77
    assert perf_report._2dp(1.775) == "1.78"
    assert perf_report._2dp(1.7749) == "1.77"
    assert perf_report._range([1.478, 1.775]) == "1.48-1.78"


def test_each_smollm2_online_run_has_its_own_row_with_its_repeat_count() -> None:
    folder = REPO / "benchmarks" / "results"
    rows = perf_report.trl_rows(folder)
    for name in ("dpo_vs_trl_smollm2", "dpo_vs_trl_smollm2_online_repeats"):
        result = json.loads((folder / f"{name}.json").read_text())
        s, r = result["settings"], result["ratios"]["online"]
        expected = (f"smollm2, {s['pairs']} pairs x {s['max_len']} tokens, online reference, "
                    f"{s['repeats']} repeats of {s['steps']} steps | "
                    f"{perf_report._2dp(r['speed_ours_over_trl'])}x pairs/s")  # fmt: skip
        assert sum(expected in row for row in rows) == 1, (expected, rows)
