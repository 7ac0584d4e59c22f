"""Results of many runs: load, aggregate over seeds, plot (STYLE §18).

from bapo_exp.analysis import load_runs, aggregate
df = load_runs("runs/fig5_drift")
"""

from bapo_exp.analysis.aggregate import add_forgetting, aggregate, base_scores, pick_metric
from bapo_exp.analysis.load import find_run_dirs, load_metrics, load_runs, read_run

__all__ = [
    "add_forgetting",
    "aggregate",
    "base_scores",
    "find_run_dirs",
    "load_metrics",
    "load_runs",
    "pick_metric",
    "read_run",
]
