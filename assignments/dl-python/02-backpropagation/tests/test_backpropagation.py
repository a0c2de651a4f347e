"""Autograder for dl-python/02-backpropagation.

Slopes and updated weights are compared with central finite differences of the loss, computed here
on the worked examples and on cases generated from fixed seeds; the loss curves must go down for a
good learning rate and up for one that is too large."""

import numpy as np

from autograders import grades
from autograders.checks import CheckFailure, check_array, check_history, check_value

NUMERIC = {"rtol": 1e-6, "atol": 1e-6}
EXACT = {"rtol": 0.0, "atol": 1e-9}


def matches(value, expected, name, hint, tolerance=NUMERIC):
    """``value`` has ``expected``'s shape and values; on failure the hint names the usual mistake."""
    expected = np.asarray(expected, dtype=np.float64)
    check = check_array(value, name).has_shape(expected.shape).is_finite()
    try:
        check.close_to(expected, **tolerance)
    except CheckFailure as failure:
        failure.hint = hint
        raise


SIGN_HINT = ("error = prediction - target (not target - prediction); the slope of the squared error is "
             "2 * error * input_data")


@grades("weight-change", points=1)
def test_error_0(arrays):
    """The error of weights_0 on the input [0, 3]: prediction minus target."""
    check_value(arrays["error_0"], "error_0").close_to(
        6, atol=1e-9, hide_expected=True)


@grades("weight-change", points=1)
def test_weights_1_fix_the_error(arrays, hidden_data):
    """weights_1 changes exactly one weight and predicts the target exactly."""
    flat = check_array(arrays["weights_1"], "weights_1 (node_0, node_1, output)").has_shape((6,)).is_finite().array
    base = np.concatenate([hidden_data["weights_0"][k] for k in ("node_0", "node_1", "output")])
    changed = int(np.sum(~np.isclose(flat.astype(np.float64), base)))
    if changed != 1:
        raise CheckFailure(f"weights_1 differs from weights_0 in {changed} weights; expected exactly 1",
                           measured=changed, expected=1,
                           hint="copy weights_0 and change a single number, e.g. one of the output weights")
    weights_1 = {"node_0": flat[0:2], "node_1": flat[2:4], "output": flat[4:6]}
    prediction = hidden_data["predict"]([0, 3], weights_1)
    check_value(prediction, "the prediction of weights_1 for [0, 3]").close_to(3, atol=1e-9)
    check_value(arrays["error_1"], "error_1").close_to(0, atol=1e-9)


@grades("mse", points=2)
def test_network_mse(arrays, hidden_data):
    """network_mse on the 4 example rows (mse_0, mse_1) and on 5 generated data sets."""
    hint = ("square every error (prediction - target), then take the mean over the rows: "
            "np.mean(errors ** 2), not the sum and not the mean of the raw errors")
    matches(arrays["mse_book"], hidden_data["mse_book"], "[mse_0, mse_1]", hint, EXACT)
    matches(arrays["mse_generated"], hidden_data["mse_generated"], "mse_generated", hint, EXACT)


@grades("slopes", points=1)
def test_slope_one_weight(arrays):
    """One weight: node value 4, weight 3, target 20."""
    try:
        check_value(arrays["slope_one"], "slope_one").close_to(-64, atol=1e-9, hide_expected=True)
    except CheckFailure as failure:
        failure.hint = "2 * error * node value, with error = prediction - target = node_value * weight - target"
        raise


@grades("slopes", points=2)
def test_slopes_match_finite_differences(arrays, hidden_data):
    """get_slope on the example and 8 generated cases, against numerically measured slopes."""
    matches(arrays["slopes_generated"], hidden_data["slopes_generated"], "slopes from get_slope", SIGN_HINT)


@grades("updates", points=1)
def test_updated_weights(arrays, hidden_data):
    """update_weights on 6 generated cases with different learning rates."""
    matches(arrays["updates_generated"], hidden_data["updates_generated"], "updated weights",
            "step against the slope: weights - learning_rate * slope (minus, and scaled by the learning rate)")


