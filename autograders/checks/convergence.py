"""Checks on learning curves, and a short seeded re-training of a submitted architecture.

A single noisy epoch should neither pass nor fail a student, so "the loss decreases" is
judged on the whole curve: a rank correlation with the epoch number (Kendall's tau) and
the drop between the medians of the first and last thirds, never first versus last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from autograders.checks.base import compare, fail
from autograders.checks.metrics import unpack_data

_ALIASES = {"acc": "accuracy", "accuracy": "acc", "val_acc": "val_accuracy", "val_accuracy": "val_acc"}


def _history_dict(history: Any) -> Mapping[str, Any]:
    if isinstance(history, Mapping):
        return history
    inner = getattr(history, "history", None)
    if isinstance(inner, Mapping):
        return inner
    kind = "None" if history is None else type(history).__name__
    fail(f"expected a training history, got {kind}", measured=kind, expected="a History or a dict of lists",
         hint="keep what fit returns: history = model.fit(...), and pass history (or history.history)")


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def kendall_tau(values: Any) -> float:
    """Kendall's tau-b between the epoch number and ``values`` (ties in the values allowed), in
    O(n log n): a history of any length costs little (a pairwise matrix of 14,000 epochs took 5 GB)."""
    from scipy.stats import kendalltau

    v = np.asarray(values, dtype=np.float64)
    if v.size < 2:
        return 0.0
    tau = kendalltau(np.arange(v.size), v).statistic
    return 0.0 if math.isnan(tau) else float(tau)


class HistoryCheck:
    """Chainable checks on one series of a training history (``loss``, ``val_accuracy``...)."""

    def __init__(self, history: Mapping[str, Any], metric: str = "loss") -> None:
        key = metric
        if key not in history and _ALIASES.get(metric) in history:
            key = _ALIASES[metric]
        if key not in history:
            keys = sorted(map(str, history))
            if metric.startswith("val_"):
                hint = "pass validation_data=(x_val, y_val) or validation_split=0.2 to model.fit(...)"
            elif metric != "loss":
                hint = f"add '{metric}' to the metrics in model.compile(..., metrics=['{metric}'])"
            else:
                hint = "pass the History that model.fit(...) returns"
            fail(f"the history has no '{metric}'; it has {keys}", measured=keys, expected=metric, hint=hint)
        self.metric = key
        self.history = history
        self.values = np.asarray([_as_float(v) for v in np.ravel(np.asarray(history[key], dtype=object))],
                                 dtype=np.float64)
        if self.values.size == 0:
            fail(f"the history's '{key}' is empty: no epoch was trained", measured=0, expected="at least 1 epoch",
                 hint="call model.fit(..., epochs=...) and keep what it returns")

    @property
    def epochs(self) -> int:
        return int(self.values.size)

    def has_epochs(self, n: int | None = None, at_least: int | None = None) -> HistoryCheck:
        count = self.epochs
        if n is not None and count != n:
            fail(f"the history has {count} epochs; expected {n}", measured=count, expected=n,
                 hint=f"train with model.fit(..., epochs={n})" + (
                     "; EarlyStopping, if used, may have stopped it sooner" if count < n else ""))
        if at_least is not None and count < at_least:
            fail(f"the history has {count} epochs; expected at least {at_least}", measured=count,
                 expected=f"at least {at_least}", hint=f"train for more epochs: model.fit(..., epochs={at_least})")
        return self

    def is_finite(self) -> HistoryCheck:
        bad = np.flatnonzero(~np.isfinite(self.values))
        if bad.size:
            epoch = int(bad[0]) + 1
            fail(f"the {self.metric} is {self.values[bad[0]]} at epoch {epoch} (of {self.epochs})",
                 measured={"first_bad_epoch": epoch, "bad_epochs": int(bad.size)}, expected="finite at every epoch",
                 hint="training diverged: lower the learning rate, scale the inputs, and check the data for NaN")
        return self

    def _trend(self, sign: float, min_tau: float, min_change: float) -> HistoryCheck:
        """Shared body of decreases (``sign`` +1) and increases (``sign`` -1).

        ``min_tau`` is in the natural direction (negative for a decrease); ``change`` is the
        improvement from the first-third median to the last-third median, as a fraction."""
        n = self.epochs
        if n < 3:
            fail(f"the {self.metric} has only {n} epoch(s); at least 3 are needed to judge the trend",
                 measured=n, expected="at least 3 epochs", hint="train for more epochs")
        self.is_finite()
        tau = kendall_tau(self.values)
        improving_tau, needed_tau = -sign * tau, -sign * min_tau
        third = max(1, n // 3)
        first_med = float(np.median(self.values[:third]))
        last_med = float(np.median(self.values[-third:]))
        change = sign * (first_med - last_med) / (abs(first_med) or 1.0)
        measured = {"kendall_tau": tau, "change": change, "epochs": n}
        expected = {"kendall_tau": f"{'<=' if sign > 0 else '>='} {min_tau:+.2f}", "change": f">= {min_change:.0%}"}
        verb = "decrease" if sign > 0 else "increase"
        if improving_tau < needed_tau:
            trend = f"Kendall tau between epoch and {self.metric} is {tau:+.2f}; expected {expected['kendall_tau']}"
            if improving_tau <= -0.3:
                message = f"the {self.metric} does not {verb}: it goes the other way over training ({trend})"
                hint = (f"the {self.metric} grows: lower the learning rate, scale the inputs" if sign > 0 else
                        f"the {self.metric} gets worse: lower the learning rate, scale the inputs")
            elif (np.max(self.values) - np.min(self.values)) / (abs(first_med) or 1.0) < 2 * min_change:
                message = f"the {self.metric} does not {verb}: it stays flat ({trend}; change {change:+.0%})"
                hint = (f"the {self.metric} does not move: was the model trained? check fit(...) was called with "
                        "enough epochs and that the learning rate is not tiny")
            else:
                message = f"the {self.metric} does not {verb} steadily: it goes up and down ({trend})"
                hint = (f"the {self.metric} goes up and down during training: lower the learning rate or use a "
                        "larger batch size")
            fail(message, measured=measured, expected=expected, hint=hint)
        if change < min_change:
            word = "falls" if sign > 0 else "rises"
            fail(f"the {self.metric} {word} by only {change:.0%} from the first to the last third of training "
                 f"(medians {first_med:.4g} and {last_med:.4g}); expected at least {min_change:.0%}",
                 measured=measured, expected=expected, hint="train for more epochs, or raise the learning rate a little")
        return self

    def decreases(self, min_tau: float = -0.3, min_drop: float = 0.1) -> HistoryCheck:
        """A robust downward trend: Kendall tau <= ``min_tau`` and the median of the last third at
        least ``min_drop`` (a fraction) below the median of the first third. Needs 3 epochs."""
        return self._trend(1.0, min_tau, min_drop)

    def increases(self, min_tau: float = 0.3, min_gain: float = 0.1) -> HistoryCheck:
        """The mirror of :meth:`decreases`, for accuracy-like series."""
        return self._trend(-1.0, min_tau, min_gain)

    def _fail_hint_final(self, best_index: int) -> str:
        final, best = self.values[-1], self.values[best_index]
        if best_index < self.epochs - 1 and self.metric.startswith("val_"):
            return (f"the {self.metric} was best at epoch {best_index + 1} ({best:.4g}) and ended at {final:.4g}: "
                    "the model overfits; use EarlyStopping(restore_best_weights=True), dropout or fewer epochs")
        return "train for more epochs, or tune the learning rate"

    def final_below(self, bound: float) -> HistoryCheck:
        hint = self._fail_hint_final(int(np.nanargmin(self.values)) if np.isfinite(self.values).any() else 0)
        compare(float(self.values[-1]), bound, "below", f"the final {self.metric} (epoch {self.epochs})", hint)
        return self

    def final_above(self, bound: float) -> HistoryCheck:
        hint = self._fail_hint_final(int(np.nanargmax(self.values)) if np.isfinite(self.values).any() else 0)
        compare(float(self.values[-1]), bound, "above", f"the final {self.metric} (epoch {self.epochs})", hint)
        return self

    def best_below(self, bound: float) -> HistoryCheck:
        return self._best(bound, "below")

    def best_above(self, bound: float) -> HistoryCheck:
        return self._best(bound, "above")

    def _best(self, bound: float, direction: str) -> HistoryCheck:
        """The best finite epoch (lowest for ``below``, highest for ``above``) against ``bound``."""
        finite = np.isfinite(self.values)
        pick = np.nanargmin if direction == "below" else np.nanargmax
        index = int(pick(np.where(finite, self.values, np.nan))) if finite.any() else 0
        compare(float(self.values[index]), bound, direction, f"the best {self.metric} (epoch {index + 1})",
                "even the best epoch is not good enough: train longer, tune the learning rate, check the inputs")
        return self


def check_history(history: Any, metric: str = "loss") -> HistoryCheck:
    """Start checking one series of a History (or of its ``.history`` dict)."""
    return HistoryCheck(_history_dict(history), metric)


# --------------------------------------------------------------------------- re-training


def _fresh(obj: Any, module: Any) -> Any:
    """A new loss/metric/optimizer object from a compile-config entry (strings stay strings)."""
    if obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, list | tuple):
        return [_fresh(o, module) for o in obj]
    if isinstance(obj, Mapping) and "class_name" not in obj:
        return {k: _fresh(v, module) for k, v in obj.items()}
    if isinstance(obj, Mapping):
        return module.deserialize(dict(obj))
    return module.deserialize(module.serialize(obj))


def training_setup(model: Any, default_loss: Any) -> tuple[Any, Any, Any]:
    """Optimizer, loss and metrics as the student compiled them, each a fresh object."""
    import keras

    try:
        config = model.get_compile_config() or {}
    except Exception:
        config = {}
    optimizer = config.get("optimizer") or getattr(model, "optimizer", None)
    if optimizer is None:
        return keras.optimizers.Adam(), default_loss, None
    try:
        if isinstance(optimizer, str):
            optimizer = keras.optimizers.get(optimizer)
        elif isinstance(optimizer, Mapping):
            optimizer = keras.optimizers.deserialize(dict(optimizer))
        else:
            optimizer = type(optimizer).from_config(optimizer.get_config())
    except Exception as exc:
        fail(f"the model's optimizer could not be copied for re-training ({type(exc).__name__})",
             measured=type(exc).__name__, expected="a Keras optimizer",
             hint="compile with a built-in optimizer, e.g. keras.optimizers.Adam(learning_rate=...)")
    # A loss holds no state, so the live object is reused: it is exactly what the student
    # compiled, even for a function that has no safe serialized form (a lambda)
    loss = getattr(model, "loss", None)
    if loss is None and config.get("loss") is not None:
        try:
            loss = _fresh(config["loss"], keras.losses)
        except Exception:
            loss = None
    try:  # metrics keep running totals, so each copy gets new ones
        metrics = _drop_unknown(_fresh(config.get("metrics"), keras.metrics))
    except Exception:
        metrics = None
    return optimizer, loss if loss is not None else default_loss, metrics


def _drop_unknown(metrics: Any) -> Any:
    """Leave out metrics that could not be rebuilt (a lambda comes back as ``"__lambda__"``)."""
    if isinstance(metrics, list):
        return [_drop_unknown(m) for m in metrics if not (isinstance(m, str) and m.startswith("__"))]
    if isinstance(metrics, dict):
        return {k: _drop_unknown(v) for k, v in metrics.items()}
    return metrics


def fresh_copy(model: Any, *, seed: int) -> Any:
    """The submitted architecture with new weights drawn after ``keras.utils.set_random_seed(seed)``:
    the same seed gives the same copy. It is not compiled."""
    import keras

    keras.utils.set_random_seed(seed)
    try:
        return keras.models.clone_model(model)
    except Exception:
        # clone_model also restores the compile config, which fails for losses such as lambdas
        # that cannot be deserialized safely; the architecture alone is all that is needed here
        keras.utils.set_random_seed(seed)
    try:
        return type(model).from_config(model.get_config())
    except Exception as exc:
        fail(f"the model could not be rebuilt for re-training ({type(exc).__name__})",
             measured=type(exc).__name__, expected="a model that keras.models.clone_model can copy",
             hint="build the model with keras.Sequential or the functional API; custom layers need get_config()")


def retrain(model: Any, train_data: Any, *, epochs: int, seed: int, batch_size: int = 32,
            validation_split: float = 0.0, loss: Any = "mse") -> dict[str, list[float]]:
    """Train a fresh copy of the submitted architecture, seeded, and return its history.

    The copy has new weights (``clone_model`` after ``keras.utils.set_random_seed(seed)``) and the
    student's optimizer class, config, loss and metrics; an uncompiled model gets Adam and ``loss``.
    The same seed gives the same history, so a grade does not depend on luck.
    """
    from autograders.checks.keras_checks import check_model

    check_model(model)
    x, y = unpack_data(train_data, "training data")
    optimizer, compiled_loss, metrics = training_setup(model, loss)
    clone = fresh_copy(model, seed=seed)
    clone.compile(optimizer=optimizer, loss=compiled_loss, metrics=metrics)
    try:
        fitted = clone.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
                           shuffle=True, verbose=0)
    except Exception as exc:  # the message may quote data values, so only its type is shown
        fail(f"re-training the model failed ({type(exc).__name__})", measured=type(exc).__name__,
             expected="a model that trains on the data",
             hint="check that the model's input and output shapes match the data and that the loss fits the labels")
    return {str(k): [float(v) for v in values] for k, values in fitted.history.items()}


def check_retraining(model: Any, train_data: Any, *, epochs: int, seed: int, metric: str = "loss",
                     **kw: Any) -> HistoryCheck:
    """Re-train the architecture (see :func:`retrain`) and check the resulting learning curve."""
    return check_history(retrain(model, train_data, epochs=epochs, seed=seed, **kw), metric)
