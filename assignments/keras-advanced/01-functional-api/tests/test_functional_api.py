"""Autograder for keras-advanced/01-functional-api. Each test scores one grade cell's points.

The checks marked ``public=True`` look only at the student's own objects (structure, shapes,
compile settings): they ship with the release, and students run them with ``check(...)`` while
they work, with the tiered ``hints`` one ``hint(...)`` at a time."""

from autograders import grades
from autograders.checks import (
    Hidden,
    check_history_fits_model,
    check_metric,
    check_model,
    check_value,
    compare,
    dense,
    fail,
)


@grades("functional-model", points=1, public=True, hints=(
    "This chapter builds models with the functional API: layers are called on tensors.",
    "Start from input_tensor = keras.Input(shape=(1,)), call your layer on it, and wrap both ends "
    "in keras.Model(...).",
    "output_tensor = output_layer(input_tensor); model = keras.Model(input_tensor, output_tensor)",
))
def test_built_with_functional_api(model):
    """The model is a keras.Model(inputs, outputs), not a Sequential stack."""
    kind = type(model).__name__
    if kind != "Functional":
        fail(f"the model is a {kind}; expected a functional model", measured=kind,
             expected="Functional",
             hint="this chapter is about the functional API: create input_tensor = keras.Input(...), "
                  "call the layer on it, and build keras.Model(input_tensor, output_tensor) "
                  "instead of keras.Sequential([...])")


@grades("functional-model", points=1, public=True, hints=(
    "One number goes in (seed_diff) and one number comes out (the predicted score difference).",
    "The input is keras.Input(shape=(1,)); the only layer is a Dense layer with 1 unit.",
    "A score difference can be negative, so the output layer has no activation: "
    "layers.Dense(1, name=\"predicted-score-diff\").",
))
def test_one_number_in_one_number_out(model):
    """One number in, one number out, through a single linear Dense layer."""
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
        dense(1, "linear"))


@grades("functional-model", points=1, public=True, hints=(
    "A Dense layer from 1 input to 1 output has one weight and one bias.",
    "Add no other layers: model.summary() should report 2 trainable parameters.",
))
def test_parameter_count(model):
    """One weight and one bias."""
    check_model(model).has_params(total=2, trainable=2)


@grades("compile-and-summary", points=1, public=True, hints=(
    "The games are scored by how many points a prediction is off: the loss is the mean absolute error.",
    "model.compile(optimizer=\"adam\", loss=\"mean_absolute_error\")",
))
def test_compiled_with_adam_and_mae(model):
    """Compiled with the Adam optimizer and the mean absolute error."""
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_absolute_error")


@grades("compile-and-summary", points=1, public=True, hints=(
    "Read the total number of parameters from model.summary() (or model.count_params()).",
    "n_params = model.count_params() gives the same number as the summary.",
))
def test_parameter_answer(arrays):
    """The number of parameters read from the summary."""
    check_value(arrays["n_params"], "n_params").equals(Hidden(2))


@grades("tourney-fit", points=1)
def test_training_loss(history, model, train_data, thresholds):
    """The model's own curve: 10 finite epochs, ending at a low mean absolute error that agrees with
    the exported model on the games (the last epoch is averaged over 80 % of them while the weights
    move, so within 10 % and 0.3 points)."""
    check_history_fits_model(history, model, train_data, epochs=10, ratio=1.1, atol=0.3) \
        .is_finite().final_below(thresholds["tourney_final_loss"])


@grades("tourney-fit", points=1)
def test_seed_diff_weight(model, thresholds):
    """A better seed is worth points: the learned slope is clearly positive."""
    kernel = check_model(model).layer(-1).has_kernel_shape((1, 1)).keras_layer.get_weights()[0]
    compare(float(kernel[0, 0]), thresholds["seed_diff_weight"], "above",
            "the learned weight of seed_diff (points per seed line)",
            hint="the better-seeded team should be predicted to win by more: train for the full "
                 "10 epochs with Adam(learning_rate=0.01), and keep the output linear")


@grades("tourney-fit", points=2)
def test_hidden_tourney_mae(model, hidden_data, thresholds):
    """Mean absolute error on tournament games the student never saw."""
    check_metric(model, hidden_data, "mae").below(
        thresholds["tourney_hidden_mae"],
        hint="fit seed_diff -> score_diff for 10 epochs with Adam(learning_rate=0.01) and the mean "
             "absolute error; a relu on the output cannot predict a loss (a negative score_diff)")


@grades("tourney-fit", points=1)
def test_evaluate_matches(model, train_data, arrays):
    """tourney_mae is what model.evaluate returns on the student's tournament games."""
    expected = check_metric(model, train_data, "mae").value
    check_value(arrays["tourney_mae"], "tourney_mae").close_to(expected, rtol=2e-3, atol=1e-3)