@grades("updates", points=1)
def test_error_after_update(arrays, hidden_data):
    """One step with learning rate 0.01 brings the example's error closer to 0."""
    error = check_value(arrays["error_updated"], "error_updated").is_finite()
    if abs(error.value) >= abs(hidden_data["error_before"]):
        raise CheckFailure(f"error_updated is {error.value:.4g}: the update did not reduce the error of "
                           f"{hidden_data['error_before']:g}", measured=error.value,
                           expected=f"closer to 0 than {hidden_data['error_before']:g}", hint=SIGN_HINT)
    error.close_to(hidden_data["error_updated"], rtol=1e-6, atol=1e-6)


def ends_at_its_weights(hist, weights, loss, name):
    """The last loss of a curve is the squared error of the weights its descent returned, recomputed
    here: a curve typed in, or taken from another run, does not end there."""
    final = loss(check_array(weights, f"the weights returned with {name}").has_shape((3,)).is_finite().array
                 .astype(np.float64))
    try:
        check_value(hist[-1], f"the last loss in {name}").close_to(final, rtol=1e-6, atol=1e-6)
    except CheckFailure as failure:
        failure.message += ": the curve does not belong to the weights gradient_descent returned"
        failure.hint = ("append get_mse(input_data, target, weights) after each update, with the weights that "
                        "update produced, and return those weights with the list")
        raise


@grades("descent", points=1)
def test_loss_curve_decreases(arrays, hidden_data):
    """With learning rate 0.01 the loss after each of the 20 updates goes down (and so on the generated
    cases), and each curve ends at the loss of the weights returned with it."""
    mse_hist = check_array(arrays["mse_hist"], "mse_hist").array.reshape(-1)
    check_history({"loss": mse_hist}).has_epochs(20).decreases()
    ends_at_its_weights(mse_hist, arrays["final_weights"], hidden_data["book_loss"], "mse_hist")
    hists = check_array(arrays["descent_hists"], "descent_hists").has_shape((4, 15)).array
    weights = check_array(arrays["descent_weights"], "descent_weights").has_shape((4, 3)).array
    for i, (hist, loss) in enumerate(zip(hists, hidden_data["descent_losses"], strict=True)):
        try:
            check_history({"loss": hist}).decreases()
            ends_at_its_weights(hist, weights[i], loss, f"generated case {i + 1}")
        except CheckFailure as failure:
            failure.message = f"generated case {i + 1}: {failure.message}"
            raise


@grades("descent", points=1)
def test_descent_matches_numerical(arrays, hidden_data):
    """Final weights and losses of gradient descent, against a run driven by numerical slopes."""
    hint = ("record the loss after each update, for n_updates updates, and update with "
            "weights - learning_rate * get_slope(...)")
    matches(arrays["final_weights"], hidden_data["final_weights"], "final_weights", hint)
    matches(arrays["mse_hist"], hidden_data["mse_hist"], "mse_hist", hint)
    matches(arrays["descent_weights"], hidden_data["descent_weights"], "final weights of the generated cases", hint)
    matches(arrays["descent_hists"], hidden_data["descent_hists"], "losses of the generated cases", hint)


@grades("descent", points=1)
def test_large_rate_diverges(arrays, hidden_data):
    """With learning rate 0.1 every step overshoots: the loss grows."""
    hist = check_array(arrays["mse_hist_large"], "mse_hist_large").has_shape((20,)).array
    check_history({"loss": hist}).increases()
    matches(hist, hidden_data["mse_hist_large"], "mse_hist_large",
            "run the same gradient_descent with learning_rate=0.1 from weights [0, 2, 1] for 20 updates",
            {"rtol": 1e-4, "atol": 1e-6})


@grades("backprop", points=1)
def test_output_weight_slopes(arrays, hidden_data):
    """Slopes of the output weights for 8 generated cases, against finite differences."""
    matches(arrays["output_slopes"], hidden_data["output_slopes"], "output_slopes",
            "an output weight's slope is 2 * error times the output of the hidden node it comes from "
            "(after ReLU)")


@grades("backprop", points=2)
def test_hidden_weight_slopes(arrays, hidden_data):
    """Slopes of the weights into the hidden nodes, against finite differences."""
    matches(arrays["hidden_slopes"], hidden_data["hidden_slopes"], "hidden_slopes",
            "multiply three things: 2 * error * the node's output weight, the slope of ReLU at the node's input "
            "(0 when that input is negative), and the input value; a switched-off node passes no slope back")
