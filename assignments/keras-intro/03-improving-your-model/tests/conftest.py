"""Data for the checks of keras-intro/03-improving-your-model, prepared as the notebook prepares it.

The checks compare the student's own runs with each other (which curve rises, which run
converges first), and every run is also replayed here from the exported architecture and
initial weights on the checker's copy of the data: the exported numbers must agree with the
replay. The final digit classifiers are also scored on held-back digits.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import datasets


def parts(name: str):
    """(the public rows the student's notebook reads, the rows held back for grading).

    The pixels and the labels share a salt in the registry, so their parts stay row-aligned.
    """
    return datasets.public_split(name), datasets.hidden_split(name)


def _digits(pixels, target):
    return pixels.astype("float32") / 16, np.eye(10, dtype="float32")[target]


@pytest.fixture(scope="session")
def digits():
    """The public digits split as the notebook splits them (``split``: X_train, X_test, y_train,
    y_test), and the hidden digits."""
    pixels, hidden_pixels = parts("keras-intro/digits_pixels")
    target, hidden_target = parts("keras-intro/digits_target")
    x, y = _digits(pixels, target)
    split = train_test_split(x, y, test_size=0.3, random_state=42, stratify=target)
    return SimpleNamespace(public=(x, y), hidden=_digits(hidden_pixels, hidden_target), split=split)


@pytest.fixture(scope="session")
def train_data(digits):
    return digits.public


@pytest.fixture(scope="session")
def hidden_data(digits):
    return digits.hidden


@pytest.fixture(scope="session")
def irrigation():
    """(sensors_train, sensors_test, parcels_train, parcels_test) as the notebook splits them."""
    frame = datasets.public_split("keras-intro/irrigation_machine")
    sensors = frame.filter(like="sensor").to_numpy("float32")
    parcels = frame.filter(like="parcel").to_numpy("float32")
    return train_test_split(sensors, parcels, test_size=0.3, random_state=42)


@pytest.fixture(scope="session")
def dots():
    """(dots_train, dots_test, dots_y_train, dots_y_test) as the notebook splits them."""
    frame = datasets.load("keras-intro/dots")
    x, y = frame[["0", "1"]].to_numpy("float32"), frame["2"].to_numpy()
    return train_test_split(x, y, test_size=0.3, random_state=42, stratify=y)


@pytest.fixture(scope="session")
def banknotes():
    """(X_bank, y_bank): the standardised public banknotes, as the notebook prepares them."""
    frame = datasets.public_split("keras-intro/banknotes")
    features = frame.drop(columns="class")
    return ((features - features.mean()) / features.std()).to_numpy("float32"), frame["class"].to_numpy()
