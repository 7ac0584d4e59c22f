"""The study's preregistered numbers: each is stated in ``docs/STUDY_PROTOCOL.md`` (a test holds
the two to each other). Changing one after the protocol's final commit is a deviation.

Our choices (the papers fix none of them): the ranges, levels and thresholds below.
"""

from __future__ import annotations

import math

# Units (protocol section 2). A base's role comes from its pretraining seed.
CALIBRATION_BASES = (100, 101)
PLANNED_CALIBRATION_BASES = 2
PLANNED_TEST_BASES = 10
MIN_BASES = 5  # fewer test bases with a value: "insufficient"

# Verdicts (section 8).
ALPHA = 0.05  # familywise, Holm over the primary family
AGREE = 2 / 3  # share of test bases (rounded up) whose own estimate has the claimed sign
POWER = 0.8  # of the minimum detectable effect
N_BOOT = 4000

# Frontiers (section 6): x is the style share.
X_RANGE = (0.2, 0.8)
REACH_LEVELS = (0.2, 0.35, 0.5, 0.65, 0.8)
GRID_STEP = 0.01
MIN_COVERAGE = 0.5  # a unit whose two runs share less of X_RANGE has no gap: "not reached"

# The regime criterion (section 4), on DPO's median style-share curve over calibration runs.
CROSS = 0.5
CROSS_WINDOW = (0.25, 0.75)  # t50 / horizon
MIN_POINTS_BEFORE = 4  # evaluated steps (step 0 not counted) strictly before t50
COLLAPSE_DROP = 0.10  # the median never falls more than this below its running maximum
MIN_WELL_FORMED = 0.90  # median gen/well_formed at every evaluated step
FINAL_REACH = X_RANGE[1]  # the median at the last step reaches the top of the range
FRACTIONS = (1 / 32, 1 / 16, 1 / 8, 3 / 16, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 7 / 8, 1.0)
MIN_EVAL_POINTS = 8  # evaluated steps per run (step 0 not counted) below which a run deviates

# The design (sections 5, 7, 9).
MAIN = {"exposure": 0.1, "n_pairs": 128, "preferences": "concise"}
DEFAULT_BETA = 0.1
CONTROL_BETAS = (0.05, 0.1, 0.2)  # DPO's control frontier pools these
LAMBDAS = (0.003, 0.01, 0.03, 0.1)  # calibration candidates for the anchor weight
SCARCE = (4, 8, 16)  # training pairs pooled by P3, P4
MRPO_EPS = 0.1  # the MRPO paper's CTRO band
EPS_SWEEP_PAIRS = 8  # the eps sweep's training-set size (secondary)
K_PREFS = (1, 2, 3)  # the mixing axis
HET_TOPS = (0.8, 0.65, 0.5, 0.35)  # candidate tops of heterogeneity's x-range (calibrated)
EXPOSURES = (0.0, 0.01, 0.1, 0.3)  # the exposure axis (secondary)
LEGACY_ANCHOR = 0.01  # only for results without a calibration (a listed deviation)


def eval_steps(horizon: int) -> list[int]:
    """The evaluation schedule of a run of ``horizon`` steps: f * horizon rounded half up for
    each fraction, distinct and >= 1, the last being ``horizon`` itself (section 4)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1 step, got {horizon}")
    return sorted({max(1, math.floor(f * horizon + 0.5)) for f in FRACTIONS})


def on_test_bases(cells):
    """The rows of ``cells`` on the test bases (a ``role`` column; the calibration's runs chose
    the regime and are never pooled with them)."""
    return cells[cells["role"] == "test"]


def role(base: int | float | str) -> str:
    """``calibration`` for a calibration base, else ``test``."""
    try:
        return "calibration" if int(float(base)) in CALIBRATION_BASES else "test"
    except (TypeError, ValueError):
        return "test"
