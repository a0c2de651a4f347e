"""The hidden side of 02-backpropagation.

The notebook's locked cells run the student's functions on the worked examples and on cases
generated from fixed seeds. The generators below must stay identical to the ones in the notebook's
setup and locked cells (same seeds, same order of random draws). Expected slopes are not computed
with the backpropagation formulas: they are central finite differences of the loss, so the check is
independent of how the student (or the reference) derived them.
"""

import numpy as np
import pytest


def make_weights(rng):
    return {"node_0": rng.integers(-3, 4, size=2), "node_1": rng.integers(-3, 4, size=2),
            "output": rng.integers(-3, 4, size=2)}


def make_linear_cases(seed, n_cases, n_weights=3):
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_cases):
        input_data = rng.integers(-3, 4, size=n_weights)
        target = int(rng.integers(-5, 6))
        weights = np.round(rng.normal(0, 1, size=n_weights), 2)
        cases.append((input_data, target, weights))
    return cases


def network_prediction(x, weights):
    """Forward pass of the 2-2-1 ReLU network, from a dict of weights."""
    x = np.asarray(x, dtype=np.float64)
    hidden = np.maximum(np.stack([weights["node_0"], weights["node_1"]]).astype(np.float64) @ x, 0.0)
    return float(np.dot(np.asarray(weights["output"], dtype=np.float64), hidden))


def numerical_gradient(loss, w, h=1e-5):
    """Central finite differences of ``loss`` at ``w`` (a float vector)."""
    w = np.asarray(w, dtype=np.float64)
    grad = np.zeros_like(w)
    for i in range(w.size):
        step = np.zeros_like(w)
        step[i] = h
        grad[i] = (loss(w + step) - loss(w - step)) / (2 * h)
    return grad


def linear_loss(x, t):
    x = np.asarray(x, dtype=np.float64)
    return lambda w: float((x @ w - t) ** 2)


def numerical_descent(x, t, w, learning_rate, n_updates):
    """Gradient descent driven by finite-difference slopes: final weights and loss after each step."""
    loss = linear_loss(x, t)
    w = np.asarray(w, dtype=np.float64)
    hist = []
    for _ in range(n_updates):
        w = w - learning_rate * numerical_gradient(loss, w)
        hist.append(loss(w))
    return w, np.array(hist)


def network_slopes_numerical(x, t, weights):
    """Finite-difference slopes of the squared error for the 6 hidden and 2 output weights."""
    flat = np.concatenate([weights["node_0"], weights["node_1"], weights["output"]]).astype(np.float64)

    def loss(v):
        w = {"node_0": v[0:2], "node_1": v[2:4], "output": v[4:6]}
        return (network_prediction(x, w) - t) ** 2

    grad = numerical_gradient(loss, flat, h=1e-6)
    return grad[:4].reshape(2, 2), grad[4:]


BOOK_LINEAR = (np.array([1, 2, 3]), 0, np.array([0, 2, 1]))
WEIGHTS_0 = {"node_0": np.array([2, 1]), "node_1": np.array([1, 2]), "output": np.array([1, 1])}
BOOK_ROWS = [np.array([0, 3]), np.array([1, 2]), np.array([-1, -2]), np.array([4, 0])]
BOOK_TARGETS = [1, 3, 5, 7]
WEIGHTS_1_BOOK = {"node_0": np.array([2, 1]), "node_1": np.array([1.0, 1.5]), "output": np.array([1.0, 1.5])}


def network_mse(rows, targets, weights):
    predictions = np.array([network_prediction(r, weights) for r in rows])
    return float(np.mean((predictions - np.asarray(targets, dtype=np.float64)) ** 2))


@pytest.fixture(scope="session")
def hidden_data():
    """Everything the checks compare against, recomputed from the seeds."""
    rng = np.random.default_rng(2201)
    mse_cases = [(rng.integers(-5, 6, size=(8, 2)), rng.integers(-10, 11, size=8), make_weights(rng))
                 for _ in range(5)]
    slope_cases = [BOOK_LINEAR, *make_linear_cases(seed=2301, n_cases=8)]
    rates = [0.01, 0.001, 0.02, 0.005, 0.01, 0.03]
    update_cases = make_linear_cases(seed=2401, n_cases=len(rates))
    descent_cases = make_linear_cases(seed=2501, n_cases=4)
    rng = np.random.default_rng(2602)
    backprop_cases = [(rng.integers(-4, 5, size=2), int(rng.integers(-6, 7)), make_weights(rng)) for _ in range(8)]

    book_x, book_t, book_w = BOOK_LINEAR
    book_update = book_w - 0.01 * numerical_gradient(linear_loss(book_x, book_t), book_w.astype(np.float64))
    descent = [numerical_descent(x, t, w, 0.01, 15) for x, t, w in descent_cases]
    book_descent = numerical_descent(book_x, book_t, book_w, 0.01, 20)
    book_large = numerical_descent(book_x, book_t, book_w, 0.1, 20)
    backprop = [network_slopes_numerical(x, t, w) for x, t, w in backprop_cases]
    return {
        "predict": network_prediction, "weights_0": WEIGHTS_0,
        "mse_book": np.array([network_mse(BOOK_ROWS, BOOK_TARGETS, WEIGHTS_0),
                              network_mse(BOOK_ROWS, BOOK_TARGETS, WEIGHTS_1_BOOK)]),
        "mse_generated": np.array([network_mse(r, t, w) for r, t, w in mse_cases]),
        "slopes_generated": np.array([numerical_gradient(linear_loss(x, t), np.asarray(w, dtype=np.float64))
                                      for x, t, w in slope_cases]),
        "updates_generated": np.array([np.asarray(w, dtype=np.float64) - lr * numerical_gradient(
            linear_loss(x, t), np.asarray(w, dtype=np.float64)) for (x, t, w), lr in zip(update_cases, rates, strict=True)]),
        "error_updated": float(book_x @ book_update - book_t),
        "error_before": float(book_x @ book_w - book_t),
        "final_weights": book_descent[0], "mse_hist": book_descent[1], "mse_hist_large": book_large[1],
        "initial_loss": float((book_x @ book_w - book_t) ** 2),
        "descent_weights": np.array([w for w, _ in descent]), "descent_hists": np.array([h for _, h in descent]),
        # the squared error of any weights, to tie a loss curve to the weights its descent returned
        "book_loss": linear_loss(book_x, book_t),
        "descent_losses": [linear_loss(x, t) for x, t, _ in descent_cases],
        "hidden_slopes": np.array([h for h, _ in backprop]), "output_slopes": np.array([o for _, o in backprop]),
    }
