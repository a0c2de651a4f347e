"""Autograder for keras-intro/02-going-deeper. Each test scores one grade cell's points."""

import numpy as np

from autograders import grades
from autograders.checks import (
    CheckFailure,
    check_array,
    check_frame,
    check_history,
    check_history_fits_model,
    check_is_history,
    check_metric,
    check_model,
    check_predictions,
    check_value,
    compute_metric,
    dense,
    fail,
)

# Exported histories and predictions are claims, checked against the exported model (see "Recompute,
# don't trust" in the instructors' guide). The last epoch's loss differs from the trained model's loss
# on the training data by a small factor; a made-up curve or another run's differs by far more.
HISTORY_RATIO, HISTORY_ATOL = 3.0, 0.1

ONE_HOT_HINT = (
    "the labels are integers but the loss is categorical cross-entropy: one-hot them with "
    "keras.utils.to_categorical (or use the sparse loss)"
)


def _predict(model, x):
    return np.asarray(model.predict(x, verbose=0), dtype=np.float64)


# ---------------------------------------------------------------------------- banknotes


@grades("explore-banknotes", points=1)
def test_banknote_stats(submission, banknotes):
    """banknote_stats is describe() of the whole table."""
    stats = submission.get("explore-banknotes", "banknote_stats", expect="frame")
    check_frame(stats, "banknote_stats").close_to(banknotes.public.describe(), rtol=1e-6, atol=1e-9)


@grades("explore-banknotes", points=1)
def test_class_counts(arrays, banknotes):
    """class_counts holds the examples per class, ordered by class label."""
    expected = banknotes.public["class"].value_counts().sort_index().to_numpy()
    check_array(arrays["class_counts"], "class_counts").has_shape((2,)).close_to(expected)


@grades("banknote-model", points=1)
def test_banknote_architecture(model):
    """4 inputs and one sigmoid output neuron."""
    check_model(model).has_input_shape((None, 4)).layers(dense(1, "sigmoid"))


@grades("banknote-model", points=1)
def test_banknote_compile(model):
    check_model(model).is_compiled_with(
        optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"]
    )


@grades("banknote-model", points=2)
def test_banknote_hidden_accuracy(model, banknotes, thresholds):
    """Accuracy on banknotes the student never saw."""
    check_metric(model, banknotes.hidden, "accuracy").above(
        thresholds["banknote_hidden_accuracy"],
        hint="train for the full 20 epochs, and keep the sigmoid output with the binary "
        "cross-entropy loss",
    )


@grades("banknote-model", points=1)
def test_banknote_reported_accuracy(model, arrays, banknotes):
    """`accuracy` is the model's accuracy on the test set, as evaluate reports it."""
    x_test, y_test = banknotes.test
    pred = _predict(model, x_test)
    measured = compute_metric(y_test, pred, "accuracy")
    loss = compute_metric(y_test, np.clip(pred, 0, 1), "log_loss")
    value = check_value(arrays["accuracy"], "accuracy").is_finite().value
    if abs(float(value) - measured) > 2e-3:
        hint = (
            "evaluate returns [loss, accuracy]: this is the loss, element [0]; take element [1]"
            if abs(float(value) - loss) < 2e-3
            else "store what banknote_model.evaluate(X_test, y_test) reports for the accuracy"
        )
        fail(
            f"accuracy is {float(value):.4g}, but the model's accuracy on the test set is "
            f"{measured:.4g}",
            measured=float(value),
            expected=f"{measured:.4g}",
            hint=hint,
        )


# ---------------------------------------------------------------------------- darts


@grades("darts-model", points=1)
def test_darts_architecture(model):
    """2 inputs, 128-64-32 relu, 4 softmax outputs."""
    check_model(model).has_input_shape((None, 2)).has_output_shape((None, 4)).layers(
        dense(128, "relu"), dense(64, "relu"), dense(32, "relu"), dense(4, "softmax")
    )


@grades("darts-model", points=1)
def test_darts_compile(model):
    check_model(model).is_compiled_with(
        optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"]
    )


