"""Shared pieces of every check: failing with a structured message, and thresholds
that remember their name so that calibration can record what was measured against them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
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


class Hidden:
    """An expected value that is the answer itself (a parameter count, a probability): checks
    compare with it but never show it, so feedback cannot hand the student the answer.

    ``check_model(m).has_params(total=Hidden(n))``; ``fail(..., expected=Hidden(n))`` shows
    :data:`NOT_SHOWN` instead of ``n``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value.value if isinstance(value, Hidden) else value

    def __repr__(self) -> str:
        return NOT_SHOWN


NOT_SHOWN = "not shown: it is yours to compute"


def reveal(value: Any) -> Any:
    """The value to compare with, whether or not it is :class:`Hidden`."""
    return value.value if isinstance(value, Hidden) else value


def fail(message: str, *, measured: Any = None, expected: Any = None, hint: str = "") -> NoReturn:
    if isinstance(expected, Hidden):
        expected = NOT_SHOWN
    raise CheckFailure(message, measured=measured, expected=expected, hint=hint)


@contextmanager
def from_student(what: str, hint: str = "") -> Iterator[None]:
    """Calls into a student's object (``predict``, ``get_weights``, a layer's output...).

    Whatever such a call raises is the student's doing, so it becomes a failed check that says
    which call failed; only the exception's type is shown (its text may quote hidden data).
    Code of ours outside this block is not covered: an exception there is a checker bug and
    stays one (``deepgrade validate`` reports it as a crash).
    """
    try:
        yield
    except CheckFailure:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        fail(f"{what} failed with {kind}", measured=kind, expected="no error",
             hint=hint or "run the same call on your object in the notebook to see the error; the usual "
                          "causes are a shape that differs from the exercise's or a model that was not built")


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
