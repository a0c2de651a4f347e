"""Data for the checks of keras-intro/02-going-deeper, prepared exactly as the notebook prepares it.

Each data set gives what the student saw (``public``), the notebook's own train/test split of it,
and the rows held back for grading (``hidden``), preprocessed with statistics of the public rows.
"""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

import datasets


def parts(name: str):
    """(the rows the student's notebook reads, the rows kept for grading)."""
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
        public=public,
        train=(x_train, y_train),
        test=(x_test, y_test),
        hidden=(hidden_x, hidden["class"].to_numpy()),
    )


@pytest.fixture(scope="session")
def darts():
    public, hidden = parts("keras-intro/darts")
    names = sorted(public["competitor"].unique())
    codes = pd.Categorical(public["competitor"], categories=names).codes.astype("int64")
    one_hot = np.eye(len(names), dtype="float32")[codes]
    coords = public.drop(columns="competitor").to_numpy("float32")
    x_train, x_test, y_train, y_test = train_test_split(
        coords, one_hot, test_size=0.25, random_state=42
    )
    hidden_codes = pd.Categorical(hidden["competitor"], categories=names).codes
    return SimpleNamespace(
        public=public,
        codes=codes,
        one_hot=one_hot,
        train=(x_train, y_train),
        test=(x_test, y_test),
        small_test=(x_test[:5], y_test[:5]),
        hidden=(
            hidden.drop(columns="competitor").to_numpy("float32"),
            np.eye(len(names), dtype="float32")[hidden_codes],
        ),
    )


@pytest.fixture(scope="session")
def irrigation():
    public, hidden = parts("keras-intro/irrigation_machine")

    def xy(frame):
        return (
            frame.filter(like="sensor").to_numpy("float32"),
            frame.filter(like="parcel").to_numpy("float32"),
        )

    x, y = xy(public)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=42)
    return SimpleNamespace(
        public=public, train=(x_train, y_train), test=(x_test, y_test), hidden=xy(hidden)
    )


@pytest.fixture(scope="session")
def train_data(banknotes, darts, irrigation):
    return {"banknotes": banknotes.train, "darts": darts.train, "irrigation": irrigation.train}


@pytest.fixture(scope="session")
def hidden_data(banknotes, darts, irrigation):
    return {"banknotes": banknotes.hidden, "darts": darts.hidden, "irrigation": irrigation.hidden}
