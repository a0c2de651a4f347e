"""Autograder for keras-intro/03-improving-your-model. Each test scores one grade cell's points.

The experiments of this chapter are judged by their relative outcomes (the learning curve rises,
sigmoid lags behind ReLU, mini-batches beat one big batch, batch normalisation converges
faster), measured on the student's own runs against calibrated margins.
"""

import numpy as np

from autograders import grades
from autograders.checks import (
    check_array,
    check_frame,
    check_history,
    check_metric,
    check_model,
    check_value,
    compare,
    dense,
    fail,
    layer_spec,
)

ACTIVATIONS = ["relu", "tanh", "sigmoid"]


# ---------------------------------------------------------------------------- learning curve


@grades("learning-curve", points=1)
def test_digits_architecture(model):
    """64 inputs, Dense(16, relu), 10 softmax outputs; adam and categorical cross-entropy."""
    check_model(model).has_input_shape((None, 64)).layers(dense(16, "relu"), dense(10, "softmax"))
    check_model(model).is_compiled_with(optimizer="adam", loss="categorical_crossentropy")


@grades("learning-curve", points=1)
def test_learning_curve_arrays(arrays):
    """One training and one test accuracy per training size."""
    check_array(arrays["train_sizes"], "train_sizes").close_to([100, 300, 900])
    for name in ("train_accs", "test_accs"):
        check_array(arrays[name], name).has_shape((3,)).is_finite().all_between(0, 1)


@grades("learning-curve", points=2)
def test_learning_curve_grows(arrays, thresholds):
    """The test accuracy rises with every training size, by a clear margin overall."""
    test_accs = check_array(arrays["test_accs"], "test_accs").has_shape((3,)).is_finite().array
    hint = (
        "train on the first `size` examples only (X_train[:size], y_train[:size]) and put the "
        "starting weights back with set_weights(initial_weights) before each size"
    )
    steps = np.diff(test_accs)
    if (steps <= 0).any():
        fail(
            "the test accuracy does not rise with the training size: "
            f"{np.round(test_accs, 3).tolist()}",
            measured=np.round(test_accs, 3).tolist(),
            expected="increasing",
            hint=hint,
        )
    compare(
        float(test_accs[-1] - test_accs[0]),
        thresholds["learning_curve_gain"],
        "above",
        "the test accuracy gained from 100 to 900 training examples",
        hint,
    )


@grades("learning-curve", points=1)
def test_digits_hidden_accuracy(model, hidden_data, thresholds):
    """The model trained last (on 900 digits) recognises hidden digits."""
    check_metric(model, hidden_data, "accuracy").above(
        thresholds["digits_hidden_accuracy"],
        hint="the last run of the loop trains on 900 examples for 10 epochs: check that it ran",
    )


# ---------------------------------------------------------------------------- activations


@grades("activations", points=1)
def test_get_model(model):
    """get_model("tanh") builds 20 -> Dense(64, tanh) -> 3 sigmoid, compiled for multi-label."""
    hidden = check_model(model).has_input_shape((None, 20)).layer(0)
    activation = hidden.keras_layer.get_config().get("activation")
    if activation != "tanh":
        fail(
            f"get_model('tanh') built a hidden layer with the activation {activation!r}",
            measured=activation,
            expected="tanh",
            hint="pass the argument on: layers.Dense(64, activation=act_function), "
            "not a fixed name",
        )
    check_model(model).layers(dense(64, "tanh"), dense(3, "sigmoid")).is_compiled_with(
        optimizer="adam", loss="binary_crossentropy"
    )


@grades("activations", points=1)
def test_activation_curves(submission):
    """One column per activation, 5 epochs each; every validation loss falls."""
    losses = submission.get("activations", "val_loss_frame", expect="frame")
    accs = submission.get("activations", "val_acc_frame", expect="frame")
    for frame, name in ((losses, "val_loss_frame"), (accs, "val_acc_frame")):
        check_frame(frame, name).has_columns(ACTIVATIONS, exact=True).has_shape((5, 3))
        for act in ACTIVATIONS:
            check_frame(frame, name).column(act).is_finite()
    for act in ACTIVATIONS:
        check_frame(accs, "val_acc_frame").column(act).all_between(0, 1)
        check_history({f"val_loss ({act})": losses[act].tolist()}, f"val_loss ({act})").decreases()


