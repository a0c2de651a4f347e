"""Equivalent forms are equal: the structure, compile and metric checks give the same verdict for
every way Keras accepts of writing the same model (issue 18).

Each test builds small models in-process (Sequential, functional, subclassed, nested sub-models
of any class; losses as strings, classes, objects, functions, lists and dicts keyed by output
name) and asserts that the checks agree; the last tests cover the other half of the issue: a
check measures what it can, never crashes on a student's object, and never shows an answer the
student must compute.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
import numpy as np
import pytest
from keras import layers

from autograders.checks import (
    NOT_SHOWN,
    CheckFailure,
    Hidden,
    check_metric,
    check_model,
    check_value,
    dense,
    from_student,
    layer_spec,
)

CNN = (layer_spec("Conv2D", filters=4, kernel_size=3, activation="relu"), layer_spec("Flatten"),
       dense(3, "softmax"))


def _failure(check) -> CheckFailure:
    with pytest.raises(CheckFailure) as info:
        check()
    return info.value


class _SubclassedCNN(keras.Model):
    """The same CNN as a subclass: the layers are attributes, ``call`` chains them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = layers.Conv2D(4, 3, activation="relu")
        self.flat = layers.Flatten()
        self.out = layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.out(self.flat(self.conv(x)))


@pytest.fixture(scope="module")
def cnn_forms() -> dict[str, keras.Model]:
    """One CNN in five forms, all with the same weights."""
    keras.utils.set_random_seed(0)
    sequential = keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(4, 3, activation="relu"),
                                   layers.Flatten(), layers.Dense(3, activation="softmax")])
    inp = keras.Input((6, 6, 1))
    x = layers.Conv2D(4, 3, activation="relu")(inp)
    functional = keras.Model(inp, layers.Dense(3, activation="softmax")(layers.Flatten()(x)))
    block = keras.Sequential([layers.Conv2D(4, 3, activation="relu")], name="conv-block")
    inp = keras.Input((6, 6, 1))
    nested_sequential = keras.Model(inp, layers.Dense(3, activation="softmax")(layers.Flatten()(block(inp))))
    block_in = keras.Input((6, 6, 1))
    features = keras.Model(block_in, layers.Flatten()(layers.Conv2D(4, 3, activation="relu")(block_in)),
                           name="features")
    nested_functional = keras.Sequential([keras.Input((6, 6, 1)), features, layers.Dense(3, activation="softmax")])
    subclassed = _SubclassedCNN()
    subclassed(np.zeros((1, 6, 6, 1), "float32"))
    forms = {"sequential": sequential, "functional": functional, "nested-sequential": nested_sequential,
             "nested-functional": nested_functional, "subclassed": subclassed}
    weights = sequential.get_weights()
    for model in forms.values():
        model.set_weights(weights)
    return forms


FORMS = ["sequential", "functional", "nested-sequential", "nested-functional", "subclassed"]


@pytest.mark.parametrize("form", FORMS)
def test_structure_checks_agree_on_every_form(cnn_forms, form) -> None:
    model = cnn_forms[form]
    check_model(model).has_input_shape((None, 6, 6, 1)).has_output_shape((None, 3)).layers(*CNN) \
        .has_params(total=int(sum(w.size for w in model.get_weights())))
    checked = check_model(model)
    checked.layer(0).is_type("Conv2D").has_activation("relu").has_output_shape((None, 4, 4, 4))
    checked.layer(-1).has_units(3).has_activation("softmax")
    assert [type(layer).__name__ for layer in checked.flat_layers()] == ["Conv2D", "Flatten", "Dense"]
    wrong = _failure(lambda: check_model(model).layers(*CNN[:2], dense(3, "sigmoid")))
    assert wrong.message.startswith("layer 3 "), wrong.message


