#!/usr/bin/env bash
# Every benchmark of issue #10, in the order BENCHMARKS.md reports them. Run on a quiet machine:
#   bash benchmarks/run_all.sh            # full (about 1 h on 2 cores, SmolLM2 is most of it)
#   bash benchmarks/run_all.sh --quick    # a short smoke run of each script
# THREADS=1 bash benchmarks/run_all.sh   # single-threaded (what was used under load)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 WANDB_MODE=disabled
PY=.venv/bin/python
T=${THREADS:-2}
$PY benchmarks/mfu.py --threads "$T" "$@"
$PY benchmarks/method_overhead.py --threads "$T" "$@"
$PY benchmarks/dpo_vs_trl.py --model tiny --threads "$T" "$@"
$PY benchmarks/dpo_vs_trl.py --model smollm2 --threads "$T" "$@"
$PY benchmarks/dpo_vs_trl.py --model smollm2 --threads "$T" --modes online --repeats 3 \
    --steps 4 --warmup 2 --tag online_repeats "$@"
$PY benchmarks/eval_throughput.py --threads "$T" "$@"
$PY benchmarks/verify_cost.py "$@"
$PY benchmarks/study_cell.py "$@"                          # issue 24 (threads: model.threads=1)
