"""Data for the checks of keras-intro/03-improving-your-model, prepared as the notebook prepares it.

Most checks of this chapter compare the student's own runs with each other (which curve rises,
which run converges first). Only the final digit classifiers are also scored on held-back digits.
"""

from types import SimpleNamespace

import numpy as np
import pytest

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
    pixels, hidden_pixels = parts("keras-intro/digits_pixels")
    target, hidden_target = parts("keras-intro/digits_target")
    return SimpleNamespace(
        public=_digits(pixels, target), hidden=_digits(hidden_pixels, hidden_target)
    )


@pytest.fixture(scope="session")
def train_data(digits):
    return digits.public


@pytest.fixture(scope="session")
def hidden_data(digits):
    return digits.hidden