@pytest.mark.parametrize("form", FORMS)
def test_layer_outputs_do_not_count_the_input_layer(cnn_forms, form) -> None:
    """keras-intro/04's conv activations: layer 0 is the first Conv2D in every form."""
    x = np.random.default_rng(0).random((2, 6, 6, 1)).astype("float32")
    reference = cnn_forms["sequential"]
    want = np.maximum(0, keras.ops.convert_to_numpy(reference.layers[0](x)))
    got = check_model(cnn_forms[form]).layer(0).output_on(x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _team_inputs() -> tuple[keras.KerasTensor, keras.KerasTensor]:
    return keras.Input((1,), name="team-1"), keras.Input((1,), name="team-2")


def _league(strength: keras.Layer | keras.Model) -> keras.Model:
    a, b = _team_inputs()
    return keras.Model([a, b], layers.Subtract()([strength(a), strength(b)]))


def _strength_models() -> dict[str, keras.Model]:
    """keras-advanced/02's team-strength lookup, written four ways."""
    team_in = keras.Input((1,))
    functional = keras.Model(team_in, layers.Flatten()(layers.Embedding(10, 1)(team_in)), name="team-strength")
    named_sequential = keras.Sequential([keras.Input((1,)), layers.Embedding(10, 1), layers.Flatten()],
                                        name="strengths")
    unnamed_sequential = keras.Sequential([layers.Embedding(10, 1), layers.Flatten()])
    return {"functional": functional, "named-sequential": named_sequential,
            "unnamed-sequential": unnamed_sequential}


@pytest.mark.parametrize("form", ["functional", "named-sequential", "unnamed-sequential", "bare-layers"])
def test_a_shared_lookup_of_any_class_is_shared(form, tmp_path) -> None:
    if form == "bare-layers":
        embedding, flatten = layers.Embedding(10, 1), layers.Flatten()
        a, b = _team_inputs()
        model = keras.Model([a, b], layers.Subtract()([flatten(embedding(a)), flatten(embedding(b))]))
    else:
        model = _league(_strength_models()[form])
    for candidate in (model, _saved_and_loaded(model, tmp_path)):
        check_model(candidate).shares_layer("Embedding").has_shared_layers(1).has_params(total=10)
        if form != "bare-layers":
            check_model(candidate).shares_layer(keras.Model)


def test_separate_lookups_are_not_shared() -> None:
    a, b = _team_inputs()
    one = layers.Flatten()(layers.Embedding(10, 1)(a))
    two = layers.Flatten()(layers.Embedding(10, 1)(b))
    model = keras.Model([a, b], layers.Subtract()([one, two]))
    err = _failure(lambda: check_model(model).shares_layer("Embedding"))
    assert "is shared" in err.message and "used 1 time" in err.message
    nested = _league(layers.Dense(1))  # a shared Dense is not a shared Embedding
    _failure(lambda: check_model(nested).shares_layer("Embedding"))


def _saved_and_loaded(model: keras.Model, folder) -> keras.Model:
    path = folder / f"{model.name}.keras"
    model.save(path)
    return keras.models.load_model(path)


def _two_outputs() -> keras.Model:
    inp = keras.Input((2,))
    margin = layers.Dense(1, use_bias=False, name="score-diff")(inp)
    win = layers.Dense(1, activation="sigmoid", use_bias=False, name="win-probability")(margin)
    return keras.Model(inp, [margin, win])


LOSS_FORMS = {
    "strings": ["mean_absolute_error", "binary_crossentropy"],
    "aliases": ["mae", "binary_crossentropy"],
    "objects": [keras.losses.MeanAbsoluteError(), keras.losses.BinaryCrossentropy()],
    "functions": [keras.losses.mean_absolute_error, keras.losses.binary_crossentropy],
    "dict-by-name": {"score-diff": "mean_absolute_error", "win-probability": "binary_crossentropy"},
    "dict-reordered": {"win-probability": keras.losses.BinaryCrossentropy(), "score-diff": "mae"},
}


@pytest.mark.parametrize("form", list(LOSS_FORMS))
def test_losses_in_every_form_are_equal(form, tmp_path) -> None:
    """keras-advanced/04: a dict of losses keyed by output name is the list in output order."""
    model = _two_outputs()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss=LOSS_FORMS[form])
    for candidate in (model, _saved_and_loaded(model, tmp_path)):
        for expected in (LOSS_FORMS["strings"], LOSS_FORMS["dict-by-name"]):
            check_model(candidate).is_compiled_with(loss=expected, optimizer="adam", learning_rate=0.01)
        swapped = _failure(lambda c=candidate: check_model(c).is_compiled_with(
            loss=["binary_crossentropy", "mean_absolute_error"]))
        assert swapped.message.startswith("output 1 'score-diff' is compiled with loss 'mean_absolute_error'")


@pytest.mark.parametrize("optimizer", ["sgd", keras.optimizers.SGD(), keras.optimizers.SGD])
@pytest.mark.parametrize("metric", ["accuracy", "acc", keras.metrics.CategoricalAccuracy(), "categorical_accuracy"])
@pytest.mark.parametrize("loss", ["categorical_crossentropy", keras.losses.CategoricalCrossentropy(),
                                  keras.losses.categorical_crossentropy])
def test_single_output_compile_forms_are_equal(optimizer, metric, loss) -> None:
    model = keras.Sequential([keras.Input((4,)), layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizer() if isinstance(optimizer, type) else optimizer, loss=loss, metrics=[metric])
    check_model(model).is_compiled_with(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])
    check_model(model).is_compiled_with(optimizer=keras.optimizers.SGD(), loss=keras.losses.CategoricalCrossentropy())
    _failure(lambda: check_model(model).is_compiled_with(loss="binary_crossentropy"))


def test_a_missing_flatten_is_measured_not_refused() -> None:
    """(None, 1, 1) predictions are the right values with an extra axis: the metric measures them."""
    y = np.array([1.0, -2.0, 3.0])
    squeezed = check_metric(y.reshape(-1, 1, 1) + 0.5, (None, y), "mae").value
    assert squeezed == pytest.approx(0.5)
    classes = np.eye(3)[[0, 2, 1]]
    assert check_metric(classes.reshape(3, 1, 3), (None, classes), "accuracy").value == 1.0
    assert check_metric(classes.reshape(3, 1, 3), (None, np.array([0, 2, 1])), "accuracy").value == 1.0
    # several axes that carry values are not a missing Flatten: still refused
    _failure(lambda: check_metric(np.zeros((3, 2, 2)), (None, y), "mae"))


