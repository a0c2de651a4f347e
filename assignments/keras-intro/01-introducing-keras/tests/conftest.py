"""Data fixtures for the checks: the public training split and the hidden evaluation split."""

import pytest

import datasets


def _xy(frame):
    return frame[["time_steps"]].to_numpy("float32"), frame["y"].to_numpy("float32")


@pytest.fixture(scope="session")
def train_data():
    return _xy(datasets.public_split("keras-intro/orbit"))


@pytest.fixture(scope="session")
def hidden_data():
    return _xy(datasets.hidden_split("keras-intro/orbit"))
