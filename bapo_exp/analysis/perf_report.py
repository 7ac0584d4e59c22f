"""The README's performance section, from the committed ``benchmarks/results/*.json``.

Every figure is read from a benchmark's result file (``bash benchmarks/run_all.sh`` rewrites
them); ratios are measured side by side in one run of the benchmark, per repeat.
"""

from __future__ import annotations

import json
from pathlib import Path


def _load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def _machine(result: dict) -> str:
    m = result["machine"]
    return f"{m['cpu']}, {m['torch_threads']} threads"


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def trl_rows(folder: Path) -> list[str]:
    """Ours over TRL's DPOTrainer: training pairs per second and peak memory, per reference mode."""
    rows = []
    for name in ("dpo_vs_trl", "dpo_vs_trl_smollm2"):
        result = _load(folder, name)
        s = result["settings"]
        for mode, r in result["ratios"].items():
            rows.append(
                f"| DPO step vs TRL | {s['model']}, {s['pairs']} pairs x {s['max_len']} tokens, "
                f"{mode} reference | {r['speed_ours_over_trl']:.2f}x pairs/s (repeats "
                f"{_range(r['speed_per_repeat'])}); {r['train_peak_ours_over_trl']:.2f}x peak "
                f"memory | {_machine(result)} |"
            )
    return rows


def overhead_rows(folder: Path) -> list[str]:
    """Each method's step time over DPO's, same model and batch."""
    result = _load(folder, "method_overhead")
    s = result["summary"]
    parts = [f"{m} {s[m]['ratio_wall']:.2f}x (rounds {_range(s[m]['ratio_wall_per_round'])})"
             for m in s if m != "dpo"]  # fmt: skip
    return [f"| step time over DPO's | {result['settings']['model']} | {'; '.join(parts)} | "
            f"{_machine(result)} |"]  # fmt: skip


def mfu_rows(folder: Path) -> list[str]:
    """Model FLOP utilisation of the training step against the machine's measured matmul peak."""
    result = _load(folder, "mfu")
    r = result["result"]
    return [f"| model FLOP utilisation | {r['params']['total'] / 1e6:.1f}M Llama, "
            f"{result['settings']['pairs']} pairs | {r['mfu_median']:.2f} of the measured matmul "
            f"peak ({result['peak']['peak_gflops']:.0f} GFLOP/s), median step | "
            f"{_machine(result)} |"]  # fmt: skip


def markdown(folder: Path) -> str:
    rows = trl_rows(folder) + overhead_rows(folder) + mfu_rows(folder)
    head = ["| measure | setting | result | machine |", "| --- | --- | --- | --- |"]
    return "\n".join(head + rows) + "\n"