def test_a_missing_flatten_model_is_measured() -> None:
    lookup = keras.Sequential([keras.Input((1,)), layers.Embedding(4, 1, embeddings_initializer="zeros")])
    a, b = _team_inputs()
    model = keras.Model([a, b], layers.Subtract()([lookup(a), lookup(b)]))
    assert model.output_shape == (None, 1, 1)
    x = [np.array([[0], [1]]), np.array([[2], [3]])]
    assert check_metric(model, (x, np.array([1.0, -1.0])), "mae").value == pytest.approx(1.0)


def test_one_sigmoid_column_against_one_hot_labels() -> None:
    """dl-python/03: a consistent 1-unit sigmoid classifier is measured against one-hot labels."""
    labels = np.eye(2)[[0, 1, 1, 0]]
    probability = np.array([[0.2], [0.9], [0.4], [0.1]])
    assert check_metric(probability, (None, labels), "accuracy").value == pytest.approx(0.75)
    assert check_metric(probability, (None, labels), "log_loss").value == pytest.approx(
        check_metric(probability, (None, labels[:, 1]), "log_loss").value)


def test_hidden_expected_values_are_never_shown() -> None:
    model = keras.Sequential([keras.Input((3,)), layers.Dense(5), layers.Dense(1)])
    err = _failure(lambda: check_model(model).has_params(total=Hidden(21)))
    assert "21" not in err.message and err.expected == NOT_SHOWN
    assert "26" in err.message  # what was measured is the student's own and is shown
    check_model(model).has_params(total=Hidden(26))
    err = _failure(lambda: check_model(model).layer(0).has_params(Hidden(15)))
    assert "15" not in err.message and err.expected == NOT_SHOWN
    err = _failure(lambda: check_value(0.3, "p_win_1").close_to(Hidden(0.5123)))
    assert "0.5123" not in err.message and err.expected == NOT_SHOWN
    err = _failure(lambda: check_value(10, "n_teams").equals(Hidden(11)))
    assert "11" not in err.message and err.expected == NOT_SHOWN
    check_value(11, "n_teams").equals(Hidden(11))


def test_an_error_in_a_students_object_is_a_failed_check() -> None:
    class Broken(keras.Model):
        def call(self, x):
            raise IndexError("index 1 is out of bounds")

    with pytest.raises(CheckFailure) as info, from_student("predicting with the model"):
        Broken().predict(np.zeros((2, 3)), verbose=0)
    assert info.value.message == "predicting with the model failed with IndexError"
    assert "out of bounds" not in info.value.message  # the text may quote data: only the type is shown
    # a check's own verdict inside the block is kept as it is
    with pytest.raises(CheckFailure) as info, from_student("predicting with the model"):
        check_value(3, "k").equals(2)
    assert info.value.message == "k is 3; expected 2"


# --------------------------------------------------------------------------- the proof's rewrites

REWRITTEN = ["keras-intro/04-advanced-architectures", "keras-advanced/02-two-inputs",
             "keras-advanced/04-multiple-outputs", "dl-python/03-keras-models"]


@pytest.mark.parametrize("assignment_id", REWRITTEN)
def test_every_rewrite_applies_to_the_reference(assignment_id, tmp_path) -> None:
    """Each rewrite's edits find their text in exactly one cell (deepgrade validate grades them)."""
    from autograders.assignment import Assignment
    from autograders.validate import apply_mistake, rewrites

    assignment = Assignment.load(assignment_id)
    found = rewrites(assignment)
    assert found and all(not r.loses for r in found)
    for rewrite in found:
        assert apply_mistake(assignment, rewrite, tmp_path / f"{rewrite.id}.ipynb").exists()


def test_validate_wants_full_marks_from_a_rewrite_and_no_crash_anywhere() -> None:
    from pathlib import Path

    from autograders.assignment import Assignment
    from autograders.validate import Job, _judge

    assignment = Assignment.load("keras-advanced/04-multiple-outputs")

    def judged(label: str, checks: list[dict]) -> bool:
        score = sum(1.0 for c in checks if c["passed"])
        result = {"status": "graded", "score": score, "max_score": float(len(checks)), "checks": checks}
        return _judge(assignment, Job(assignment, label, Path("x.ipynb"), 1, result=result)).ok

    passed = {"passed": True, "message": "passed"}
    assert judged("rewrite dict-of-losses", [{"id": "a", **passed}, {"id": "b", **passed}])
    assert not judged("rewrite dict-of-losses", [{"id": "a", **passed}, {"id": "b", "passed": False, "message": "x"}])
    mistake = next(m for m in assignment.mistakes if m.id == "p-win-from-the-first-weight")
    lost = [{"id": check, "passed": False, "message": "p_win_1 is 0.6, which is not within ..."}
            for check in mistake.loses]
    assert judged(f"mistake {mistake.id}", [{"id": "other", **passed}, *lost])
    crashed = [{**c, "message": "checking raised IndexError: index 1 is out of bounds"} for c in lost]
    assert not judged(f"mistake {mistake.id}", [{"id": "other", **passed}, *crashed])
