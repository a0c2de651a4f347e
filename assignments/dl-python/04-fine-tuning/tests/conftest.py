"""Data for the checks of 04-fine-tuning: the public Titanic rows (standardized as in the notebook's
setup cell) for re-training, and the hidden digits, scaled to [0, 1] as in the notebook."""

import numpy as np
import pytest

import datasets


@pytest.fixture(scope="session")
def train_data():
    frame = datasets.public_split("dl-python/titanic_all_numeric")
    raw = frame.drop(columns="survived").to_numpy("float32")
    return (raw - raw.mean(axis=0)) / raw.std(axis=0), np.eye(2, dtype="float32")[frame["survived"].to_numpy()]


@pytest.fixture(scope="session")
def hidden_data():
    frame = datasets.hidden_split("dl-python/mnist")
    pixels = frame.iloc[:, 1:].to_numpy("float32") / 255.0
    return pixels, frame.iloc[:, 0].to_numpy()
