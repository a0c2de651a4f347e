"""Data fixtures: the simulated league, public rows for training and hidden rows for grading."""

import numpy as np
import pytest

import datasets

SEASON = "keras-advanced/games_season_synthetic"
TOURNEY = "keras-advanced/games_tourney_synthetic"
TEST_FROM = 2010  # the stacked model is fitted before this season and tested from it on


def _columns(frame, names):
    return [frame[[name]].to_numpy("float32") for name in names]


def _hidden(frame):
    """The registry's hidden rows (the same mask as datasets.hidden_split)."""
    return datasets.hidden_mask(len(frame), datasets.get_registry()[SEASON].split)


def _xy(frame):
    return _columns(frame, ("team_1", "team_2", "home")), frame["score_diff"].to_numpy("float32")


@pytest.fixture(scope="session")
def season_games():
    """The whole regular season, read once (grading side only)."""
    return datasets.load(SEASON)


@pytest.fixture(scope="session")
def train_data(season_games):
    return _xy(season_games[~_hidden(season_games)])


@pytest.fixture(scope="session")
def hidden_data(season_games):
    """Hidden regular-season games, as [team_1, team_2, home] and score_diff."""
    return _xy(season_games[_hidden(season_games)])


@pytest.fixture(scope="session")
def n_teams(season_games):
    return int(season_games["team_1"].nunique())


@pytest.fixture(scope="session")
def tourney_public():
    return datasets.public_split(TOURNEY)


@pytest.fixture(scope="session")
def tourney_hidden_test():
    """Hidden tournament games from 2010 on: the stacked model's unseen future."""
    frame = datasets.hidden_split(TOURNEY)
    return frame[frame["season"] >= TEST_FROM].reset_index(drop=True)


def stacked_inputs(season_model, frame):
    """[home, seed_diff, pred] with pred from the student's own season model."""
    teams = _columns(frame, ("team_1", "team_2", "home"))
    pred = np.asarray(season_model.predict(teams, verbose=0, batch_size=4096)).reshape(-1)
    x = np.column_stack([frame["home"], frame["seed_diff"], pred]).astype("float32")
    return x, frame["score_diff"].to_numpy("float32")
