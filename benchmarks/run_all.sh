#!/usr/bin/env bash
# The benchmarks behind the README's performance table (bapo_exp/analysis/perf_report.py reads
# their benchmarks/results/*.json), in the order BENCHMARKS.md reports them. On a quiet machine:
#   bash benchmarks/run_all.sh            # full (about 1 h on 2 cores, SmolLM2 is most of it);
#                                         # needs TRL: pip install -e '.[bench]'; then make readme
#   bash benchmarks/run_all.sh --quick    # smoke run of each script (CI: tests/test_benchmarks.py);
#                                         # writes runs/benchmarks_quick/, never benchmarks/results/
# THREADS=1 bash benchmarks/run_all.sh   # single-threaded (what was used under load)
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TQDM_DISABLE=1 WANDB_MODE=disabled
PY=${PY:-.venv/bin/python}
T=${THREADS:-2}
QUICK=0
for arg in "$@"; do [ "$arg" = --quick ] && QUICK=1; done
if [ "$QUICK" = 0 ] && ! $PY -c "import trl" 2>/dev/null; then
    echo "run_all.sh: the DPO-vs-TRL rows need TRL: pip install -e '.[bench]' (nothing was run)" >&2
    exit 2
fi
$PY benchmarks/mfu.py --threads "$T" "$@"
$PY benchmarks/method_overhead.py --threads "$T" "$@"
$PY benchmarks/dpo_vs_trl.py --model tiny --threads "$T" "$@"
$PY benchmarks/dpo_vs_trl.py --model smollm2 --threads "$T" "$@"
if [ "$QUICK" = 0 ]; then  # the previous configuration with more repeats: nothing new to smoke
    $PY benchmarks/dpo_vs_trl.py --model smollm2 --threads "$T" --modes online --repeats 3 \
        --steps 4 --warmup 2 --tag online_repeats "$@"
fi
$PY benchmarks/eval_throughput.py --threads "$T" "$@"
$PY benchmarks/verify_cost.py "$@"
$PY benchmarks/study_cell.py "$@"                          # issue 24 (threads: model.threads=1)
