"""Autograder for keras-advanced/02-two-inputs. Each test scores one grade cell's points."""

from autograders import grades
from autograders.checks import (
    check_history,
    check_metric,
    check_model,
    check_value,
    fail,
    layer_spec,
)
from autograders.checks.team_strength import (
    check_sign_flip,
    check_strength_correlation,
    count_embeddings,
)


@grades("team-count", points=1)
def test_team_count(arrays, n_teams):
    check_value(arrays["n_teams"], "n_teams").equals(n_teams)


@grades("team-strength-model", points=2)
def test_lookup_layers(model, n_teams):
    """Input of one id, Embedding(n_teams, 1), Flatten: one strength per example."""
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
        layer_spec("Embedding", input_dim=n_teams, output_dim=1), layer_spec("Flatten"))


@grades("team-strength-model", points=1)
def test_lookup_parameters(model, n_teams):
    """One trainable number per team."""
    check_model(model).has_params(total=n_teams, trainable=n_teams)


@grades("two-input-model", points=1)
def test_two_team_inputs(model):
    check_model(model).has_inputs(2).has_input_shape((None, 1), (None, 1)).has_outputs(1) \
        .has_output_shape((None, 1))


@grades("two-input-model", points=1)
def test_strength_model_is_shared(model):
    """One team-strength model, called on both inputs, holding the only Embedding."""
    check_model(model).shares_layer("Functional", uses=2)
    count_embeddings(model, 1)


@grades("two-input-model", points=1)
def test_parameter_count(model, n_teams):
    """Shared weights are counted once: n_teams parameters, not twice as many."""
    check_model(model).has_params(total=n_teams, trainable=n_teams)


@grades("two-input-model", points=1)
def test_subtract_merge(model):
    kinds = [type(layer).__name__ for layer in model.layers]
    if "Subtract" not in kinds:
        merges = [k for k in kinds if k in ("Add", "Concatenate", "Multiply", "Average", "Dot")]
        fail(f"the model merges the strengths with {merges or 'no merge layer'}; expected Subtract",
             measured=merges, expected="Subtract",
             hint="the score difference is team 1's strength minus team 2's: "
                  "layers.Subtract()([team_1_strength, team_2_strength])")


@grades("two-input-model", points=1)
def test_swapping_teams_flips_sign(model, tourney_public):
    """f(team_1, team_2) = -f(team_2, team_1) on every public tournament pairing."""
    check_sign_flip(model, tourney_public[0])


@grades("two-input-model", points=1)
def test_compiled_with_mae(model):
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_absolute_error")


@grades("season-fit", points=1)
def test_season_training(history, thresholds):
    """5 epochs, finite, a clear downward trend, and a low final loss."""
    check_history(history, "loss").has_epochs(5).is_finite().decreases().final_below(
        thresholds["season_final_loss"])


@grades("season-fit", points=2)
def test_strengths_match_the_truth(model, true_strengths, n_teams, thresholds):
    """The learned strength of every team correlates with its true (simulated) strength."""
    check_strength_correlation(model, true_strengths, thresholds["strength_correlation"], n_teams)


@grades("season-fit", points=1)
def test_hidden_season_mae(model, hidden_data, thresholds):
    """Mean absolute error on regular-season games held back from the student."""
    check_metric(model, hidden_data, "mae", batch_size=4096).below(
        thresholds["season_hidden_mae"],
        hint="fit on the whole season (no validation_split) for 5 epochs with "
             "Adam(learning_rate=0.1), sharing one lookup between both teams")


@grades("tourney-evaluation", points=2)
def test_hidden_tourney_mae(model, tourney_hidden, thresholds):
    """Mean absolute error on tournament games held back from the student."""
    check_metric(model, tourney_hidden, "mae").below(thresholds["tourney_hidden_mae"])


@grades("tourney-evaluation", points=1)
def test_evaluate_matches(model, tourney_public, arrays):
    """tourney_mae is what model.evaluate returns on the student's tournament games."""
    expected = check_metric(model, tourney_public, "mae").value
    check_value(arrays["tourney_mae"], "tourney_mae").close_to(expected, rtol=2e-3, atol=1e-3)
