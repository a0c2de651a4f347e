"""Shared pieces of every check: failing with a structured message, and thresholds
that remember their name so that calibration can record what was measured against them."""

from __future__ import annotations

import math
from typing import Any, NoReturn

from autograders.results import CheckFailure

_metrics: dict[str, float] = {}


class Threshold(float):
    """A float that knows which assignment-config key it came from.

    ``check_metric(...).below(thresholds["meteor_mse"])`` records the measured value
    under ``meteor_mse``; ``deepgrade calibrate`` collects those values over seeds.
    """

    key: str
    direction: str

    def __new__(cls, value: float, key: str, direction: str = "below") -> Threshold:
        obj = super().__new__(cls, value)
        obj.key = key
        obj.direction = direction
        return obj


def record_metric(threshold: Any, measured: float) -> None:
    """Remember a measured value if it is compared against a named threshold."""
    key = getattr(threshold, "key", None)
    if key is not None and isinstance(measured, int | float) and math.isfinite(measured):
        _metrics[key] = float(measured)


def take_metrics() -> dict[str, float]:
    """Return and clear the metrics recorded since the last call (one test's worth)."""
    taken = dict(_metrics)
    _metrics.clear()
    return taken


def fail(message: str, *, measured: Any = None, expected: Any = None, hint: str = "") -> NoReturn:
    raise CheckFailure(message, measured=measured, expected=expected, hint=hint)


def compare(measured: float, threshold: float, direction: str, what: str, hint: str = "") -> float:
    """Check ``measured`` against ``threshold`` (``below`` or ``above``), recording it."""
    record_metric(threshold, measured)
    if not math.isfinite(measured):
        fail(f"{what} is {measured}: it is not a finite number", measured=measured,
             expected=f"{direction} {float(threshold):.4g}", hint=hint or "training diverged: lower the learning rate or check the inputs for NaN")
    ok = measured <= threshold if direction == "below" else measured >= threshold
    if not ok:
        word = "at most" if direction == "below" else "at least"
        fail(f"{what} is {measured:.4g}; expected {word} {float(threshold):.4g}", measured=measured,
             expected=f"{word} {float(threshold):.4g}", hint=hint)
    return measured
