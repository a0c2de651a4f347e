"""Data fixtures (real tournament games with the season model's `pred`) and the exact optima
that the learned weights are compared with, computed from the student's own training rows."""

import numpy as np
import pytest

import datasets

GAMES = "keras-advanced/games_season_enriched"
TEST_FROM = 2010


def _frame(hidden):
    return datasets.hidden_split(GAMES) if hidden else datasets.public_split(GAMES)


def _x(frame, columns):
    return frame[list(columns)].to_numpy("float32")


@pytest.fixture(scope="session")
def public_games():
    return _frame(False)


@pytest.fixture(scope="session")
def train_games(public_games):
    """The rows the notebook trains on: public games before 2010."""
    return public_games[public_games["season"] < TEST_FROM].reset_index(drop=True)


@pytest.fixture(scope="session")
def test_games(public_games):
    return public_games[public_games["season"] >= TEST_FROM].reset_index(drop=True)


@pytest.fixture(scope="session")
def train_data(train_games):
    return _x(train_games, ["seed_diff"]), _x(train_games, ["score_1", "score_2"])


@pytest.fixture(scope="session")
def hidden_games():
    return _frame(True)


@pytest.fixture(scope="session")
def hidden_data(hidden_games):
    """Hidden games for the two-score model: seed_diff -> (score_1, score_2)."""
    return _x(hidden_games, ["seed_diff"]), _x(hidden_games, ["score_1", "score_2"])


def least_absolute_deviations(x, y, intercept):
    """Exact minimiser of mean |y - x @ w (- b)|, by linear programming (HiGHS)."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity

    x = np.asarray(x, dtype=np.float64)
    if intercept:
        x = np.column_stack([x, np.ones(len(x))])
    n, p = x.shape
    eye = identity(n, format="csr")
    a_eq = hstack([csr_matrix(x), eye, -eye], format="csr")
    cost = np.concatenate([np.zeros(p), np.ones(2 * n)])
    bounds = [(None, None)] * p + [(0, None)] * (2 * n)
    result = linprog(cost, A_eq=a_eq, b_eq=np.asarray(y, dtype=np.float64), bounds=bounds,
                     method="highs")
    if not result.success:
        raise RuntimeError(f"least absolute deviations failed: {result.message}")
    return result.x[:p]


@pytest.fixture(scope="session")
def score_optimum(train_games):
    """(weights, biases) of the exact median regressions score_k ~ seed_diff."""
    x = _x(train_games, ["seed_diff"])
    fits = [least_absolute_deviations(x, train_games[col], intercept=True)
            for col in ("score_1", "score_2")]
    return np.array([f[0] for f in fits]), np.array([f[1] for f in fits])


@pytest.fixture(scope="session")
def regression_optimum(train_games):
    """Weights of the exact median regression score_diff ~ seed_diff + pred, without bias."""
    return least_absolute_deviations(_x(train_games, ["seed_diff", "pred"]),
                                     train_games["score_diff"], intercept=False)


def best_win_weight(z, won):
    """The w minimising the log-loss of sigmoid(w * z) against won (no bias)."""
    from scipy.optimize import minimize_scalar

    z, won = np.asarray(z, dtype=np.float64).ravel(), np.asarray(won, dtype=np.float64).ravel()

    def log_loss(w):
        return float(np.mean(np.logaddexp(0.0, -w * z) * won + np.logaddexp(0.0, w * z) * (1 - won)))

    return float(minimize_scalar(log_loss, bounds=(-10.0, 10.0), method="bounded",
                                 options={"xatol": 1e-9}).x)
