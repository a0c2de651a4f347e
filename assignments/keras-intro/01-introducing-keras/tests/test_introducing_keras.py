"""Autograder for keras-intro/01-introducing-keras. Each test scores one grade cell's points."""

import numpy as np

from autograders import grades
from autograders.checks import (
    check_array,
    check_history,
    check_metric,
    check_model,
    check_retraining,
    check_value,
    dense,
)

LINEAR_OUTPUT = "a regression output must be free to take any value: remove the activation of the last layer"


@grades("hello-nets", points=1)
def test_hello_architecture(model):
    """2 inputs, Dense(10, relu), Dense(1)."""
    check_model(model).has_input_shape((None, 2)).layers(dense(10, "relu"), dense(1, "linear"))


@grades("hello-nets", points=1)
def test_hello_parameter_count(model):
    """2*10+10 + 10*1+1 = 41 parameters."""
    check_model(model).has_params(total=41, trainable=41)


@grades("counting", points=1)
def test_count_architecture(model):
    check_model(model).has_input_shape((None, 3)).layers(dense(5, "relu"), dense(1, "linear"))


@grades("counting", points=1)
def test_count_model_parameters(model):
    check_model(model).has_params(total=26)


@grades("counting", points=1)
def test_count_answer(arrays):
    """The hand count stored in n_params."""
    check_value(arrays["n_params"], "n_params").equals(26)


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
def test_meteor_training_converged(history, thresholds):
    """The student's own loss curve: finite, trending down, and low at the end."""
    check_history(history, "loss").has_epochs(30).is_finite().decreases().final_below(
        thresholds["meteor_final_loss"])


@grades("meteor-model", points=1)
def test_meteor_retrains(model, train_data, seed):
    """A short seeded re-training of the submitted architecture and optimizer also converges."""
    check_retraining(model, train_data, epochs=8, seed=seed).is_finite().decreases()


@grades("meteor-predictions", points=1)
def test_prediction_shapes(arrays):
    check_array(arrays["twenty_min_orbit"], "twenty_min_orbit").has_shape((21, 1)).is_finite()
    check_array(arrays["eighty_min_orbit"], "eighty_min_orbit").has_shape((81, 1)).is_finite()


@grades("meteor-predictions", points=1)
def test_twenty_minute_orbit(arrays, thresholds):
    """Inside the training window the predictions follow the true orbit y = t**2."""
    minutes = np.arange(-10, 11, dtype="float32")
    predicted = check_array(arrays["twenty_min_orbit"], "twenty_min_orbit").has_shape((21, None)).array
    check_metric(predicted.reshape(-1), (minutes, minutes**2), "mse").below(thresholds["twenty_min_mse"])
