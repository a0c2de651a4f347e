"""Data fixtures: the real tournament games, public rows for training and hidden rows for grading."""

import pytest

import datasets

TOURNEY = "keras-advanced/games_tourney"


def _xy(frame):
    return frame[["seed_diff"]].to_numpy("float32"), frame["score_diff"].to_numpy("float32")


@pytest.fixture(scope="session")
def train_data():
    return _xy(datasets.public_split(TOURNEY))


@pytest.fixture(scope="session")
def hidden_data():
    return _xy(datasets.hidden_split(TOURNEY))
