"""Autograder for keras-advanced/04-multiple-outputs. Each test scores one grade cell's points."""

import numpy as np
from conftest import best_win_weight

from autograders import grades
from autograders.checks import (
    Hidden,
    check_array,
    check_metric,
    check_model,
    check_value,
    compare,
    compute_metric,
    dense,
    fail,
    from_student,
)

REG_CLASS_LOSSES = ["mean_absolute_error", "binary_crossentropy"]


def _kernel_and_bias(model):
    layer = check_model(model).layer(-1).has_kernel_shape((1, 2)).keras_layer
    with from_student("reading the output layer's weights"):
        weights = layer.get_weights()
    if len(weights) != 2:
        fail("the output layer has no bias", measured="no bias", expected="use_bias=True",
             hint="the two scores need an intercept each: keep the Dense layer's bias")
    return weights[0][0].astype(np.float64), weights[1].astype(np.float64)


def _two_outputs(model, x):
    with from_student("predicting with the model"):
        predictions = model.predict(x, verbose=0, batch_size=4096)
    if not isinstance(predictions, list | tuple) or len(predictions) != 2:
        fail("the model does not return two outputs", measured=type(predictions).__name__,
             expected="[score_diff, win probability]",
             hint="build keras.Model(input_tensor, [output_tensor_1, output_tensor_2])")
    return [np.asarray(p, dtype=np.float64).reshape(-1) for p in predictions]


def _win_logits(model, margin):
    """The sigmoid layer's input for the predicted margins: Keras computes its cross-entropy from
    these logits (without clipping the probabilities), and so does the check."""
    with from_student("reading the last layer's weights"):
        weights = check_model(model).layer(-1).keras_layer.get_weights()
    logits = margin * float(np.ravel(weights[0])[0])
    return logits + float(np.ravel(weights[1])[0]) if len(weights) > 1 else logits


def _log_loss_from_logits(logits, won):
    logits, won = np.asarray(logits, np.float64), np.asarray(won, np.float64)
    return float(np.mean(won * np.logaddexp(0.0, -logits) + (1 - won) * np.logaddexp(0.0, logits)))


def _regclass_weights(model):
    check_model(model).layers(dense(1, "linear"), dense(1, "sigmoid"))
    first, second = check_model(model).layer(0).keras_layer, check_model(model).layer(1).keras_layer
    with from_student("reading the two layers' weights"):
        return (np.asarray(first.get_weights()[0], np.float64).ravel(),
                float(np.ravel(second.get_weights()[0])[0]))


# --- two scores ------------------------------------------------------------------------------


@grades("score-model", points=1)
def test_score_architecture(model):
    """One input (seed_diff), one Dense layer with two linear units: (score_1, score_2)."""
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 2)).layers(
        dense(2, "linear")).has_params(total=Hidden(4))


@grades("score-model", points=1)
def test_score_compiled(model):
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_absolute_error")


@grades("score-model", points=1)
def test_score_weight_signs(model):
    """A better seed adds points to team 1 (first output) and takes them from team 2 (second)."""
    kernel, _ = _kernel_and_bias(model)
    if not (kernel[0] > 0 > kernel[1]):
        fail(f"the seed_diff weights are {kernel.round(3).tolist()}; expected the first positive "
             "and the second negative", measured=kernel.round(3).tolist(), expected="[+, -]",
             hint="the targets must be [score_1, score_2] in this order: team 1's score grows with "
                  "seed_diff, team 2's shrinks; swapped columns swap the signs")


@grades("score-model", points=1)
def test_score_weight_magnitudes(model, score_optimum, thresholds):
    """|weights| close to the exact median regressions (about 0.6 points per seed line)."""
    kernel, _ = _kernel_and_bias(model)
    error = float(np.max(np.abs(np.abs(kernel) - np.abs(score_optimum[0]))))
    compare(error, thresholds["score_weight_error"], "below",
            "the largest distance of a |weight| from the best possible (points per seed line)",
            hint="train for 10 epochs with Adam(learning_rate=0.01) and the mean absolute error")


@grades("score-model", points=1)
def test_score_biases(model, score_optimum, thresholds):
    """Both biases near the typical score of about 71 points."""
    _, bias = _kernel_and_bias(model)
    error = float(np.max(np.abs(bias - score_optimum[1])))
    compare(error, thresholds["score_bias_error"], "below",
            "the largest distance of a bias from the best possible (points)",
            hint="each bias is the score of a team when the seeds are equal, about 71 points: start "
                 "them near it with bias_initializer=keras.initializers.Constant(70.0) and train "
                 "for 10 epochs")


@grades("score-model", points=1)
def test_score_hidden_mae(model, hidden_data, thresholds):
    check_metric(model, hidden_data, "mae").below(thresholds["score_hidden_mae"])


# --- regression and classification -----------------------------------------------------------


