"""A metric of a model (or of its predictions) on one data split, against a threshold.

The data may be the hidden split, so messages only give shapes, counts and the metric
value itself. A metric measures what it can: predictions with extra axes of size 1 (a missing
``Flatten`` gives ``(None, 1, 1)``) are squeezed and measured, and one sigmoid column is
measured against two-column one-hot labels, so a structural mistake costs the structure check's
points, not every metric's too. Thresholds go through :func:`autograders.checks.base.compare`, which
records the measured value under a :class:`~autograders.checks.base.Threshold`'s key
for ``deepgrade calibrate``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from autograders.checks.base import compare, fail

METRICS = ("accuracy", "binary_accuracy", "mae", "mse", "rmse", "r2", "log_loss")
_ALIASES = {
    "acc": "accuracy", "categorical_accuracy": "accuracy", "sparse_categorical_accuracy": "accuracy",
    "mean_absolute_error": "mae", "mean_squared_error": "mse", "root_mean_squared_error": "rmse",
    "r_squared": "r2", "r2_score": "r2", "logloss": "log_loss", "crossentropy": "log_loss",
    "binary_crossentropy": "log_loss", "categorical_crossentropy": "log_loss",
}
_LOWER_IS_BETTER = {"mae", "mse", "rmse", "log_loss"}
_EPS = 1e-7


def _canonical_metric(metric: str) -> str:
    name = _ALIASES.get(metric.lower(), metric.lower())
    if name not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    return name


def _fmt_shape(shape: Sequence[Any]) -> str:
    inner = ", ".join("None" if d is None else str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


def _columns(array: np.ndarray) -> int:
    return 1 if array.ndim <= 1 else int(np.prod(array.shape[1:]))


def unpack_data(data: Any, what: str = "data") -> tuple[Any, Any]:
    """``(x, y)`` from a tuple ``(x, y)`` or a dict with ``"x"`` and ``"y"``."""
    if isinstance(data, Mapping):
        if "x" not in data or "y" not in data:
            fail(f"the {what} has no 'x' and 'y'", measured=sorted(map(str, data)), expected=["x", "y"],
                 hint="pass the data as (x, y) or {'x': x, 'y': y}")
        return data["x"], data["y"]
    if isinstance(data, tuple | list) and len(data) == 2:
        return data[0], data[1]
    fail(f"the {what} should be a pair (x, y), got {type(data).__name__}", measured=type(data).__name__,
         expected="(x, y)", hint="pass the data as (x, y) or {'x': x, 'y': y}")


def _numeric(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        fail(f"the {what} cannot be turned into an array (rows of different lengths?)", measured="ragged",
             expected="an array", hint="make every row the same length")
    if array.dtype.kind not in "biuf":
        fail(f"the {what} are not numeric: dtype {array.dtype}", measured=str(array.dtype), expected="numbers",
             hint="convert them to numbers (e.g. encode the class names as integers)")
    return array


class _Source:
    """Who made the predictions, for messages: the model (shape with batch None) or an array."""

    def __init__(self, from_model: bool) -> None:
        self.from_model = from_model

    def has(self, pred: np.ndarray) -> str:
        if self.from_model:
            return f"the model outputs {_fmt_shape((None, *pred.shape[1:]))}"
        return f"the predictions have shape {_fmt_shape(pred.shape)}"


def _columns_mismatch(source: _Source, pred: np.ndarray, true: np.ndarray, hint: str) -> NoReturn:
    cols = _columns(true)
    fail(f"{source.has(pred)} but the labels have {cols} column{'s' if cols != 1 else ''}",
         measured=_fmt_shape((None, *pred.shape[1:])), expected=f"{cols} column{'s' if cols != 1 else ''}",
         hint=hint)


def _squeeze_column(array: np.ndarray) -> np.ndarray:
    return array.reshape(-1) if array.ndim == 2 and array.shape[1] == 1 else array


def _drop_unit_axes(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """``(n, 1, 1)`` -> ``(n, 1)`` and ``(n, 1, 10)`` -> ``(n, 10)``: axes of size 1 that the labels do not
    have carry no values, so dropping them changes no prediction."""
    if pred.ndim <= 2 or pred.ndim <= true.ndim:
        return pred
    kept = [d for d in pred.shape[1:] if d != 1]
    if len(kept) > 1:  # several axes with values: not a missing Flatten, measured (or refused) as it is
        return pred
    return pred.reshape(len(pred), kept[0] if kept else 1)


def _binary_column(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Two-column one-hot labels as the 0/1 column that one sigmoid output predicts."""
    if _columns(pred) == 1 and true.ndim == 2 and true.shape[1] == 2 and np.isin(true, (0, 1)).all() \
            and np.all(true.sum(axis=1) == 1):
        return true[:, 1]
    return true