@grades("activations", points=2)
def test_sigmoid_lags(submission, thresholds):
    """After 5 epochs the sigmoid network's validation loss is clearly above the others'."""
    losses = submission.get("activations", "val_loss_frame", expect="frame")
    check_frame(losses, "val_loss_frame").has_columns(ACTIVATIONS)
    final = {act: float(losses[act].iloc[-1]) for act in ACTIVATIONS}
    gap = final["sigmoid"] - min(final["relu"], final["tanh"])
    compare(
        gap,
        thresholds["sigmoid_val_loss_gap"],
        "above",
        "the final validation loss of sigmoid minus the best of relu and tanh",
        "each activation needs its own freshly built model: call get_model(act) inside the loop, "
        "and make get_model use its act_function argument",
    )


# ---------------------------------------------------------------------------- batch size


@grades("batch-size", points=1)
def test_dots_model(model):
    """2 inputs, Dense(4, relu), one sigmoid output; SGD with learning rate 0.1."""
    check_model(model).has_input_shape((None, 2)).layers(dense(4, "relu"), dense(1, "sigmoid"))
    check_model(model).is_compiled_with(
        optimizer="sgd", learning_rate=0.1, loss="binary_crossentropy"
    )


@grades("batch-size", points=1)
def test_batch_histories(submission):
    """Two runs of 5 epochs; the mini-batch loss falls, and the one-batch run does not end lower."""
    mini = check_history(submission.get("batch-size", "mini_batch_history", expect="history"))
    full = check_history(submission.get("batch-size", "full_batch_history", expect="history"))
    mini.has_epochs(5).is_finite().decreases()
    full.has_epochs(5).is_finite()
    if full.values[-1] < mini.values[-1]:
        fail(
            "the one-batch run ends with a lower loss than the mini-batch run",
            measured={"one batch": float(full.values[-1]), "batch_size=16": float(mini.values[-1])},
            expected="the mini-batch run lower",
            hint="train the mini-batch run with batch_size=16 and the other with "
            "batch_size=len(dots_train), both from dots_weights",
        )


@grades("batch-size", points=1)
def test_mini_batches_learn_faster(submission, thresholds):
    """After 5 epochs the mini-batch run's training loss is clearly below the one-batch run's."""
    mini = check_history(
        submission.get("batch-size", "mini_batch_history", expect="history")
    ).is_finite()
    full = check_history(
        submission.get("batch-size", "full_batch_history", expect="history")
    ).is_finite()
    compare(
        float(full.values[-1] - mini.values[-1]),
        thresholds["mini_batch_loss_advantage"],
        "above",
        "the final training loss of the one-batch run minus that of the mini-batch run",
        "put the starting weights back (set_weights(dots_weights)) before the second run, and use "
        "batch_size=16 for the first run and batch_size=len(dots_train) for the second",
    )


# ---------------------------------------------------------------------------- batch norm


@grades("batchnorm", points=1)
def test_batchnorm_architecture(model):
    """Dense(50, relu) + BatchNormalization, three times, then 10 softmax outputs."""
    bn = layer_spec("BatchNormalization")
    check_model(model).has_input_shape((None, 64)).layers(
        dense(50, "relu"), bn, dense(50, "relu"), bn, dense(50, "relu"), bn, dense(10, "softmax")
    )
    check_model(model).has_params(non_trainable=300).is_compiled_with(optimizer="sgd")