@grades("darts-labels", points=1)
def test_darts_label_codes(arrays, darts):
    """The competitor column holds the pd.Categorical codes (alphabetical order)."""
    codes = check_array(arrays["codes"], "codes").has_shape((len(darts.codes),)).array
    if codes.dtype.kind not in "biu":
        fail(
            f"the competitor column has dtype {codes.dtype}; expected integer codes",
            measured=str(codes.dtype),
            expected="integers",
            hint="replace the column by its codes: darts['competitor'].cat.codes",
        )
    check_array(codes, "codes").close_to(darts.codes)


@grades("darts-labels", points=1)
def test_darts_one_hot(arrays, darts):
    """competitors: the one-hot codes, one row per throw and one column per player."""
    labels = check_array(arrays["competitors"], "competitors").array
    if labels.ndim == 1:
        fail(
            f"competitors has shape {labels.shape}: one integer per throw, not a one-hot row",
            measured=str(labels.shape),
            expected=f"({len(darts.codes)}, 4)",
            hint=ONE_HOT_HINT,
        )
    check_array(labels, "competitors").has_shape(darts.one_hot.shape).close_to(darts.one_hot)


@grades("darts-training", points=2)
def test_darts_hidden_accuracy(model, darts, thresholds):
    """Accuracy on throws the student never saw."""
    check_metric(model, darts.hidden, "accuracy").above(
        thresholds["darts_hidden_accuracy"],
        hint="train for 30 epochs on the one-hot labels with softmax and categorical cross-entropy",
    )


@grades("darts-training", points=1)
def test_darts_history(history, model, darts):
    """30 epochs of this model's training; the loss falls and the accuracy rises."""
    check_history_fits_model(history, model, darts.train, epochs=30, ratio=HISTORY_RATIO, atol=HISTORY_ATOL) \
        .is_finite().decreases()
    check_history(history, "accuracy").increases()


def _darts_predictions(arrays, submission, darts):
    """The exported preds, which must be what the darts model predicts for the small test: the
    trained one, or (when training failed, a mistake scored elsewhere) the one exported before."""
    preds = check_array(arrays["preds"], "preds").has_shape((5, 4)).array
    failure = None
    for cell in ("darts-training", "darts-model"):
        try:
            model = submission.get(cell, "model", expect="model")
            return check_predictions(preds, model, darts.small_test[0], "preds")
        except CheckFailure as problem:
            failure = failure or problem
    raise failure


@grades("darts-predictions", points=1)
def test_darts_probabilities(arrays, submission, darts):
    """preds: 4 probabilities for each of the 5 small-test throws, summing to 1, from the model."""
    check_array(arrays["preds"], "preds").has_shape((5, 4)).all_between(0, 1).sums_to(1.0, axis=1)
    _darts_predictions(arrays, submission, darts)


@grades("darts-predictions", points=1)
def test_darts_chosen(arrays, submission, darts):
    """preds_chosen: the most likely player of each throw, np.argmax along axis 1."""
    preds = _darts_predictions(arrays, submission, darts)
    chosen = check_array(arrays["preds_chosen"], "preds_chosen").array
    if chosen.shape != (5,):
        fail(
            f"preds_chosen has shape {chosen.shape}; expected one index per throw, (5,)",
            measured=str(chosen.shape),
            expected="(5,)",
            hint="np.argmax(preds) without an axis finds one position in the whole array, and "
            "axis=0 looks down the columns: use np.argmax(preds, axis=1), the largest value in "
            "each row",
        )
    check_array(chosen, "preds_chosen").close_to(np.argmax(preds, axis=1))


# ---------------------------------------------------------------------------- irrigation


@grades("irrigation-model", points=1)
def test_irrigation_architecture(model):
    """20 inputs, Dense(64, relu), 3 sigmoid outputs."""
    check_model(model).has_input_shape((None, 20)).layers(dense(64, "relu"), dense(3, "sigmoid"))


@grades("irrigation-model", points=1)
def test_irrigation_compile(model):
    check_model(model).is_compiled_with(optimizer="adam", loss="binary_crossentropy")


