"""Autograder for keras-intro/01-introducing-keras. Each test scores one grade cell's points.

The exported history and predictions are claims: the history must be the one fit returned for
the exported model (its final loss agrees with the model on the training data), and the
predictions must be what the exported model predicts; the orbit is then scored on the model's own
predictions (see "Recompute, don't trust" in the instructors' guide)."""

import numpy as np

from autograders import grades
from autograders.checks import (
    Hidden,
    check_array,
    check_history_fits_model,
    check_metric,
    check_model,
    check_predictions,
    check_retraining,
    check_value,
    dense,
)

# The last epoch's loss is averaged while the weights still move: on the reference it differed from
# the trained model's loss on the training data by a factor of up to 1.5 (seeds 1-4); an untrained
# model with a made-up curve differs by a factor of thousands.
HISTORY_RATIO, HISTORY_ATOL = 3.0, 0.2
TWENTY_MINUTES = np.arange(-10, 11, dtype="float32")
EIGHTY_MINUTES = np.arange(-40, 41, dtype="float32")

LINEAR_OUTPUT = "a regression output must be free to take any value: remove the activation of the last layer"


@grades("hello-nets", points=1)
def test_hello_architecture(model):
    """2 inputs, Dense(10, relu), Dense(1)."""
    check_model(model).has_input_shape((None, 2)).layers(dense(10, "relu"), dense(1, "linear"))


@grades("hello-nets", points=1)
def test_hello_parameter_count(model):
    """The parameter count of that architecture: the weights and biases of both layers."""
    check_model(model).has_params(total=Hidden(41), trainable=Hidden(41))


@grades("counting", points=1)
def test_count_architecture(model):
    check_model(model).has_input_shape((None, 3)).layers(dense(5, "relu"), dense(1, "linear"))


@grades("counting", points=1)
def test_count_model_parameters(model):
    check_model(model).has_params(total=Hidden(26))


@grades("counting", points=1)
def test_count_answer(arrays):
    """The hand count stored in n_params."""
    check_value(arrays["n_params"], "n_params").equals(Hidden(26))


@grades("build-as-shown", points=1)
def test_shown_architecture(model):
    check_model(model).has_input_shape((None, 2)).layers(dense(3, "relu"), dense(1, "linear"))


@grades("meteor-model", points=2)
def test_meteor_architecture(model):
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
        dense(50, "relu"), dense(50, "relu"), dense(50, "relu"), dense(1, "linear"))


@grades("meteor-model", points=1)
def test_meteor_compile(model):
    check_model(model).is_compiled_with(optimizer="adam", loss="mse")


@grades("meteor-model", points=2)
def test_meteor_generalizes(model, hidden_data, thresholds):
    """Mean squared error on measurements the student never saw."""
    check_metric(model, hidden_data, "mse").below(
        thresholds["meteor_hidden_mse"],
        hint="train for the full 30 epochs with adam and mse, and keep the last layer linear")


@grades("meteor-model", points=1)
def test_meteor_training_converged(history, model, train_data, thresholds):
    """The student's own loss curve, of this model: finite, trending down, and low at the end."""
    check_history_fits_model(history, model, train_data, epochs=30, ratio=HISTORY_RATIO, atol=HISTORY_ATOL) \
        .is_finite().decreases().final_below(thresholds["meteor_final_loss"])


@grades("meteor-model", points=1)
def test_meteor_retrains(model, train_data, seed):
    """A short seeded re-training of the submitted architecture and optimizer also converges."""
    check_retraining(model, train_data, epochs=8, seed=seed).is_finite().decreases()


def _orbit_model(submission):
    return submission.get("meteor-model", "model", expect="model")


@grades("meteor-predictions", points=1)
def test_prediction_shapes(arrays, submission):
    """Both prediction arrays, each what the trained orbit model predicts for its minutes."""
    for name, minutes in (("twenty_min_orbit", TWENTY_MINUTES), ("eighty_min_orbit", EIGHTY_MINUTES)):
        claimed = check_array(arrays[name], name).has_shape((len(minutes), 1)).is_finite().array
        check_predictions(claimed, _orbit_model(submission), minutes, name)


@grades("meteor-predictions", points=1)
def test_twenty_minute_orbit(arrays, submission, thresholds):
    """Inside the training window the model's predictions follow the true orbit y = t**2."""
    claimed = check_array(arrays["twenty_min_orbit"], "twenty_min_orbit").has_shape((21, None)).array
    predicted = check_predictions(claimed, _orbit_model(submission), TWENTY_MINUTES, "twenty_min_orbit")
    check_metric(predicted.reshape(-1), (TWENTY_MINUTES, TWENTY_MINUTES**2), "mse").below(
        thresholds["twenty_min_mse"])