@grades("regclass-model", points=1)
def test_regclass_layers(model):
    """Input of 2 columns; Dense(1, linear, no bias) then Dense(1, sigmoid, no bias); 2 outputs."""
    check_model(model).has_input_shape((None, 2)).has_outputs(2) \
        .has_output_shape((None, 1), (None, 1)) \
        .layers(dense(1, "linear", use_bias=False), dense(1, "sigmoid", use_bias=False))


@grades("regclass-model", points=1)
def test_regclass_parameter_count(model):
    """Two weights, then one: no biases."""
    check_model(model).has_params(total=Hidden(3), trainable=Hidden(3))


@grades("regclass-model", points=1)
def test_regclass_compiled(model):
    """One loss per output (a list in the order of the outputs, or a dict keyed by output name),
    and Adam with a rate of 0.01."""
    check_model(model).is_compiled_with(loss=REG_CLASS_LOSSES, optimizer="adam",
                                        learning_rate=0.01)


@grades("regclass-model", points=1)
def test_regclass_weight_signs(model):
    """More seed advantage and a higher season prediction mean a bigger margin, and a bigger
    margin means a likelier win: every weight is positive."""
    first, second = _regclass_weights(model)
    weights = [*first.round(3).tolist(), round(second, 3)]
    if not (np.all(first > 0) and second > 0):
        fail(f"the weights are {weights}; expected all positive", measured=weights,
             expected="all > 0",
             hint="check that the first output is fitted to score_diff and the second to won, with "
                  "the losses in the same order as the outputs")


@grades("regclass-model", points=1)
def test_regclass_weight_magnitudes(model, regression_optimum, train_games, thresholds):
    """The regression weights are close to the exact median regression, and the last weight to
    the best win weight for the student's own predicted margins."""
    first, second = _regclass_weights(model)
    error = float(np.max(np.abs(first - regression_optimum)))
    compare(error, thresholds["regression_weight_error"], "below",
            "the largest distance of a regression weight from the best possible",
            hint="start the first layer's weights at 0 (kernel_initializer='zeros') and fit for 10 "
                 "epochs with Adam(learning_rate=0.01), batch_size=64, and the losses "
                 "[mean_absolute_error, binary_crossentropy]")
    margin = train_games[["seed_diff", "pred"]].to_numpy(np.float64) @ first
    best = best_win_weight(margin, train_games["won"])
    compare(abs(second - best), thresholds["win_weight_error"], "below",
            "the distance of the win weight from the best one for these margins",
            hint="the second output must be fitted to won with binary cross-entropy")


# --- evaluation --------------------------------------------------------------------------------


@grades("regclass-evaluation", points=1)
def test_evaluate_values(model, arrays, test_games):
    """test_losses = [total, MAE of score_diff, log-loss of won] on the public test games.

    Keras 3 averages the per-output losses over batches without weighting the last, smaller
    batch, so only the total is exact; the two parts get a 5% tolerance.
    """
    losses = check_array(arrays["test_losses"], "test_losses").has_shape((3,)).is_finite().array
    margin, _ = _two_outputs(model, test_games[["seed_diff", "pred"]].to_numpy("float32"))
    mae = compute_metric(test_games["score_diff"].to_numpy(), margin, "mae")
    log_loss = _log_loss_from_logits(_win_logits(model, margin), test_games["won"].to_numpy())
    check_value(losses[0], "test_losses[0], the total loss").close_to(Hidden(mae + log_loss), rtol=2e-3)
    check_value(losses[1], "test_losses[1], the MAE of score_diff").close_to(Hidden(mae), rtol=0.05)
    check_value(losses[2], "test_losses[2], the log-loss of won").close_to(Hidden(log_loss), rtol=0.05)


@grades("regclass-evaluation", points=1)
def test_hidden_score_diff_mae(model, hidden_games, thresholds):
    margin, _ = _two_outputs(model, hidden_games[["seed_diff", "pred"]].to_numpy("float32"))
    check_metric(margin, (None, hidden_games["score_diff"].to_numpy()), "mae").below(
        thresholds["regclass_hidden_mae"])


@grades("regclass-evaluation", points=1)
def test_hidden_win_log_loss(model, hidden_games, thresholds):
    _, probability = _two_outputs(model, hidden_games[["seed_diff", "pred"]].to_numpy("float32"))
    check_metric(probability, (None, hidden_games["won"].to_numpy()), "log_loss").below(
        thresholds["regclass_hidden_log_loss"])


@grades("regclass-evaluation", points=1)
def test_win_probability_by_hand(model, arrays):
    """sigmoid(w * 1) and sigmoid(w * 10) with the model's last weight w."""
    _, w = _regclass_weights(model)
    for name, margin in (("p_win_1", 1.0), ("p_win_10", 10.0)):
        check_value(arrays[name], name).close_to(Hidden(1 / (1 + np.exp(-w * margin))), rtol=1e-4,
                                                 atol=1e-6)