def _class_labels(true: np.ndarray, pred: np.ndarray, source: _Source, n_classes: int) -> np.ndarray:
    """Integer labels from one-hot or integer ``true``, matched against class scores ``pred``."""
    if true.shape == pred.shape:
        return np.argmax(true, axis=-1)
    if true.shape == pred.shape[:-1] or true.shape == (*pred.shape[:-1], 1):
        labels = true.reshape(pred.shape[:-1])
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            fail("the labels are not whole numbers, so they are not class indices", measured=str(labels.dtype),
                 expected="integer class labels", hint="accuracy needs class labels: is this a regression task?")
        outside = int(((labels < 0) | (labels >= n_classes)).sum())
        if outside:
            fail(f"{outside} labels are not among the model's {n_classes} classes", measured=n_classes,
                 expected="more output units",
                 hint="the last layer needs one unit per class: count the classes in the labels")
        return labels.astype(np.int64)
    _columns_mismatch(source, pred, true,
                      hint=f"the last layer needs one unit per class ({_columns(true)} here), with softmax"
                      if _columns(true) > 1 else "the labels and the output must have the same number of columns")


def _binary_labels(true: np.ndarray, what: str) -> np.ndarray:
    values = np.unique(true)
    if not np.isin(values, (0, 1)).all():
        fail(f"{what} needs 0/1 labels with one output column; the labels have {values.size} distinct values",
             measured=f"{values.size} distinct values", expected="0 and 1",
             hint="for several classes, end the model with one unit per class and softmax")
    return true


def _accuracy(true: np.ndarray, pred: np.ndarray, source: _Source) -> float:
    if _columns(pred) > 1:
        n_classes = int(pred.shape[-1])
        labels = _class_labels(true, pred, source, n_classes)
        return float(np.mean(np.argmax(pred, axis=-1) == labels))
    pred = pred.reshape(-1)
    if _columns(true) > 1:
        _columns_mismatch(source, pred.reshape(-1, 1), true,
                          hint=f"the labels are one-hot with {_columns(true)} classes: end the model with "
                               f"Dense({_columns(true)}, activation='softmax')")
    true = true.reshape(-1)
    if pred.dtype.kind in "biu":  # class indices already
        return float(np.mean(pred == true))
    _binary_labels(true, "accuracy")
    return float(np.mean((pred >= 0.5) == (true >= 0.5)))


def _same_shape(true: np.ndarray, pred: np.ndarray, source: _Source, metric: str) -> tuple[np.ndarray, np.ndarray]:
    true, pred_s = _squeeze_column(true), _squeeze_column(pred)
    if true.shape != pred_s.shape:
        if metric in ("mae", "mse", "rmse", "r2"):
            hint = (f"a regression model needs one output per target: end with Dense({_columns(true)}) and no activation"
                    if _columns(pred) != _columns(true) else "reshape the predictions to the labels' shape")
        else:
            hint = "the output needs one column per label"
        _columns_mismatch(source, pred, true, hint)
    return true.astype(np.float64), pred_s.astype(np.float64)


def _r2(true: np.ndarray, pred: np.ndarray) -> float:
    true2, pred2 = true.reshape(len(true), -1), pred.reshape(len(pred), -1)
    scores = []
    for col in range(true2.shape[1]):
        ss_res = float(np.sum((true2[:, col] - pred2[:, col]) ** 2))
        ss_tot = float(np.sum((true2[:, col] - true2[:, col].mean()) ** 2))
        if ss_tot == 0.0:  # as scikit-learn: a constant target is fit perfectly or not at all
            scores.append(1.0 if ss_res == 0.0 else 0.0)
        else:
            scores.append(1.0 - ss_res / ss_tot)
    return float(np.mean(scores))


