"""Recompute, don't trust: tie every exported number that earns points to evidence the checker
produces itself.

The kernel can export anything, so a prediction array, a training history or an experiment's
scores are claims. The checker trusts only the model artifact (architecture and weights), the
data it owns, and what it recomputes here:

    check_predictions(claimed, model, x, "twenty_min_orbit")          # == model.predict(x)
    check_history_fits_model(history, model, train_data, epochs=30)   # a real History, of this model
    run = replay_fit(model, x, y, weights=initial_weights, seed=seed, epochs=10)
    check_claim(test_accs, "test_accs").agrees_with(run_accs, atol=0.08)

A replay trains a fresh copy of the submitted architecture (its own initial weights when they
were exported, otherwise seeded new ones) with the student's optimizer and loss, seeded, on the
checker's own copy of the data: the same seed gives the same numbers, so a grade does not
depend on luck. Claims must agree with the replay within a calibrated band; the thresholds
then judge the agreed numbers. See "Recompute, don't trust" in the instructors' guide.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autograders.checks.base import fail, from_student, record_metric
from autograders.checks.convergence import HistoryCheck, _history_dict, fresh_copy, training_setup

NOT_A_HISTORY_HINT = ("export what model.fit(...) returns (history = model.fit(...)): a dict of numbers typed or "
                      "copied by hand is not a training history")


def _as_float_array(values: Any, name: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        fail(f"{name} is not numeric", measured=type(values).__name__, expected="numbers",
             hint=f"assign an array of numbers to {name}")
    return array


@dataclass
class Replay:
    """What the checker's own run of a training procedure produced."""

    model: Any
    history: dict[str, list[float]]

    def evaluate(self, x: Any, y: Any) -> dict[str, float]:
        """The replayed model's loss and compiled metrics on ``(x, y)``."""
        return {str(k): float(v) for k, v in self.model.evaluate(x, y, verbose=0, return_dict=True).items()}

    def weights(self) -> list[np.ndarray]:
        return [np.asarray(w) for w in self.model.get_weights()]


def variant(model: Any, *, seed: int, layer_changes: Mapping[int, Mapping[str, Any]] | None = None) -> Any:
    """A fresh, seeded copy of the architecture with some layers' config changed, e.g.
    ``variant(model, seed=0, layer_changes={0: {"activation": "sigmoid"}})``; indices count the
    model's layers without its ``InputLayer``."""
    import keras

    copy = fresh_copy(model, seed=seed)
    if not layer_changes:
        return copy
    config = copy.get_config()
    entries = [e for e in config.get("layers", []) if e.get("class_name") != "InputLayer"]
    for index, changes in layer_changes.items():
        if not 0 <= index < len(entries):
            fail(f"the model has no layer {index} to vary", measured=len(entries), expected=f"more than {index} layers",
                 hint="build the model as the exercise describes")
        entries[index]["config"].update(changes)
    keras.utils.set_random_seed(seed)
    with from_student("rebuilding your architecture with a changed layer"):
        return type(copy).from_config(config)


def replay_fit(model: Any, x: Any, y: Any, *, seed: int, epochs: int, batch_size: int | None = 32,
               weights: Sequence[Any] | None = None, optimizer: Any = None, validation_data: Any = None,
               fresh: bool = True, compiled_like: Any = None, default_loss: Any = "mse") -> Replay:
    """Train the submitted architecture as the exercise prescribes, on the checker's data.

    ``weights`` are the initial weights the student exported (``model.get_weights()`` before
    training); without them the copy gets seeded new ones. ``optimizer`` overrides the student's
    (a learning-rate search); otherwise a fresh copy of the student's optimizer is used. With
    ``fresh=False`` the given model itself keeps training (a procedure that must not reset).
    ``compiled_like`` is the student's compiled model whose optimizer, loss and metrics to use
    when ``model`` is an uncompiled :func:`variant` of it.
    """
    import keras

    student_optimizer, loss, metrics = training_setup(compiled_like if compiled_like is not None else model,
                                                      default_loss)
    copy = fresh_copy(model, seed=seed) if fresh else model
    if weights is not None:
        set_weights(copy, weights, "the exported initial weights")
    if fresh:
        copy.compile(optimizer=optimizer if optimizer is not None else student_optimizer, loss=loss, metrics=metrics)
    keras.utils.set_random_seed(seed)
    with from_student("re-running your training procedure",
                      "check that the model's input and output shapes match the data and that the loss fits the labels"):
        fitted = copy.fit(x, y, epochs=epochs, batch_size=batch_size, validation_data=validation_data,
                          shuffle=True, verbose=0)
    history = {str(k): [float(v) for v in values] for k, values in fitted.history.items()}
    return Replay(copy, history)


