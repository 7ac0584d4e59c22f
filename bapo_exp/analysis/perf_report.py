"""The README's performance section, from the committed ``benchmarks/results/*.json``.

Every figure is read from a benchmark's result file (``bash benchmarks/run_all.sh`` rewrites
them); ratios are measured side by side in one run of the benchmark, per repeat.
"""

from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path


def _load(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def _machine(result: dict) -> str:
    m = result["machine"]
    load = m.get("loadavg_start")
    threads = f"{m['torch_threads']} thread" + ("s" if m["torch_threads"] != 1 else "")
    return f"{m['cpu']}, {threads}" + (f", load {load[0]:.1f}" if load else "")


def _2dp(value: float) -> str:
    """Two decimals, half up on the value as written (1.775 -> 1.78; ``:.2f`` gives 1.77, since
    the float 1.775 lies just below it)."""
    return str(Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def _range(values: list[float]) -> str:
    return f"{_2dp(min(values))}-{_2dp(max(values))}"


def trl_rows(folder: Path) -> list[str]:
    """Ours over TRL's DPOTrainer: training pairs per second and peak memory, per reference mode."""
    rows = []
    names = ["dpo_vs_trl", "dpo_vs_trl_smollm2"]
    if (folder / "dpo_vs_trl_smollm2_online_repeats.json").exists():  # full runs only (run_all.sh)
        names.append("dpo_vs_trl_smollm2_online_repeats")
    for name in names:
        result = _load(folder, name)
        s = result["settings"]
        for mode, r in result["ratios"].items():
            rows.append(
                f"| DPO step vs TRL | {s['model']}, {s['pairs']} pairs x {s['max_len']} tokens, "
                f"{mode} reference, {s['repeats']} repeats of {s['steps']} steps | "
                f"{_2dp(r['speed_ours_over_trl'])}x pairs/s (repeats "
                f"{_range(r['speed_per_repeat'])}); {_2dp(r['train_peak_ours_over_trl'])}x peak "
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


def eval_rows(folder: Path) -> list[str]:
    """Our lm-eval backend over lm-eval's HFLM (at its best batch size), and greedy generation
    over ``model.generate`` at batch 8 (the old default)."""
    result = _load(folder, "eval_throughput")
    rows = []
    for r in result["scoring"]:
        same = "identical choices" if r["identical_choices"] else "DIFFERENT choices"
        rows.append(
            f"| eval scoring vs lm-eval's HFLM | {r['model']}, {r['suite']} ({r['items']} items) | "
            f"{r['speedup_wall']:.2f}x wall, {r['speedup_cpu']:.2f}x CPU time; {same}, log-probs "
            f"within {r['max_abs_logprob_diff']:.1e} | {_machine(result)} |"
        )
    for r in result["generation"][1:]:
        same = "identical texts" if r["identical_texts_to_today"] else "DIFFERENT texts"
        rows.append(
            f"| greedy generation vs {result['generation'][0]['run'].removeprefix('today: ')} | "
            f"{r['run']}, {result['settings']['gen_prompts']} prompts x "
            f"{result['settings']['gen_new_tokens']} tokens | {r['speedup_wall_vs_today']:.2f}x "
            f"tokens/s ({r['speedup_cpu_vs_today']:.2f}x CPU); {same} | {_machine(result)} |"
        )
    return rows


def _vs(part: dict, before: str | None) -> str:
    """The in-training path's speedup over the checkpoint path of main before issue 24."""
    key = f"speedup_wall_vs_{before}"
    return f"; {part[key]:.2f}x wall vs main before issue 24 ({before})" if key in part else ""


def _floor(part: dict) -> str:
    """Eval's share if only the evaluated model's forwards took time (benchmarks since
    ``point.json`` records ``model_seconds``)."""
    if "eval_share_floor" not in part:
        return ""
    return (f" ({part['eval_model_s']:.1f} s inside the model's forwards: "
            f"{part['eval_share_floor']:.0%} if nothing else in eval took time)")  # fmt: skip


def study_cell_rows(folder: Path) -> list[str]:
    """A study cell and a grid, evaluated inside training vs from the kept checkpoints, and micro
    bases pretrained together vs one process each (``benchmarks/study_cell.py``; none if the
    benchmark has not been run)."""
    if not (folder / "study_cell.json").exists():
        return []
    result = _load(folder, "study_cell")
    cell, grid, pre = result["cell"], result["grid"], result["pretraining"]
    new, old = cell["in_training"], cell["checkpoints"]
    items = new["items"]
    same = "identical numbers" if cell["identical_numbers"] else "DIFFERENT numbers"
    setting = (f"micro base, DPO 80 steps, {new['eval_points']} evaluation points, "
               f"{items['gen/n']:.0f} generation prompts, "
               f"{items['synthetic_knowledge/n']:.0f} knowledge "
               f"+ {items['synthetic_alignment/n']:.0f} alignment items")  # fmt: skip
    before = result["settings"].get("before")
    return [
        f"| study cell, eval in training vs from checkpoints | {setting} | "
        f"{cell['speedup_wall']:.2f}x wall ({new['wall_s']:.0f} vs {old['wall_s']:.0f} s), "
        f"{cell['speedup_cpu']:.2f}x CPU{_vs(cell, before)}; eval {new['eval_share']:.0%} vs "
        f"{old['eval_share']:.0%} of the cell{_floor(new)}; {same} | {_machine(result)} |",
        f"| grid of {result['settings']['grid_cells']} such cells | "
        f"{result['settings']['launcher']} | {grid['speedup_wall']:.2f}x wall "
        f"({grid['in_training']['wall_s']:.0f} vs {grid['checkpoints']['wall_s']:.0f} s), "
        f"{grid['speedup_cpu']:.2f}x CPU{_vs(grid, before)} | {_machine(result)} |",
        f"| micro bases pretrained together vs one process each | {pre['bases']} bases x "
        f"{pre['steps']} steps, 2 processes | {pre['speedup_wall']:.2f}x wall "
        f"({pre['together']['per_base_wall_s']:.0f} vs "
        f"{pre['one_process_per_base']['per_base_wall_s']:.0f} s per base) | {_machine(result)} |",
    ]


def markdown(folder: Path) -> str:
    rows = trl_rows(folder) + overhead_rows(folder) + mfu_rows(folder) + eval_rows(folder)
    rows += study_cell_rows(folder)
    head = ["| measure | setting | result | machine |", "| --- | --- | --- | --- |"]
    return "\n".join(head + rows) + "\n"
