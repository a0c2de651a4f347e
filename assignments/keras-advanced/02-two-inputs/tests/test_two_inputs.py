"""Autograder for keras-advanced/02-two-inputs. Each test scores one grade cell's points."""

import numpy as np

from autograders import grades
from autograders.checks import (
    Hidden,
    check_history_fits_model,
    check_metric,
    check_model,
    check_value,
    fail,
    layer_spec,
)
from autograders.checks.team_strength import (
    as_fitted,
    check_sign_flip,
    check_strength_correlation,
    count_embeddings,
    learned_strengths,
)


@grades("team-count", points=1)
def test_team_count(arrays, n_teams):
    check_value(arrays["n_teams"], "n_teams").equals(Hidden(n_teams))


@grades("team-strength-model", points=2)
def test_lookup_layers(model, n_teams):
    """Input of one id, Embedding(n_teams, 1), Flatten: one strength per example."""
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
        layer_spec("Embedding", input_dim=n_teams, output_dim=1), layer_spec("Flatten"))


@grades("team-strength-model", points=1)
def test_lookup_parameters(model, n_teams):
    """One trainable number per team."""
    check_model(model).has_params(total=Hidden(n_teams), trainable=Hidden(n_teams))


@grades("two-input-model", points=1)
def test_two_team_inputs(model):
    check_model(model).has_inputs(2).has_input_shape((None, 1), (None, 1)).has_outputs(1) \
        .has_output_shape((None, 1))


@grades("two-input-model", points=1)
def test_strength_model_is_shared(model):
    """One lookup, called on both inputs, holding the only Embedding: the team-strength model of any
    class (functional, a named Sequential...) or the Embedding itself."""
    check_model(model).shares_layer("Embedding", uses=2)
    count_embeddings(model, 1)


@grades("two-input-model", points=1)
def test_parameter_count(model, n_teams):
    """Shared weights are counted once: n_teams parameters, not twice as many."""
    check_model(model).has_params(total=Hidden(n_teams), trainable=Hidden(n_teams))


@grades("two-input-model", points=1)
def test_subtract_merge(model):
    kinds = [type(layer).__name__ for layer in check_model(model).flat_layers()]
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
def test_season_training(history, model, train_data, thresholds):
    """The model's own curve: 5 finite epochs with a clear downward trend, ending at a low loss that
    agrees with the exported model on the season (within 10 % and 0.3 points: the last epoch is
    averaged while the strengths still move)."""
    check_history_fits_model(history, model, as_fitted(train_data), epochs=5, ratio=1.1, atol=0.3) \
        .is_finite().decreases().final_below(thresholds["season_final_loss"])


def _late_teams(train_data, n_teams):
    """The teams that play only in the last tenth of the public season's rows: the rows that
    validation_split=0.1 would hold out (Keras takes them from the end)."""
    (team_1, team_2), _ = train_data
    ids = np.concatenate([team_1, team_2], axis=1)
    held_out_by_a_split = len(ids) - int(len(ids) * 0.9)
    late = np.setdiff1d(np.unique(ids[-held_out_by_a_split:]), np.unique(ids[:-held_out_by_a_split]))
    return late[(late >= 0) & (late < n_teams)]


@grades("season-fit", points=1)
def test_every_season_was_fitted(model, train_data, n_teams, history):
    """Every row of the season was fitted: the teams that play only in its last rows (the ones
    validation_split would hold out) moved away from their small random start like the others."""
    late = _late_teams(train_data, n_teams)
    strength = np.abs(learned_strengths(model, n_teams))
    others = np.setdiff1d(np.arange(n_teams), late)
    late_size = float(np.median(strength[late])) if late.size else 0.0
    other_size = float(np.median(strength[others])) if others.size else 0.0
    validation_keys = sorted(k for k in history if str(k).startswith("val_"))
    if late.size and late_size < 0.1 * other_size:
        fail(f"the {late.size} teams that play only in the last tenth of the season's rows kept strengths "
             f"near their random start (median size {late_size:.3g} points, against {other_size:.3g} for "
             "the other teams): those rows were never fitted",
             measured=round(late_size, 4), expected="strengths as large as the other teams'",
             hint="the history has validation results, so validation_split held those rows out: fit on "
                  "the whole season without it" if validation_keys else
                  "the usual causes are validation_split (Keras takes its rows from the end of the arrays) "
                  "or fitting on a slice of the season: fit on all of games_season")
    if validation_keys:
        fail(f"the season fit reports {', '.join(validation_keys)}: part of the season was held out for "
             "validation", measured=validation_keys, expected="no validation",
             hint="do not pass validation_split or validation_data to this fit: every game trains the strengths")


@grades("season-fit", points=1)
def test_strengths_match_the_truth(model, true_strengths, n_teams, train_data, thresholds):
    """The learned strength of every team correlates with its true (simulated) strength; the teams of
    the season's last rows are left to test_every_season_was_fitted, so that a fit that skips them
    loses that check's point only."""
    fitted = np.setdiff1d(np.arange(n_teams), _late_teams(train_data, n_teams))
    check_strength_correlation(model, true_strengths, thresholds["strength_correlation"], n_teams, fitted)


@grades("season-fit", points=1)
def test_hidden_season_mae(model, hidden_data, thresholds):
    """Mean absolute error on regular-season games held back from the student."""
    check_metric(model, hidden_data, "mae", batch_size=4096).below(
        thresholds["season_hidden_mae"],
        hint="the margins of unseen season games are off; the usual causes are fewer than 5 epochs, "
             "another learning rate than Adam(learning_rate=0.1), or two separate lookups instead of one "
             "shared between the teams")


@grades("tourney-evaluation", points=2)
def test_hidden_tourney_mae(model, tourney_hidden, thresholds):
    """Mean absolute error on tournament games held back from the student."""
    check_metric(model, tourney_hidden, "mae").below(thresholds["tourney_hidden_mae"])


@grades("tourney-evaluation", points=1)
def test_evaluate_matches(model, tourney_public, arrays):
    """tourney_mae is what model.evaluate returns on the student's tournament games."""
    expected = check_metric(model, tourney_public, "mae").value
    check_value(arrays["tourney_mae"], "tourney_mae").close_to(Hidden(expected), rtol=2e-3, atol=1e-3)
