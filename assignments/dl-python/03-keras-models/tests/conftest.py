"""Data for the checks of 03-keras-models: the public rows the student trained on, the hidden rows
kept for grading, and the new passengers to predict. All predictors are standardized with the mean
and standard deviation of the public rows, exactly as the notebook's locked cells do."""

import numpy as np
import pytest

import datasets


def _wages_raw(frame):
    return (frame.drop(columns="wage_per_hour").to_numpy("float32"),
            frame["wage_per_hour"].to_numpy("float32"))


def _wages(frame):
    """Standardized with the public rows' mean and standard deviation, as in the notebook."""
    public, _ = _wages_raw(datasets.public_split("dl-python/hourly_wages"))
    raw, target = _wages_raw(frame)
    return (raw - public.mean(axis=0)) / public.std(axis=0), target


def _titanic_raw(frame):
    return frame.drop(columns="survived").to_numpy("float32"), frame["survived"].to_numpy()


@pytest.fixture(scope="session")
def titanic_scaling():
    raw, _ = _titanic_raw(datasets.public_split("dl-python/titanic_all_numeric"))
    return raw.mean(axis=0), raw.std(axis=0)


def _titanic(frame, scaling):
    raw, survived = _titanic_raw(frame)
    mean, std = scaling
    return (raw - mean) / std, np.eye(2, dtype="float32")[survived]


@pytest.fixture(scope="session")
def train_data(titanic_scaling):
    return {"wages": _wages(datasets.public_split("dl-python/hourly_wages")),
            "titanic": _titanic(datasets.public_split("dl-python/titanic_all_numeric"), titanic_scaling)}


@pytest.fixture(scope="session")
def hidden_data(titanic_scaling):
    return {"wages": _wages(datasets.hidden_split("dl-python/hourly_wages")),
            "titanic": _titanic(datasets.hidden_split("dl-python/titanic_all_numeric"), titanic_scaling)}


@pytest.fixture(scope="session")
def pred_data(titanic_scaling):
    mean, std = titanic_scaling
    return (datasets.load("dl-python/titanic_pred").to_numpy("float32") - mean) / std
