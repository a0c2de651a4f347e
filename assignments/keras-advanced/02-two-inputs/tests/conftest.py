"""Data fixtures: the simulated league (public season for training, hidden rows for grading)
and the league's true team strengths, which only the grading side can compute."""

import numpy as np
import pytest

import datasets
from datasets import league

SEASON = "keras-advanced/games_season_synthetic"
TOURNEY = "keras-advanced/games_tourney_synthetic"


def _xy(frame):
    teams = [frame[["team_1"]].to_numpy("int32"), frame[["team_2"]].to_numpy("int32")]
    return teams, frame["score_diff"].to_numpy("float32")


@pytest.fixture(scope="session")
def train_data():
    return _xy(datasets.public_split(SEASON))


@pytest.fixture(scope="session")
def hidden_data():
    """Hidden regular-season games."""
    return _xy(datasets.hidden_split(SEASON))


@pytest.fixture(scope="session")
def tourney_public():
    return _xy(datasets.public_split(TOURNEY))


@pytest.fixture(scope="session")
def tourney_hidden():
    return _xy(datasets.hidden_split(TOURNEY))


@pytest.fixture(scope="session")
def true_strengths():
    """The answer key: true strength (points) of every team id."""
    return league.true_strengths()["strength"].to_numpy(np.float64)


@pytest.fixture(scope="session")
def n_teams(true_strengths):
    """Every id 0..n-1 plays in the season (tests/test_league.py checks it)."""
    return len(true_strengths)
