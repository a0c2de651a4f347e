"""Autograder for dl-python/04-fine-tuning. The learning-rate, early-stopping and capacity checks
are about behaviour (which rate trains, where training stopped, which model fits better), not
exact values; the digit classifier is measured on the hidden digits against a calibrated threshold."""

import numpy as np

from autograders import grades
from autograders.checks import (
    CheckFailure,
    check_array,
    check_final_loss,
    check_history,
    check_history_fits_model,
    check_is_history,
    check_metric,
    check_model,
    check_value,
    dense,
)

RATES = {"tiny": 1e-6, "good": 0.01, "large": 10.0}
PATIENCE = 2
# Exported losses and histories are claims (see "Recompute, don't trust" in the instructors' guide): a
# run's final training loss must agree with its exported model evaluated on the Titanic rows, within a
# small factor (the last epoch is averaged while the weights move, and validation_split holds rows out).
# SGD at 0.01 moves the loss by about 0.02 an epoch; an untrained model sits near 0.69. The run at
# learning rate 10 is erratic, so only the runs at 1e-6 and 0.01 are compared.
LOSS_RATIO, LOSS_ATOL = 1.25, 0.02
CAPACITY_RATIO, CAPACITY_ATOL = 1.5, 0.05


def _losses(arrays, models=None, train_data=None, names=()):
    """lr_losses, with the final loss of each named run checked against that run's exported model."""
    losses = check_array(arrays["lr_losses"], "lr_losses").has_shape((3, 5)).array.astype(np.float64)
    for name in names:
        row = list(RATES).index(name)
        check_final_loss(float(losses[row][-1]), models[name], train_data,
                         f"the final loss of learning rate {RATES[name]:g} in lr_losses", ratio=LOSS_RATIO,
                         atol=LOSS_ATOL)
    return losses


@grades("learning-rates", points=1)
def test_rate_models_compiled(models):
    """Three separate models, each compiled with SGD at its own learning rate."""
    for name, rate in RATES.items():
        check_model(models[name]).has_input_shape((None, 10)).layers(
            dense(100, "relu"), dense(100, "relu"), dense(2, "softmax"))
        try:
            check_model(models[name]).is_compiled_with(
                optimizer="sgd", loss="categorical_crossentropy", learning_rate=rate, rtol=1e-5)
        except CheckFailure as failure:
            failure.message = f"the model for learning rate {rate:g}: {failure.message}"
            if "learning rate" in failure.message or "learning_rate" in failure.message:
                failure.hint = ("build a NEW model with get_new_model() inside the loop, for every rate: "
                                "compiling the same model again replaces its optimizer")
            raise


@grades("learning-rates", points=1)
def test_small_rate_barely_learns(arrays, models, train_data):
    """With a learning rate of 0.000001 the loss hardly moves, and ends above the 0.01 run."""
    losses = _losses(arrays, models, train_data, ("tiny", "good"))
    tiny, good = losses[0], losses[1]
    check_history({"loss": tiny}).is_finite()
    change = abs(tiny[-1] - tiny[0]) / abs(tiny[0])
    if change > 0.01:
        raise CheckFailure(f"with learning rate 1e-06 the loss changed by {change:.1%} in 5 epochs; expected "
                           "almost no change (at most 1%)", measured=change, expected="at most 1%",
                           hint="compile this model with keras.optimizers.SGD(learning_rate=0.000001)")
    if not tiny[-1] > good[-1]:
        raise CheckFailure("the final loss with learning rate 1e-06 is not above the one with 0.01",
                           measured=float(tiny[-1]), expected=f"above {good[-1]:.4g}",
                           hint="keep lr_losses in the order of lr_to_test")


@grades("learning-rates", points=1)
def test_good_rate_converges(arrays, models, train_data):
    """With a learning rate of 0.01 the loss goes down steadily over the 5 epochs."""
    check_history({"loss": _losses(arrays, models, train_data, ("good",))[1]}).has_epochs(5).is_finite().decreases()


@grades("learning-rates", points=1)
def test_large_rate_fails(arrays, models, train_data):
    """With a learning rate of 10 training blows up (nan) or ends worse than with 0.01."""
    losses = _losses(arrays, models, train_data, ("good",))
    large, good = losses[2], losses[1]
    if np.isfinite(large).all() and large[-1] <= good[-1]:
        raise CheckFailure(f"with learning rate 10 the final loss is {large[-1]:.4g}, no worse than "
                           f"{good[-1]:.4g} with 0.01", measured=float(large[-1]),
                           expected=f"nan or above {good[-1]:.4g}",
                           hint="compile the third model with keras.optimizers.SGD(learning_rate=10.0)")


@grades("early-stopping", points=1)
def test_validation_scores(history, thresholds):
    """The history holds validation loss and accuracy, and the best validation accuracy is good."""
    check_is_history(history, "es_history")
    check_history(history, "val_loss").is_finite()
    check_history(history, "val_accuracy").is_finite().best_above(thresholds["es_best_val_accuracy"])


@grades("early-stopping", points=1)
def test_stopped_early(history):
    """Training stopped before the 30-epoch maximum."""
    check_is_history(history, "es_history")
    epochs = check_history(history, "val_loss").epochs
    if not 3 <= epochs < 30:
        raise CheckFailure(f"the model trained for {epochs} epochs; expected early stopping before 30",
                           measured=epochs, expected="fewer than 30",
                           hint="pass the monitor to fit: callbacks=[early_stopping_monitor]")