@grades("batchnorm", points=2)
def test_batchnorm_converges_faster(submission, thresholds):
    """Over the same 5 SGD epochs, batch normalisation gives a clearly higher val_accuracy."""
    standard = check_history(
        submission.get("batchnorm", "standard_history", expect="history"), "val_accuracy"
    )
    batchnorm = check_history(
        submission.get("batchnorm", "batchnorm_history", expect="history"), "val_accuracy"
    )
    standard.has_epochs(5).is_finite()
    batchnorm.has_epochs(5).is_finite()
    hint = (
        "train batchnorm_model (not standard_model again) with the same settings: sgd, 5 epochs, "
        "validation_data=(X_test, y_test)"
    )
    if batchnorm.values[-1] < standard.values[-1]:
        fail(
            f"after 5 epochs the batch-normalised model has the lower validation accuracy "
            f"({batchnorm.values[-1]:.3f} against {standard.values[-1]:.3f})",
            measured=float(batchnorm.values[-1]),
            expected=f"at least {standard.values[-1]:.3f}",
            hint=hint,
        )
    gain = float(np.mean(batchnorm.values - standard.values))
    compare(
        gain,
        thresholds["batchnorm_val_accuracy_gain"],
        "above",
        "the mean gain in validation accuracy from batch normalisation",
        hint,
    )


@grades("batchnorm", points=1)
def test_batchnorm_hidden_accuracy(model, hidden_data, thresholds):
    """The trained batch-normalised model recognises hidden digits."""
    check_metric(model, hidden_data, "accuracy").above(
        thresholds["batchnorm_hidden_accuracy"],
        hint="train batchnorm_model itself: batchnorm_history = batchnorm_model.fit(...)",
    )


# ---------------------------------------------------------------------------- search


@grades("search", points=1)
def test_create_model(model):
    """create_model(0.01, "tanh"): 4 -> Dense(8, tanh) -> 1 sigmoid, compiled with Adam(0.01)."""
    check_model(model).has_input_shape((None, 4)).layers(dense(8, "tanh"), dense(1, "sigmoid"))
    check_model(model).is_compiled_with(
        optimizer="adam", learning_rate=0.01, loss="binary_crossentropy"
    )


@grades("search", points=1)
def test_search_results(arrays):
    """One cross-validated score for each of the two learning rates."""
    rates = check_array(arrays["learning_rates"], "learning_rates").has_shape((2,)).array
    check_array(np.sort(rates), "learning_rates (sorted)").close_to([0.0001, 0.01])
    check_array(arrays["scores"], "scores").has_shape((2,)).is_finite().all_between(0, 1)


@grades("search", points=1)
def test_best_learning_rate(arrays):
    """best_learning_rate is the candidate with the best mean score, and that is 0.01."""
    rates = check_array(arrays["learning_rates"], "learning_rates").has_shape((2,)).array
    scores = check_array(arrays["scores"], "scores").has_shape((2,)).array
    best = check_value(arrays["best_learning_rate"], "best_learning_rate").is_finite()
    best.close_to(float(rates[int(np.argmax(scores))]), rtol=1e-9)
    best.close_to(0.01, rtol=1e-9)


@grades("search", points=1)
def test_learning_rate_gap(arrays, thresholds):
    """With 5 epochs, learning rate 0.01 beats 0.0001 by a wide cross-validated margin."""
    rates = check_array(arrays["learning_rates"], "learning_rates").has_shape((2,)).array
    scores = check_array(arrays["scores"], "scores").has_shape((2,)).array
    by_rate = dict(zip(np.round(rates, 6).tolist(), scores.tolist(), strict=True))
    if set(by_rate) != {0.0001, 0.01}:
        fail(
            f"the searched learning rates are {sorted(by_rate)}; expected [0.0001, 0.01]",
            measured=sorted(by_rate),
            expected=[0.0001, 0.01],
            hint="search the grid {'learning_rate': [0.0001, 0.01]}",
        )
    compare(
        by_rate[0.01] - by_rate[0.0001],
        thresholds["learning_rate_score_gap"],
        "above",
        "the mean cross-validated accuracy of learning rate 0.01 minus that of 0.0001",
        "create_model must use its learning_rate argument: "
        "keras.optimizers.Adam(learning_rate=learning_rate)",
    )
