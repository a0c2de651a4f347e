"""Data for the checks of keras-intro/04-advanced-architectures, prepared as the notebook does."""

from types import SimpleNamespace

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

import datasets


def parts(name: str):
    """(the public rows the student's notebook reads, the rows held back for grading).

    Files that belong together (digit pixels and labels, clean and noisy MNIST) share a salt in
    the registry, so their two parts stay row-aligned.
    """
    return datasets.public_split(name), datasets.hidden_split(name)


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
