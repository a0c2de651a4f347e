"""The false-fail bound that ``deepgrade calibrate`` writes beside each threshold, checked by
simulation: thresholds chosen from 20 seeds of a known distribution fail a correct run at most 1 %
of the time in at least 95 % of calibrations (the bound is what it says), and the bound grows as a
threshold comes closer to the runs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from autograders.calibrate import (
    MAX_FALSE_FAIL,
    false_fail_bound,
    lenient,
    observed_bound,
    one_percent_threshold,
)


@pytest.mark.parametrize("direction", ["above", "below"])
def test_one_percent_thresholds_hold_in_95_percent_of_calibrations(direction: str) -> None:
    rng = np.random.default_rng(0)
    true_rates = []
    for _ in range(2000):
        runs = rng.normal(0.8, 0.05, size=20).tolist()
        threshold = one_percent_threshold(runs, direction)
        assert false_fail_bound(runs, threshold, direction) == pytest.approx(MAX_FALSE_FAIL)
        z = (threshold - 0.8) / 0.05
        true_rates.append(stats.norm.cdf(z) if direction == "above" else stats.norm.sf(z))
    held = np.mean(np.array(true_rates) <= MAX_FALSE_FAIL)
    assert held >= 0.95, f"the 1 % bound held in only {held:.1%} of calibrations"
    assert np.median(true_rates) < 0.002, "and the thresholds are not needlessly far out"


def test_the_bound_grows_as_the_threshold_nears_the_runs() -> None:
    runs = [0.90, 0.88, 0.91, 0.87, 0.89, 0.92, 0.90, 0.86, 0.90, 0.89]
    bounds = [false_fail_bound(runs, t, "above") for t in (0.70, 0.80, 0.84, 0.86, 0.90)]
    assert bounds == sorted(bounds) and bounds[0] < 1e-6 and bounds[-1] > 0.5
    assert false_fail_bound([0.5] * 5, 0.4, "above") == 0.0 and false_fail_bound([0.5] * 5, 0.6, "above") == 1.0
    assert lenient(0.7, 0.8, "above") == 0.7 and lenient(0.7, 0.8, "below") == 0.8


def test_seeds_alone_prove_little_which_is_why_the_model_is_needed() -> None:
    assert observed_bound(0, 20) == pytest.approx(1 - 0.05 ** (1 / 20))  # about 14 %
    assert observed_bound(0, 300) < 0.01 < observed_bound(0, 298)
