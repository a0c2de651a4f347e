"""Data for the checks of keras-intro/03-improving-your-model, prepared as the notebook prepares it.

Most checks of this chapter compare the student's own runs with each other (which curve rises,
which run converges first). Only the final digit classifiers are also scored on held-back digits.
"""

from types import SimpleNamespace

import numpy as np
import pytest

import datasets

# Rows held back for grading. Until the registry gives these files a `split`, the same rule
# (datasets.hidden_mask, 20% of the rows, this salt; one salt for both files so that pixels and
# labels stay aligned) picks them here; the student's files then still contain them, so the
# "hidden" scores are optimistic until the registry entries land.
HOLDOUT = {"keras-intro/digits_pixels": "digits-v1", "keras-intro/digits_target": "digits-v1"}


def parts(name: str):
    """(the rows the student's notebook reads, the rows kept for grading)."""
    if datasets.get_registry()[name].split is not None:
        return datasets.public_split(name), datasets.hidden_split(name)
    full = datasets.load(name)
    mask = datasets.hidden_mask(len(full), datasets.Split(0.2, HOLDOUT[name]))
    return full, full[mask]


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