@grades("early-stopping", points=1)
def test_stopped_after_patience(history):
    """It stopped exactly 2 epochs after the best validation loss (patience 2)."""
    values = check_history(history, "val_loss").values
    best = int(np.argmin(values)) + 1
    if len(values) != best + PATIENCE:
        raise CheckFailure(f"the best validation loss was at epoch {best} and training stopped after epoch "
                           f"{len(values)}; with patience {PATIENCE} it stops at epoch {best + PATIENCE}",
                           measured=len(values), expected=best + PATIENCE,
                           hint="use keras.callbacks.EarlyStopping(patience=2), which watches val_loss, and "
                                "pass it in callbacks=[...]")


@grades("early-stopping", points=1)
def test_stopped_epoch(arrays, history):
    """stopped_epoch is the number of epochs the model trained."""
    epochs = check_history(history, "loss").epochs
    check_value(arrays["stopped_epoch"], "stopped_epoch").equals(epochs)


CAPACITY = {"base": [10], "wider": [100], "deeper": [10, 10, 10]}


@grades("capacity", points=1)
def test_capacity_architectures(models):
    """base: 10 nodes; wider: 100 nodes; deeper: three layers of 10; each with 2 softmax outputs."""
    for name, hidden in CAPACITY.items():
        try:
            check_model(models[name]).has_input_shape((None, 10)).layers(
                *[dense(u, "relu") for u in hidden], dense(2, "softmax"))
        except CheckFailure as failure:
            failure.message = f"{name}_model: {failure.message}"
            raise


@grades("capacity", points=1)
def test_capacity_params(arrays):
    """The parameter counts of the three models: wider adds far more parameters than deeper."""
    params = check_array(arrays["capacity_params"], "capacity_params").has_shape((3,)).array
    try:
        check_array(params, "capacity_params").close_to([132, 1302, 352], rtol=0, atol=0.5, hide_expected=True)
    except CheckFailure as failure:
        failure.hint = ("a Dense layer of n nodes fed by m values has m * n + n parameters; use model.count_params() "
                        "on base_model, wider_model and deeper_model, in that order")
        raise


@grades("capacity", points=1)
def test_capacity_val_losses(arrays, submission):
    """Each history has 10 epochs of validation loss, and capacity_val_losses holds their minimums."""
    best = []
    for name in CAPACITY:
        hist = submission.get("capacity", f"{name}_history", expect="history")
        best.append(check_history(hist, "val_loss").has_epochs(10).is_finite().values.min())
    recorded = check_array(arrays["capacity_val_losses"], "capacity_val_losses").has_shape((3,))
    try:
        recorded.close_to(best, rtol=1e-5, atol=1e-6)
    except CheckFailure as failure:
        failure.hint = "take min(history.history['val_loss']) of each model, in the order base, wider, deeper"
        raise


@grades("capacity", points=1)
def test_more_capacity_fits_better(submission, models, train_data):
    """More capacity fits the training data better: the wider model ends with a lower training loss."""
    for name in ("base", "wider"):
        check_history_fits_model(submission.get("capacity", f"{name}_history", expect="history"), models[name],
                                 train_data, name=f"{name}_history", epochs=10, ratio=CAPACITY_RATIO,
                                 atol=CAPACITY_ATOL)
    base = check_history(submission.get("capacity", "base_history", expect="history"), "loss").is_finite()
    wider = check_history(submission.get("capacity", "wider_history", expect="history"), "loss").is_finite()
    if not wider.values[-1] < base.values[-1]:
        raise CheckFailure(f"the wider model's final training loss ({wider.values[-1]:.4g}) is not below the base "
                           f"model's ({base.values[-1]:.4g})", measured=float(wider.values[-1]),
                           expected=f"below {base.values[-1]:.4g}",
                           hint="the wider model has one hidden layer of 100 nodes, the base model 10; train both "
                                "for 10 epochs with adam")


@grades("digits", points=1)
def test_digits_architecture(model):
    """784 inputs, Dense(50, relu), Dense(50, relu), 10 softmax outputs."""
    check_model(model).has_input_shape((None, 784)).layers(
        dense(50, "relu"), dense(50, "relu"), dense(10, "softmax"))


@grades("digits", points=1)
def test_digits_compile(model):
    """Adam, categorical cross-entropy and the accuracy metric."""
    check_model(model).is_compiled_with(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])


@grades("digits", points=1)
def test_digits_hidden_accuracy(model, hidden_data, thresholds):
    """Accuracy on the hidden digits."""
    check_model(model).has_input_shape((None, 784))
    check_metric(model, hidden_data, "accuracy").above(
        thresholds["digits_hidden_accuracy"],
        hint="10 softmax outputs with categorical cross-entropy, trained for 10 epochs with adam on the pixels "
             "divided by 255")


@grades("digits", points=1)
def test_digits_learning_curve(history):
    """10 epochs; the training loss falls and the validation accuracy rises."""
    check_history(history, "loss").has_epochs(10).is_finite().decreases()
    check_history(history, "val_accuracy").is_finite().increases(min_gain=0.02)