def set_weights(model: Any, weights: Sequence[Any], what: str) -> None:
    """Put exported weights into a copy, failing with a message when they do not fit it."""
    expected = [tuple(w.shape) for w in model.weights]
    given = [tuple(np.shape(w)) for w in weights]
    if given != expected:
        fail(f"{what} do not fit the model: shapes {given[:6]}{'...' if len(given) > 6 else ''}",
             measured=given[:6], expected=expected[:6],
             hint="export model.get_weights() of this model, taken right after compiling it and before any fit")
    model.set_weights([np.asarray(w, dtype=np.float32) for w in weights])


def weight_distance(a: Sequence[Any], b: Sequence[Any]) -> float:
    """The Euclidean distance between two weight lists of one architecture, over all parameters."""
    if [np.shape(w) for w in a] != [np.shape(w) for w in b]:
        return float("inf")
    return float(np.sqrt(sum(float(np.sum((np.asarray(u, np.float64) - np.asarray(v, np.float64)) ** 2))
                             for u, v in zip(a, b, strict=True))))


class ClaimCheck:
    """A number or an array the student exported, to be checked against a recomputation."""

    def __init__(self, claimed: Any, name: str) -> None:
        self.name = name
        self.array = _as_float_array(claimed, name)

    def agrees_with(self, recomputed: Any, *, atol: float, rtol: float = 0.0, what: str = "the checker's re-run",
                    hint: str = "") -> np.ndarray:
        """Every claimed value within ``atol + rtol * |recomputed|`` of the recomputation; returns the
        recomputation. The message shows both, so a student sees where the run disagrees. An ``atol``
        from ``thresholds[...]`` is calibrated like any threshold: the largest gap is recorded."""
        expected = _as_float_array(recomputed, f"{what} of {self.name}")
        if self.array.size == expected.size and self.array.shape != expected.shape:
            claimed = self.array.reshape(expected.shape)  # a squeezable shape is the same claim
        else:
            claimed = self.array
        if claimed.shape != expected.shape:
            fail(f"{self.name} has shape {claimed.shape}; {what} gives {expected.shape}",
                 measured=str(claimed.shape), expected=str(expected.shape), hint=hint)
        gap = np.abs(claimed - expected)
        if np.isfinite(gap).all() and gap.size:  # a calibrated band (a Threshold) learns its honest spread
            record_metric(atol, float(gap.max()))
        bad = ~(gap <= atol + rtol * np.abs(expected))
        if bad.any():
            worst = int(np.argmax(np.where(bad, np.nan_to_num(np.abs(claimed - expected), nan=np.inf), -1)))
            fail(f"{self.name} does not match {what}: {_short(claimed)} against {_short(expected)} "
                 f"(allowed difference {atol:.3g}); the exported numbers must come from running the procedure",
                 measured=_short(claimed), expected=_short(expected),
                 hint=hint or "run the cell as the exercise describes and export its own results; numbers that were "
                              "typed in, kept from an earlier run or produced by another procedure do not match "
                              f"(first difference at position {worst})")
        return expected


def _short(values: np.ndarray) -> list[float] | float:
    flat = np.ravel(values)
    rounded = [round(float(v), 4) for v in flat[:12]]
    return rounded[0] if values.ndim == 0 else rounded


def check_claim(claimed: Any, name: str) -> ClaimCheck:
    """Start checking an exported number against the checker's own recomputation."""
    return ClaimCheck(claimed, name)


def predict(model: Any, x: Any) -> np.ndarray:
    """``model.predict(x)`` as float64, a failure with a message if the student's model cannot. A
    column of single values is given as the (n, 1) batch a one-input model expects: Keras accepts
    both, but one model object traced on one shape can refuse the other."""
    shape = getattr(model, "input_shape", None)
    if isinstance(x, np.ndarray) and x.ndim == 1 and isinstance(shape, tuple) and shape[1:] == (1,):
        x = x.reshape(-1, 1)
    with from_student("predicting with your model"):
        return np.asarray(model.predict(x, verbose=0), dtype=np.float64)


def check_predictions(claimed: Any, model: Any, x: Any, name: str, *, atol: float = 1e-3,
                      rtol: float = 1e-3) -> np.ndarray:
    """Exported predictions must be what the exported model predicts on the same inputs; returns
    the model's predictions, which the scoring checks then use (never the claim)."""
    recomputed = predict(model, x)
    check_claim(claimed, name).agrees_with(
        recomputed, atol=atol, rtol=rtol, what="the exported model's predictions",
        hint=f"compute {name} with model.predict(...) of the model you export, after training it")
    return recomputed


