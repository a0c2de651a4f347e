"""Data for the checks of keras-intro/04-advanced-architectures, prepared as the notebook does."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import datasets

# Rows held back for grading. Until the registry gives these files a `split`, the same rule
# (datasets.hidden_mask, 20% of the rows, these salts; files that belong together share a salt so
# that their rows stay aligned) picks them here; the student's files then still contain them,
# so the "hidden" scores are optimistic until the registry entries land.
HOLDOUT = {
    "keras-intro/banknotes": "banknotes-v1",
    "keras-intro/digits_pixels": "digits-v1",
    "keras-intro/digits_target": "digits-v1",
    "keras-intro/X_test_MNIST": "mnist100-v1",
    "keras-intro/X_test_MNIST_noise": "mnist100-v1",
}


def parts(name: str):
    """(the rows the student's notebook reads, the rows kept for grading)."""
    if datasets.get_registry()[name].split is not None:
        return datasets.public_split(name), datasets.hidden_split(name)
    full = datasets.load(name)
    mask = datasets.hidden_mask(len(full), datasets.Split(0.2, HOLDOUT[name]))
    return full, (full.iloc[np.flatnonzero(mask)] if hasattr(full, "iloc") else full[mask])


@pytest.fixture(scope="session")
def banknotes():
    public, hidden = parts("keras-intro/banknotes")
    features = public.drop(columns="class")
    mean, std = features.mean(), features.std()
    x = ((features - mean) / std).to_numpy("float32")
    y = public["class"].to_numpy()
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=42, stratify=y
    )
    hidden_x = ((hidden.drop(columns="class") - mean) / std).to_numpy("float32")
    return SimpleNamespace(
        train=(x_train, y_train),
        test=(x_test, y_test),
        hidden=(hidden_x, hidden["class"].to_numpy()),
    )


def _images(pixels, target):
    return (pixels.astype("float32") / 16).reshape(-1, 8, 8, 1), np.eye(10, dtype="float32")[target]


@pytest.fixture(scope="session")
def digits():
    pixels, hidden_pixels = parts("keras-intro/digits_pixels")
    target, hidden_target = parts("keras-intro/digits_target")
    images, labels = _images(pixels, target)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=0.3, random_state=42, stratify=target
    )
    return SimpleNamespace(
        train=(x_train, y_train),
        test=(x_test, y_test),
        hidden=_images(hidden_pixels, hidden_target),
    )


@pytest.fixture(scope="session")
def mnist():
    clean, hidden_clean = parts("keras-intro/X_test_MNIST")
    noisy, hidden_noisy = parts("keras-intro/X_test_MNIST_noise")

    def shaped(a):
        return a.astype("float32").reshape(-1, 28, 28, 1)

    return SimpleNamespace(
        noisy=shaped(noisy),
        clean=shaped(clean),
        hidden=(shaped(hidden_noisy), shaped(hidden_clean)),
    )


@pytest.fixture(scope="session")
def text_words():
    return datasets.load("keras-intro/rotr").split()


@pytest.fixture(scope="session")
def train_data(banknotes, digits, mnist):
    return {
        "banknotes": banknotes.train,
        "digits": digits.train,
        "mnist": (mnist.noisy, mnist.clean),
    }


@pytest.fixture(scope="session")
def hidden_data(banknotes, digits, mnist):
    return {"banknotes": banknotes.hidden, "digits": digits.hidden, "mnist": mnist.hidden}
