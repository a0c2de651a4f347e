"""The integrity helpers on real Keras models: the optimizer's step count tells which rows were
fitted (``autograders.checks.procedure``), and a model trained on the hidden rows is flagged for the
instructor (``autograders.checks.provenance``), while honest models pass both."""

from __future__ import annotations

import numpy as np
import pytest

from autograders.checks import CheckFailure
from autograders.checks.procedure import Fit, check_fitted_like, optimizer_steps
from autograders.checks.provenance import check_provenance

keras = pytest.importorskip("keras")


def _model(inputs: int, hidden: int, outputs: int, activation: str) -> keras.Model:
    model = keras.Sequential([keras.Input((inputs,)), keras.layers.Dense(hidden, activation="relu"),
                              keras.layers.Dense(outputs, activation=activation)])
    return model


@pytest.mark.parametrize(("rows", "batch_size", "validation_split"), [(1000, 128, 0.1), (997, 32, 0.0), (2011, 128, 0.1)])
def test_step_count_matches_what_keras_does(rows: int, batch_size: int, validation_split: float) -> None:
    keras.utils.set_random_seed(0)
    model = _model(3, 4, 1, "linear")
    model.compile(optimizer="adam", loss="mae")
    x = np.random.default_rng(0).normal(size=(rows, 3)).astype("float32")
    model.fit(x, x.sum(axis=1), epochs=2, batch_size=batch_size, validation_split=validation_split, verbose=0)
    assert optimizer_steps(model) == Fit(rows, 2, batch_size, validation_split).steps


def test_a_fit_on_the_test_rows_is_named_and_other_fits_pass() -> None:
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(3000, 3)).astype("float32")
    prescribed = Fit(2000, 5, 128, 0.1)
    mistakes = {"every row": Fit(3000, 5, 128, 0.1)}

    def fitted(rows: int, batch_size: int = 128) -> keras.Model:
        model = _model(3, 4, 1, "linear")
        model.compile(optimizer="adam", loss="mae")
        model.fit(x[:rows], x[:rows].sum(axis=1), epochs=5, batch_size=batch_size, validation_split=0.1, verbose=0)
        return model

    check_fitted_like(fitted(2000), "the model", prescribed, mistakes, hint="")
    check_fitted_like(fitted(2000, batch_size=64), "the model", prescribed, mistakes, hint="")  # proves nothing
    with pytest.raises(CheckFailure, match="every row"):
        check_fitted_like(fitted(3000), "the model", prescribed, mistakes, hint="")


@pytest.fixture(scope="module")
def digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import datasets

    def xy(pixels, target):
        return pixels.astype("float32") / 16, np.eye(10, dtype="float32")[target]

    public = xy(datasets.public_split("keras-intro/digits_pixels"), datasets.public_split("keras-intro/digits_target"))
    hidden = xy(datasets.hidden_split("keras-intro/digits_pixels"), datasets.hidden_split("keras-intro/digits_target"))
    return {"public": public, "hidden": hidden}


def _trained(x: np.ndarray, y: np.ndarray) -> keras.Model:
    keras.utils.set_random_seed(3)
    model = _model(64, 16, 10, "softmax")
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.fit(x, y, epochs=10, verbose=0)
    return model


def test_a_model_trained_on_the_hidden_rows_is_flagged(digits) -> None:
    public, hidden = digits["public"], digits["hidden"]
    honest = _trained(*public)
    audit = {"metric": "accuracy", "reference_best": 0.90, "epochs": 10, "margin": 0.03}
    check_provenance(honest, public, hidden, **audit)
    cheat = _trained(np.concatenate([public[0], hidden[0]] * 3), np.concatenate([public[1], hidden[1]] * 3))
    with pytest.raises(CheckFailure, match="suspicious: trained on held-out data"):
        check_provenance(cheat, public, hidden, **audit)


def _assignment_test(assignment: str, name: str, monkeypatch: pytest.MonkeyPatch):
    """One check function of an assignment's autograder, loaded from its file (beside its conftest)."""
    import importlib.util

    from autograders.assignment import Assignment

    folder = Assignment.load(assignment).path / "tests"
    monkeypatch.syspath_prepend(str(folder))
    path = next(p for p in folder.glob("test_*.py"))
    spec = importlib.util.spec_from_file_location(f"answers_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.mark.parametrize(("assignment", "check", "kwargs", "answer"), [
    ("keras-intro/01-introducing-keras", "test_count_answer", {"arrays": {"n_params": 25}}, "26"),
    ("keras-advanced/01-functional-api", "test_parameter_answer", {"arrays": {"n_params": 3}}, "2"),
    ("keras-advanced/03-three-inputs", "test_parameters_answer", {"arrays": {"n_params": 7}, "n_teams": 10}, "14"),
    ("keras-advanced/03-three-inputs", "test_inputs_answer", {"arrays": {"n_inputs": 2}}, "3"),
    ("dl-python/04-fine-tuning", "test_capacity_params", {"arrays": {"capacity_params": np.array([1.0, 2, 3])}},
     "132"),
])
def test_a_wrong_answer_is_told_so_without_the_answer(assignment: str, check: str, kwargs: dict, answer: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers the student must compute (a parameter count, how many inputs) are compared, never shown."""
    import re

    with pytest.raises(CheckFailure) as failure:
        _assignment_test(assignment, check, monkeypatch)(**kwargs)
    shown = f"{failure.value} | {failure.value.expected} | {failure.value.hint}"
    assert not re.search(rf"(?<![\d.]){answer}(?![\d])", shown), shown
