"""Procedure checks: what the model artifact says about how it was trained.

A metric cannot always tell a prescribed procedure from a mistake: a four-parameter stacked model
fitted on the seasons it is then tested on scores almost as well as one fitted before them. The
artifact still carries evidence the student did not write: the optimizer's step count, saved
with the model. ``fit`` takes ``ceil(rows / batch_size)`` steps per epoch on the rows it trains on
(after ``validation_split`` keeps back the last ``floor``-rounded share), so for a prescribed
``epochs`` and ``batch_size`` the count says which rows were fitted.

Only a count that matches a known wrong procedure, and not the prescribed one, fails: a count that
matches neither (another batch size, a second ``fit`` call) proves nothing about the rows and
passes, so correct solutions written differently keep their points.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from .base import fail


@dataclass(frozen=True)
class Fit:
    """One way to call ``fit``: how many rows, and with which settings."""

    rows: int
    epochs: int
    batch_size: int = 32
    validation_split: float = 0.0

    @property
    def steps(self) -> int:
        """The optimizer steps this fit takes (Keras rounds the training share down)."""
        trained = math.floor(self.rows * (1.0 - self.validation_split)) if self.validation_split else self.rows
        return self.epochs * math.ceil(trained / self.batch_size)


def optimizer_steps(model) -> int | None:
    """The step count saved with a compiled, trained model; None when the artifact has none."""
    optimizer = getattr(model, "optimizer", None)
    try:
        return int(optimizer.iterations.numpy()) if optimizer is not None else None
    except (AttributeError, TypeError, ValueError):
        return None


def check_fitted_like(model, name: str, prescribed: Fit, mistakes: Mapping[str, Fit], hint: str) -> None:
    """Fail when the optimizer's step count matches one of ``mistakes`` (described by its key, e.g.
    "every season, the test seasons included") and not the ``prescribed`` fit."""
    steps = optimizer_steps(model)
    if steps is None or steps == prescribed.steps:
        return
    for described, fit in mistakes.items():
        if steps == fit.steps and fit.steps != prescribed.steps:
            fail(
                f"{name} took {steps} optimizer steps, as a fit on {described} does "
                f"({fit.rows} rows); the prescribed fit takes {prescribed.steps}",
                measured=f"{steps} steps",
                expected=f"{prescribed.steps} steps ({prescribed.rows} rows, {prescribed.epochs} epochs, "
                f"batch_size={prescribed.batch_size})",
                hint=hint,
            )
