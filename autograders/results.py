"""Structured check results: what every check reports, whatever it measured.

A check either passes or raises :class:`CheckFailure`. The pytest plugin turns each
test into one :class:`CheckResult`, so feedback, the gradebook and analytics all read
the same record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

MAX_TEXT = 400


def describe(value: Any) -> Any:
    """A JSON-safe, short rendering of a measured or expected value."""
    if value is None or isinstance(value, bool | int | str):
        return value if not isinstance(value, str) else value[:MAX_TEXT]
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, tuple | list):
        return [describe(v) for v in value][:50]
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in list(value.items())[:50]}
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return describe(value.item())
        if isinstance(value, np.ndarray):
            return f"array{tuple(value.shape)} {value.dtype}"
    except ImportError:  # pragma: no cover - numpy is always installed
        pass
    return repr(value)[:MAX_TEXT]


class CheckFailure(AssertionError):
    """Raised by a check that did not pass. Carries what the student needs to fix it."""

    def __init__(self, message: str, *, measured: Any = None, expected: Any = None, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.measured = measured
        self.expected = expected
        self.hint = hint


@dataclass
class CheckResult:
    """One autograder test, graded: maps to one nbgrader grade cell and its points."""

    id: str
    grade_id: str
    points: float
    passed: bool
    measured: Any = None
    expected: Any = None
    message: str = ""
    hint: str = ""
    description: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def score(self) -> float:
        return self.points if self.passed else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured"] = describe(self.measured)
        data["expected"] = describe(self.expected)
        data["score"] = self.score
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckResult:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