def _log_loss(true: np.ndarray, pred: np.ndarray, source: _Source) -> float:
    outside = int(((pred < 0) | (pred > 1)).sum())
    if outside:
        fail(f"{outside} predicted values are outside [0, 1], so they are not probabilities",
             measured=f"{outside} values outside [0, 1]", expected="probabilities",
             hint="end the model with a sigmoid (yes/no) or softmax (classes) activation; it outputs raw scores")
    clipped = np.clip(pred.astype(np.float64), _EPS, 1 - _EPS)
    if _columns(pred) == 1:
        y = _binary_labels(true.reshape(-1), "log loss").astype(np.float64)
        p = clipped.reshape(-1)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    if true.shape == pred.shape and not (np.allclose(true.sum(axis=-1), 1.0)
                                         and np.allclose(pred.sum(axis=-1), 1.0, atol=1e-3)):
        # several labels per example: one yes/no cross-entropy per column
        y = _binary_labels(true, "multi-label log loss").astype(np.float64)
        return float(-np.mean(y * np.log(clipped) + (1 - y) * np.log(1 - clipped)))
    labels = _class_labels(true, pred, source, int(pred.shape[-1]))
    probs = clipped / clipped.sum(axis=-1, keepdims=True)
    picked = np.take_along_axis(probs, labels[..., None], axis=-1)
    return float(-np.mean(np.log(picked)))


def _compute(y_true: Any, y_pred: Any, metric: str, source: _Source) -> float:
    name = _canonical_metric(metric)
    true = _numeric(y_true, "labels")
    pred = _numeric(y_pred, "predictions")
    if true.ndim == 0 or pred.ndim == 0:
        fail("the labels and predictions must be arrays, one row per example", measured="a single number",
             expected="arrays", hint="pass all the labels and all the predictions")
    if len(true) != len(pred):
        fail(f"there are {len(pred)} predictions but {len(true)} labels", measured=len(pred), expected=len(true),
             hint="predict on the whole x of the same split as the labels")
    if len(true) == 0:
        fail("there are no examples to measure on", measured=0, expected="at least 1",
             hint="check that the data split is not empty")
    n_bad = int((~np.isfinite(pred)).sum()) if pred.dtype.kind == "f" else 0
    if n_bad:
        fail(f"{n_bad} of {pred.size} predictions are NaN or infinite", measured=f"{n_bad} non-finite",
             expected="finite predictions",
             hint="training diverged and the weights became NaN: lower the learning rate and scale the inputs")
    pred = _drop_unit_axes(pred, true)
    if name in ("accuracy", "log_loss", "binary_accuracy"):
        true = _binary_column(true, pred)
    if name == "accuracy":
        return _accuracy(true, pred, source)
    if name == "log_loss":
        return _log_loss(true, pred, source)
    t, p = _same_shape(true, pred, source, name)
    if name == "binary_accuracy":
        _binary_labels(t, "binary accuracy")
        return float(np.mean((p >= 0.5) == (t >= 0.5)))
    if name == "mae":
        return float(np.mean(np.abs(t - p)))
    if name == "mse":
        return float(np.mean((t - p) ** 2))
    if name == "rmse":
        return float(math.sqrt(np.mean((t - p) ** 2)))
    return _r2(t, p)


def compute_metric(y_true: Any, y_pred: Any, metric: str) -> float:
    """The metric on arrays, with the same conventions as :func:`check_metric`.

    ``accuracy`` takes class scores with one-hot or integer labels, or one sigmoid column
    (threshold 0.5) with 0/1 labels; ``r2`` averages over output columns.
    """
    return _compute(y_true, y_pred, metric, _Source(from_model=False))


def _is_keras_model(obj: Any) -> bool:
    keras = sys.modules.get("keras")  # a Keras model can only exist once keras is imported
    return keras is not None and isinstance(obj, keras.Model)