def check_is_history(history: Any, name: str = "history") -> HistoryCheck:
    """A History that ``fit`` returned (it records its epochs and steps), not a dict of numbers."""
    params = getattr(history, "params", None)
    series = _history_dict(history)
    if not params or "epochs" not in params:
        fail(f"{name} is a plain dict of numbers, not the History that fit returns",
             measured="dict", expected="keras.callbacks.History", hint=NOT_A_HISTORY_HINT)
    check = HistoryCheck(series, "loss")
    try:
        planned = int(params["epochs"])
    except (TypeError, ValueError):
        planned = -1
    if not 0 < check.epochs <= planned:
        fail(f"{name} has {check.epochs} epochs of loss but fit ran with epochs={params.get('epochs')}",
             measured=check.epochs, expected=f"at most {params.get('epochs')}", hint=NOT_A_HISTORY_HINT)
    return check


def check_history_fits_model(history: Any, model: Any, train_data: tuple[Any, Any], *, name: str = "history",
                             epochs: int | None = None, ratio: float = 2.0, atol: float = 0.0) -> HistoryCheck:
    """The history belongs to this model: a real History, ``epochs`` long, whose final training
    loss agrees with the model evaluated on the training data.

    The last epoch's loss is averaged while the weights still move (and with dropout or batch
    norm in training mode), so it is allowed to differ from the evaluated loss by a factor
    ``ratio`` (calibrated on the reference) plus ``atol``. An untrained model with a made-up
    falling curve, or a curve copied from another run, misses by orders of magnitude.
    """
    check = check_is_history(history, name)
    if epochs is not None:
        check.has_epochs(epochs)
    check_final_loss(float(check.values[-1]), model, train_data, f"the final training loss in {name}",
                     ratio=ratio, atol=atol)
    return check


def check_final_loss(claimed: float, model: Any, train_data: tuple[Any, Any], what: str, *, ratio: float = 2.0,
                     atol: float = 0.0) -> float:
    """A claimed final training loss agrees with the exported model evaluated on the training data
    (within a factor ``ratio`` plus ``atol``; both not finite, a diverged run, also agree). Returns
    the evaluated loss."""
    x, y = train_data
    with from_student("evaluating your model on the training data",
                      "export the compiled model that produced the history"):
        evaluated = model.evaluate(x, y, verbose=0, return_dict=True)
    loss = float(evaluated.get("loss", np.nan))
    finite = np.isfinite(loss), np.isfinite(claimed)
    if not any(finite):
        return loss
    low, high = min(claimed, loss), max(claimed, loss)
    if not all(finite) or high > ratio * low + atol:
        fail(f"{what} is {claimed:.4g}, but the exported model's loss on the training data is {loss:.4g}: "
             "the numbers do not come from training this model",
             measured={"claimed": round(claimed, 4), "model": round(loss, 4)},
             expected=f"within a factor {ratio:g} of each other",
             hint="export the model together with the History its own fit returned, after training; do not "
                  "retrain, rebuild or reload the model after that fit")
    return loss


def recompute(function: Callable[[], Any], what: str) -> Any:
    """Run a recomputation that calls into the student's objects; a failure there is theirs."""
    with from_student(what):
        return function()


def with_batch_statistics(model: Any, x: Any, batch_size: int = 256) -> Any:
    """A copy of ``model`` whose batch-normalisation layers hold the mean and variance of their
    inputs over ``x`` instead of the running averages.

    The running averages warm up slowly (momentum 0.99: after 200 steps 13% of the initial
    variance of 1 is still in them), so a short, correct training run can predict badly in
    inference mode, more or less so depending on the initializer and the seed. Measuring with
    the statistics of the checker's training data judges what was learned (kernels, gamma, beta),
    the same for every initializer.
    """
    import keras

    copy = fresh_copy(model, seed=0)
    copy.set_weights(model.get_weights())
    norms = [layer for layer in copy.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:
        with from_student("measuring the inputs of your batch normalisation layers"):
            probe = keras.Model(copy.inputs, layer.input)
            inputs = np.asarray(probe.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        reduce = tuple(i for i in range(inputs.ndim) if i != axis % inputs.ndim)
        layer.moving_mean.assign(inputs.mean(axis=reduce).astype("float32"))
        layer.moving_variance.assign(inputs.var(axis=reduce).astype("float32"))
    return copy