@grades("irrigation-model", points=1)
def test_irrigation_hidden_accuracy(model, irrigation, thresholds):
    """Per-parcel accuracy (each of the 3 yes/no answers counts) on hidden sensor readings."""
    check_metric(model, irrigation.hidden, "binary_accuracy").above(
        thresholds["irrigation_hidden_accuracy"],
        hint="each parcel is its own yes/no question: use 3 sigmoid outputs with the binary "
        "cross-entropy, and train for 10 epochs",
    )


@grades("irrigation-model", points=1)
def test_irrigation_history(history, model, irrigation):
    """10 epochs of this model's training with validation data and the binary accuracy; both
    losses fall."""
    if "val_binary_accuracy" not in history and "val_accuracy" in history:
        fail(
            "the history has 'val_accuracy' but no 'val_binary_accuracy'",
            measured=sorted(history),
            expected="val_binary_accuracy",
            hint="with 3 outputs Keras 3 reads 'accuracy' as the categorical accuracy (the "
            "largest output against the largest label), which is wrong for multi-label: use "
            "metrics=['binary_accuracy']",
        )
    check_history(history, "val_binary_accuracy")
    check_history_fits_model(history, model, irrigation.train, epochs=10, ratio=HISTORY_RATIO,
                             atol=HISTORY_ATOL)
    check_history(history, "val_loss").has_epochs(10).is_finite().decreases()
    check_history(history, "loss").decreases()


# ---------------------------------------------------------------------------- callbacks


@grades("callbacks", points=1)
def test_early_stopping(history):
    """EarlyStopping on val_accuracy with patience 3 ended the run 3 epochs after the best one."""
    check_is_history(history, "callback_history")
    val = check_history(history, "val_accuracy").is_finite().values
    epochs, best = len(val), int(np.argmax(val)) + 1
    if epochs >= 100:
        fail(
            "the training ran all 100 epochs: nothing stopped it",
            measured=epochs,
            expected="fewer than 100 epochs",
            hint="pass callbacks=[early_stopping, checkpoint] to fit, with "
            "EarlyStopping(monitor='val_accuracy', patience=3)",
        )
    if epochs - best != 3:
        fail(
            f"the training stopped {epochs - best} epochs after the best val_accuracy (epoch "
            f"{best} of {epochs}); with patience 3 it stops 3 epochs after it",
            measured=epochs - best,
            expected=3,
            hint="use EarlyStopping(monitor='val_accuracy', patience=3)",
        )


@grades("callbacks", points=1)
def test_checkpoint_is_best(model, history, banknotes):
    """The saved model is the one from the epoch with the best val_accuracy, not the last epoch."""
    check_model(model).has_input_shape((None, 4)).has_output_shape((None, 1))
    val_accuracy = check_history(history, "val_accuracy").is_finite().values
    val_loss = check_history(history, "val_loss").is_finite().values
    x_test, y_test = banknotes.test
    loss = compute_metric(y_test, np.clip(_predict(model, x_test), 0, 1), "log_loss")
    saved = int(np.argmin(np.abs(val_loss - loss))) + 1  # the epoch whose validation loss it has
    best = int(np.argmax(val_accuracy)) + 1
    if saved != best:
        where = "the last one" if saved == len(val_loss) else f"epoch {saved}"
        fail(
            f"the saved model is the one from {where}, but the best val_accuracy was at "
            f"epoch {best}",
            measured=saved,
            expected=best,
            hint="create the ModelCheckpoint with monitor='val_accuracy' and save_best_only=True, "
            "otherwise it overwrites the file after every epoch",
        )


@grades("callbacks", points=1)
def test_best_model_hidden_accuracy(model, banknotes, thresholds):
    """The checkpointed model classifies hidden banknotes well."""
    check_metric(model, banknotes.hidden, "accuracy").above(
        thresholds["best_banknote_hidden_accuracy"],
        hint="load the checkpoint file written during training: keras.models.load_model(...)",
    )
