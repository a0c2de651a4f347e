"""The hidden side of 01-basics-with-numpy.

The notebook's locked cells run the student's functions on the worked examples and on weight sets
generated from fixed seeds. Here the same cases are regenerated (the generator below must stay
identical to ``make_cases`` in the notebook's setup cell) and the expected node values are computed
independently, with weight matrices instead of the notebook's per-node loops.
"""

import numpy as np
import pytest


def make_cases(seed, n_cases, n_hidden_layers=1):
    """A copy of the notebook's ``make_cases``: same random stream, same keys."""
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(n_cases):
        input_data = rng.integers(-9, 10, size=2)
        weights = {}
        for layer in range(n_hidden_layers):
            for node in range(2):
                key = f"node_{node}" if n_hidden_layers == 1 else f"node_{layer}_{node}"
                weights[key] = rng.integers(-4, 5, size=2)
        weights["output"] = rng.integers(-4, 5, size=2)
        cases.append((input_data, weights))
    return cases


BANK_LINEAR = (np.array([2, 3]), {"node_0": np.array([1, 1]), "node_1": np.array([-1, 1]),
                                  "output": np.array([2, -1])})
BANK_RELU = (np.array([3, 5]), {"node_0": np.array([2, 4]), "node_1": np.array([4, -5]),
                                "output": np.array([2, 7])})
BOOK_ROWS = np.array([[3, 5], [1, -1], [0, 0], [8, 4]])
DEEP = (np.array([3, 5]), {"node_0_0": np.array([2, 4]), "node_0_1": np.array([4, -5]),
                           "node_1_0": np.array([-1, 2]), "node_1_1": np.array([1, 2]),
                           "output": np.array([2, 7])})


def _matrix(weights, *keys):
    return np.stack([np.asarray(weights[k], dtype=np.float64) for k in keys])


def _relu(z):
    return np.maximum(z, 0.0)


def one_layer(cases, activation):
    """(hidden outputs, prediction) for each case, as (n, 2) and (n,) arrays."""
    hidden, output = [], []
    for x, w in cases:
        h = activation(_matrix(w, "node_0", "node_1") @ np.asarray(x, dtype=np.float64))
        hidden.append(h)
        output.append(float(np.dot(w["output"], h)))
    return np.array(hidden), np.array(output)


def two_layers(cases):
    h0s, h1s, outs = [], [], []
    for x, w in cases:
        h0 = _relu(_matrix(w, "node_0_0", "node_0_1") @ np.asarray(x, dtype=np.float64))
        h1 = _relu(_matrix(w, "node_1_0", "node_1_1") @ h0)
        h0s.append(h0)
        h1s.append(h1)
        outs.append(float(np.dot(w["output"], h1)))
    return np.array(h0s), np.array(h1s), np.array(outs)


@pytest.fixture(scope="session")
def hidden_data():
    """Expected values for every case the notebook's locked cells evaluate."""
    linear = one_layer([BANK_LINEAR, *make_cases(seed=1101, n_cases=6)], lambda z: z)
    relu_net = one_layer([BANK_RELU, *make_cases(seed=1202, n_cases=8)], _relu)
    samples = np.append(np.round(np.random.default_rng(1201).normal(0, 4, size=11), 2), 0.0)
    rows = np.random.default_rng(1301).integers(-9, 10, size=(10, 2))
    weight_sets = [BANK_RELU[1]] + [w for _, w in make_cases(seed=1302, n_cases=3)]
    grid = np.array([one_layer([(row, w) for row in rows], _relu)[1] for w in weight_sets])
    book_rows = one_layer([(row, BANK_RELU[1]) for row in BOOK_ROWS], _relu)[1]
    deep = two_layers([DEEP, *make_cases(seed=1413, n_cases=8, n_hidden_layers=2)])
    return {
        "linear_hidden": linear[0], "linear_output": linear[1],
        "relu_values": _relu(samples),
        "relu_hidden": relu_net[0], "relu_output": relu_net[1],
        "results": book_rows, "results_grid": grid,
        "deep_hidden_0": deep[0], "deep_hidden_1": deep[1], "deep_output": deep[2],
    }
