"""Autograder for keras-advanced/03-three-inputs. Each test scores one grade cell's points."""

import numpy as np
from conftest import TEST_FROM, stacked_inputs

from autograders import grades
from autograders.checks import (
    CheckFailure,
    Hidden,
    check_array,
    check_history_fits_model,
    check_metric,
    check_model,
    check_value,
    compare,
    dense,
    fail,
)
from autograders.checks.procedure import Fit, check_fitted_like
from autograders.checks.team_strength import as_fitted, count_embeddings


def _merge_layer(model):
    merges = [layer for layer in model.layers
              if type(layer).__name__ in ("Concatenate", "Add", "Subtract", "Multiply", "Average")]
    return merges[0] if merges else None


@grades("three-input-model", points=1)
def test_three_inputs(model):
    check_model(model).has_inputs(3).has_input_shape((None, 1), (None, 1), (None, 1)) \
        .has_outputs(1).has_output_shape((None, 1))


@grades("three-input-model", points=1)
def test_concatenate_merge(model):
    """The two strengths and home sit side by side: Concatenate outputs 3 numbers per game."""
    merge = _merge_layer(model)
    kind = "no merge layer" if merge is None else type(merge).__name__
    if kind != "Concatenate":
        fail(f"the inputs are merged with {kind}; expected Concatenate", measured=kind,
             expected="Concatenate",
             hint="Add or Subtract squash the three numbers into one; layers.Concatenate() keeps "
                  "them side by side so that the Dense layer learns a weight for each")
    check_model(model).layer(merge.name).has_output_shape((None, 3))


@grades("three-input-model", points=1)
def test_dense_has_four_parameters(model):
    """Dense(1) on three numbers: 3 weights and a bias."""
    check_model(model).layer(-1).is_type("Dense").has_units(1).has_activation("linear") \
        .has_params(4)


@grades("three-input-model", points=1)
def test_total_parameters(model, n_teams):
    """The shared lookup (n_teams) plus the Dense layer (4)."""
    check_model(model).has_params(total=Hidden(n_teams + 4), trainable=Hidden(n_teams + 4))


@grades("three-input-model", points=1)
def test_strength_model_is_shared(model):
    check_model(model).shares_layer("Embedding", uses=2)
    count_embeddings(model, 1)


@grades("model-questions", points=1)
def test_inputs_answer(arrays):
    check_value(arrays["n_inputs"], "n_inputs").equals(Hidden(3))


@grades("model-questions", points=1)
def test_outputs_answer(arrays):
    check_value(arrays["n_outputs"], "n_outputs").equals(Hidden(1))


@grades("model-questions", points=1)
def test_parameters_answer(arrays, n_teams):
    check_value(arrays["n_params"], "n_params").equals(Hidden(n_teams + 4))


@grades("model-questions", points=1)
def test_shared_layer_answer(values, model):
    """The name of the layer that two inputs use, as the summary prints it."""
    shared = []
    for layer in model.layers:
        try:
            check_model(model).shares_layer(layer.name, uses=2)
            shared.append(layer.name)
        except CheckFailure:
            pass
    answer = values["shared_layer"]
    if not isinstance(answer, str):
        fail(f"shared_layer is a {type(answer).__name__}; expected the layer's name as a string",
             measured=type(answer).__name__, expected="str",
             hint='write the name in quotes, e.g. shared_layer = "..."')
    if answer not in shared:
        fail(f"'{answer}' is not the layer that is used by two inputs", measured=answer,
             expected="the shared layer's name",
             hint="in the summary, the shared layer is the one connected to both team inputs; the "
                  "Dense layer and the Concatenate layer are each used once")


@grades("three-input-fit", points=1)
def test_compiled_with_mae(model):
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_absolute_error")


@grades("three-input-fit", points=1)
def test_season_training(history, model, train_data, thresholds):
    """The model's own curve: 4 finite epochs going down to a low loss that agrees with the exported
    model on the season (within 10 % and 0.3 points)."""
    check_history_fits_model(history, model, as_fitted(train_data), epochs=4, ratio=1.1, atol=0.3) \
        .is_finite().decreases().final_below(thresholds["season_final_loss"])