def _predict(model: Any, x: Any, batch_size: int) -> np.ndarray:
    inputs = x if isinstance(x, list | tuple) else [x]
    try:
        model_inputs = list(model.inputs)
    except Exception:
        model_inputs = []
    if model_inputs:
        if len(model_inputs) != len(inputs):
            fail(f"the model has {len(model_inputs)} inputs but the data gives {len(inputs)}",
                 measured=len(model_inputs), expected=len(inputs),
                 hint="build the model with one keras.Input per input array")
        for tensor, array in zip(model_inputs, inputs, strict=True):
            want = tuple(tensor.shape)[1:]
            got = tuple(np.shape(array))[1:]
            if len(want) != len(got) or any(w is not None and w != g for w, g in zip(want, got, strict=True)):
                fail(f"the model takes {_fmt_shape(tuple(tensor.shape))} but the data has shape "
                     f"{_fmt_shape(np.shape(array))}", measured=_fmt_shape(tuple(tensor.shape)),
                     expected=_fmt_shape((None, *got)),
                     hint=f"declare the input to match the features: keras.Input(shape={_fmt_shape(got)})")
    try:
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    except Exception as exc:  # the message itself may quote data values, so only its type is shown
        fail(f"the model could not predict on the data ({type(exc).__name__})", measured=type(exc).__name__,
             expected="predictions",
             hint="run model.predict on your own data to see the error; check the input shape and dtype")
    if isinstance(pred, list | tuple | dict):
        fail(f"the model has {len(pred)} outputs; this check needs one", measured=len(pred), expected=1,
             hint="check one output at a time: pass the predictions of that output")
    return np.asarray(pred)


class MetricCheck:
    """A measured metric; ``below``/``above`` compare it with a (possibly named) threshold."""

    def __init__(self, value: float, metric: str, what: str) -> None:
        self.value = value
        self.metric = metric
        self.what = what

    def _hint(self, direction: str) -> str:
        lower_better = self.metric in _LOWER_IS_BETTER
        if (direction == "below") != lower_better:
            return f"check how the {self.metric} is computed and which data split is used"
        if self.metric == "log_loss":
            return ("the predicted probabilities are far from the labels; the usual causes are too little "
                    "training, an output activation that does not fit the task (sigmoid for yes/no, softmax "
                    "for classes), or a loss that does not match it")
        if lower_better:
            return ("the error is too high; the usual causes are too little training or another learning rate "
                    "than the exercise's, inputs not scaled as in the exercise, or an activation on a "
                    "regression output")
        if self.metric == "r2":
            return ("the model explains little of the variance (R² below 0 is worse than predicting the mean); "
                    "the usual causes are too little training, unscaled inputs, or an activation on the output")
        return ("the accuracy is too low; the usual causes are too few epochs, a loss that does not match the "
                "labels, or an output activation that does not fit the task (softmax for classes, sigmoid for "
                "yes/no)")

    def below(self, threshold: float, hint: str = "") -> MetricCheck:
        compare(self.value, threshold, "below", self.what, hint or self._hint("below"))
        return self

    def above(self, threshold: float, hint: str = "") -> MetricCheck:
        compare(self.value, threshold, "above", self.what, hint or self._hint("above"))
        return self


def check_metric(model_or_predictions: Any, data: Any, metric: str, *, batch_size: int = 256,
                 name: str | None = None) -> MetricCheck:
    """Measure ``metric`` of a Keras model (predicting on ``x``) or of given predictions on ``(x, y)``."""
    canonical = _canonical_metric(metric)
    x, y = unpack_data(data)
    if model_or_predictions is None:
        fail("there is no model or predictions to measure (got None)", measured="None", expected="a model",
             hint="run the cell that builds and trains the model, and make sure it is returned")
    from_model = _is_keras_model(model_or_predictions)
    pred = _predict(model_or_predictions, x, batch_size) if from_model else model_or_predictions
    value = _compute(y, pred, canonical, _Source(from_model))
    what = name or f"the {canonical} on {int(np.shape(y)[0])} examples"
    return MetricCheck(value, canonical, what)