@grades("three-input-fit", points=1)
def test_home_advantage_learned(model, thresholds):
    """The Dense weight of the home input: points gained at home against away or neutral."""
    layer = check_model(model).layer(-1).has_kernel_shape((3, 1)).keras_layer
    weight = float(layer.get_weights()[0][2, 0])
    compare(weight, thresholds["home_weight"], "above",
            "the learned weight of the home input (points)",
            hint="home teams win more often: keep home as the third input of the Concatenate, and "
                 "fit for 4 epochs on the whole season")


@grades("three-input-fit", points=2)
def test_hidden_season_mae(model, hidden_data, thresholds):
    check_metric(model, hidden_data, "mae", batch_size=4096).below(
        thresholds["season_hidden_mae"])


@grades("stacked-model", points=1)
def test_pred_column(models, arrays, tourney_public):
    """pred is the season model's prediction for every public tournament game."""
    x, _ = stacked_inputs(models["season_model"], tourney_public)
    pred = check_array(arrays["pred"], "pred").has_shape((len(tourney_public),)).is_finite().array
    worst = float(np.max(np.abs(pred - x[:, 2]))) if len(pred) else 0.0
    if worst > 1e-3 * max(1.0, float(np.max(np.abs(x[:, 2])))):
        fail(f"pred differs from the season model's predictions by up to {worst:.3g} points",
             measured=worst, expected="the same values",
             hint="predict with the inputs in the model's order: [team_1, team_2, home]; swapping "
                  "the teams flips the sign of every prediction")


@grades("stacked-model", points=1)
def test_stacked_architecture(models):
    """One (3,) input, a linear Dense(1); Adam with learning rate 0.05 and the mean absolute error."""
    check_model(models["stacked_model"]).has_input_shape((None, 3)).layers(dense(1, "linear")) \
        .has_params(total=4).is_compiled_with(optimizer="adam", learning_rate=0.05, loss="mean_absolute_error")


@grades("stacked-model", points=2)
def test_stacked_hidden_mae(models, tourney_hidden_test, thresholds):
    """Hidden tournament games from 2010 on, with pred from the student's season model."""
    data = stacked_inputs(models["season_model"], tourney_hidden_test)
    check_metric(models["stacked_model"], data, "mae").below(
        thresholds["stacked_hidden_mae"],
        hint="fit the stacked model on [home, seed_diff, pred] of the games before 2010, with pred "
             "from the fitted season model")


@grades("stacked-model", points=1)
def test_stacked_fitted_before_the_test_seasons(models, tourney_public):
    """The stacked model learned from the seasons before 2010 only: its optimizer's step count (saved
    with the model) tells those rows from the whole tournament, test seasons included."""
    before = int((tourney_public["season"] < TEST_FROM).sum())
    prescribed = Fit(before, epochs=5, batch_size=128, validation_split=0.1)
    every = len(tourney_public)
    check_fitted_like(
        models["stacked_model"], "the stacked model", prescribed,
        {"every season, the test seasons included": Fit(every, 5, 128, 0.1),
         "every season without a validation split": Fit(every, 5, 128),
         "the test seasons (2010 on)": Fit(every - before, 5, 128, 0.1)},
        hint="fit on games_tourney_train (the seasons before 2010) only: a model that has seen the "
             "test seasons makes its test error look better than it is")


@grades("stacked-model", points=1)
def test_stacked_mae_value(models, arrays, tourney_public):
    """stacked_mae is the stacked model's error on the public tournament games from 2010 on."""
    test = tourney_public[tourney_public["season"] >= TEST_FROM]
    expected = check_metric(models["stacked_model"], stacked_inputs(models["season_model"], test),
                            "mae").value
    check_value(arrays["stacked_mae"], "stacked_mae").close_to(expected, rtol=2e-3, atol=1e-3)
