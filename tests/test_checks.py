"""Unit tests for the check library: each check passes on a right answer and fails on a
wrong one with a message that names what is at fault, plus measured, expected and a hint."""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from autograders.checks import (
    METRICS,
    NOT_SHOWN,
    CheckFailure,
    Threshold,
    check_array,
    check_frame,
    check_history,
    check_metric,
    check_model,
    check_retraining,
    check_value,
    compute_metric,
    dense,
    kendall_tau,
    layer_spec,
    retrain,
    take_metrics,
)


def failure(check: Callable[[], Any]) -> CheckFailure:
    """Run a check that must fail; its failure must carry measured, expected and a hint."""
    with pytest.raises(CheckFailure) as info:
        check()
    err = info.value
    assert err.measured is not None, err.message
    assert err.expected is not None, err.message
    assert err.hint, err.message
    return err


# --------------------------------------------------------------------------- fixtures


def _regression_model(last_activation: str | None = None) -> keras.Model:
    return keras.Sequential([
        keras.Input((1,)),
        keras.layers.Dense(8, activation="relu", name="hidden"),
        keras.layers.Dense(4, activation="relu"),
        keras.layers.Dense(1, activation=last_activation, name="out"),
    ])


@pytest.fixture(scope="module")
def reg_model() -> keras.Model:
    model = _regression_model()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse", metrics=["mae"])
    return model


@pytest.fixture(scope="module")
def relu_out_model() -> keras.Model:
    return _regression_model("relu")


@pytest.fixture(scope="module")
def clf_model() -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", name="probs")])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])
    return model


@pytest.fixture(scope="module")
def shared_model() -> keras.Model:
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, name="shared")
    merged = keras.layers.Concatenate(name="merge")([shared(a), shared(b)])
    out = keras.layers.Dense(1, activation="sigmoid", name="out")(merged)
    return keras.Model([a, b], out)


@pytest.fixture(scope="module")
def unshared_model() -> keras.Model:
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    merged = keras.layers.Concatenate()([keras.layers.Dense(3)(a), keras.layers.Dense(3)(b)])
    return keras.Model([a, b], keras.layers.Dense(1)(merged))


@pytest.fixture(scope="module")
def reloaded_model(tmp_path_factory: pytest.TempPathFactory) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.RMSprop(learning_rate=0.005), loss="categorical_crossentropy",
                  metrics=["acc"])
    path = tmp_path_factory.mktemp("model") / "model.keras"
    with warnings.catch_warnings():  # Keras's own notes about the never-built optimizer state
        warnings.simplefilter("ignore")
        model.save(path)
        return keras.models.load_model(path, safe_mode=True)


@pytest.fixture(scope="module")
def line_data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(64, 1)).astype("float32")
    return x, (2 * x + 1).astype("float32")


# --------------------------------------------------------------------------- check_model


@pytest.mark.parametrize(("obj", "kind", "hint_word"), [
    ("model", "str", "model object itself"),
    (None, "None", "return model"),
    (np.zeros((3, 1)), "ndarray", "predictions"),
    (keras.layers.Dense(3), "Dense", "single layer"),
    (keras.callbacks.History(), "History", "returns a History"),
])
def test_check_model_rejects_non_models(obj: Any, kind: str, hint_word: str) -> None:
    err = failure(lambda: check_model(obj))
    assert err.message == f"expected a Keras model, got {kind}"
    assert err.measured == kind and err.expected == "keras.Model"
    assert hint_word in err.hint


def test_model_shapes_pass(reg_model: keras.Model) -> None:
    check = check_model(reg_model)
    assert check.has_input_shape((None, 1)).has_output_shape((None, 1)) is check
    check.has_inputs(1).has_outputs(1).has_layer_count(3)


def test_model_input_shape_fails(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).has_input_shape((None, 3)))
    assert err.message == "the model takes (None, 1); expected (None, 3)"
    assert (err.measured, err.expected) == ("(None, 1)", "(None, 3)")
    assert "keras.Input(shape=(3,))" in err.hint


def test_model_output_shape_fails_names_last_layer(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).has_output_shape((None, 10)))
    assert err.message == "the model outputs (None, 1); expected (None, 10)"
    assert "'out'" in err.hint and "units to 10" in err.hint


def test_model_shape_count_mismatch(shared_model: keras.Model) -> None:
    err = failure(lambda: check_model(shared_model).has_input_shape((None, 4)))
    assert "2 inputs; expected 1" in err.message
    check_model(shared_model).has_input_shape((None, 4), (None, 4)).has_inputs(2)
    err = failure(lambda: check_model(shared_model).has_input_shape((None, 4), (None, 5)))
    assert "input 2 'b' has shape (None, 4); expected (None, 5)" in err.message


def test_has_inputs_outputs_fail(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).has_inputs(2))
    assert err.message == "the model has 1 input; expected 2" and "functional" in err.hint
    err = failure(lambda: check_model(reg_model).has_outputs(2))
    assert err.message == "the model has 1 output; expected 2"


def test_unbuilt_model_fails_cleanly() -> None:
    model = keras.Sequential([keras.layers.Dense(3), keras.layers.Dense(1)])
    err = failure(lambda: check_model(model).has_input_shape((None, 1)))
    assert "never built" in err.message and "keras.Input" in err.hint
    err = failure(lambda: check_model(model).has_params(total=10))
    assert "not built" in err.message
    check_model(model).layers(dense(3), dense(1))  # the config is known even before building


def test_has_params(reg_model: keras.Model) -> None:
    total = (1 + 1) * 8 + (8 + 1) * 4 + (4 + 1) * 1
    check_model(reg_model).has_params(total=total, trainable=total, non_trainable=0)
    err = failure(lambda: check_model(reg_model).has_params(total=total + 10))
    assert err.message == f"the model has {total} parameters; expected {total + 10}"
    assert err.measured == {"total": total, "trainable": total, "non_trainable": 0}
    assert err.expected == {"total": total + 10}
    err = failure(lambda: check_model(reg_model).has_params(trainable=5))
    assert "trainable parameters" in err.message and "freeze" in err.hint
    err = failure(lambda: check_model(reg_model).has_params(non_trainable=3))
    assert "non-trainable" in err.message


def test_layers_pass(reg_model: keras.Model) -> None:
    check_model(reg_model).layers(dense(8, "relu"), dense(4, "relu"), dense(1, "linear"))
    check_model(reg_model).layers(dense(8, "relu"), "Dense", dense(1, None, use_bias=True))


def test_layers_reports_last_layer_activation(relu_out_model: keras.Model) -> None:
    err = failure(lambda: check_model(relu_out_model).layers(dense(8, "relu"), dense(4, "relu"), dense(1)))
    assert err.message == "layer 3 'out' has activation 'relu'; expected 'linear'"
    assert (err.measured, err.expected) == ("relu", "linear")
    assert err.hint == ("the last layer uses activation 'relu'; a regression output should be linear: "
                        "remove the activation")


def test_layers_reports_first_mismatch_only(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layers(dense(8, "tanh"), dense(5, "relu"), dense(1)))
    assert err.message == "layer 1 'hidden' has activation 'relu'; expected 'tanh'"
    err = failure(lambda: check_model(reg_model).layers(dense(8, "relu"), dense(5, "relu"), dense(1)))
    assert err.message.startswith("layer 2 'dense") and "has 4 units; expected 5" in err.message
    assert (err.measured, err.expected) == (4, 5) and "Dense(5" in err.hint


def test_layers_count_mismatch_lists_summary(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layers(dense(8, "relu"), dense(4, "relu"), dense(4, "relu"),
                                                        dense(1)))
    assert err.message.startswith("the model has 3 layers after the input; expected 4:")
    assert "Dense(8, relu), Dense(4, relu), Dense(1, linear)" in err.message
    assert err.measured == ["Dense(8, relu)", "Dense(4, relu)", "Dense(1, linear)"]
    assert len(err.expected) == 4 and "layer 3" in err.hint


def test_layers_type_and_generic_spec() -> None:
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4), keras.layers.Dropout(0.2, name="drop"),
                              keras.layers.Dense(1, activation="sigmoid")])
    check_model(model).layers(dense(4), layer_spec("Dropout", rate=0.2), dense(1, "sigmoid"))
    err = failure(lambda: check_model(model).layers(dense(4), dense(4), dense(1, "sigmoid")))
    assert err.message == "layer 2 'drop' is a Dropout layer; expected a Dense layer"
    assert (err.measured, err.expected) == ("Dropout", "Dense")
    err = failure(lambda: check_model(model).layers(dense(4), layer_spec(keras.layers.Dropout, rate=0.5),
                                                    dense(1, "sigmoid")))
    assert err.message == "layer 2 'drop' has rate 0.2; expected 0.5"
    assert "rate=0.5" in err.hint


def test_layers_softmax_for_multilabel_hint() -> None:
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(4, activation="softmax", name="tags")])
    err = failure(lambda: check_model(model).layers(dense(4, "sigmoid")))
    assert err.message == "layer 1 'tags' has activation 'softmax'; expected 'sigmoid'"
    assert err.hint == "outputs sum to 1 across labels: use sigmoid, not softmax, for multi-label"


def test_has_layer_count_fails(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).has_layer_count(5))
    assert err.message == "the model has 3 layers after the input; expected 5"
    assert (err.measured, err.expected) == (3, 5) and "add" in err.hint


def test_layer_by_index_and_name(reg_model: keras.Model) -> None:
    assert check_model(reg_model).layer(0).keras_layer.name == "hidden"
    assert check_model(reg_model).layer(-1).label == "layer 3 'out'"
    assert check_model(reg_model).layer("out").index == 2
    err = failure(lambda: check_model(reg_model).layer(4))
    assert err.message == "the model has 3 layers after the input; expected at least 5"
    err = failure(lambda: check_model(reg_model).layer(-4))
    assert "expected at least 4" in err.message
    err = failure(lambda: check_model(reg_model).layer("missing"))
    assert err.message.startswith("the model has no layer named 'missing'; its layers are 'hidden'")
    assert "name='missing'" in err.hint


# --------------------------------------------------------------------------- LayerCheck


def test_layer_checks_pass_and_go_back(reg_model: keras.Model) -> None:
    layer = check_model(reg_model).layer(0)
    result = (layer.is_type("Dense").is_type(keras.layers.Dense).has_units(8).has_activation("relu")
              .uses_bias(True).has_input_shape((None, 1)).has_output_shape((None, 8)).has_params(16)
              .has_kernel_shape((1, 8)))
    assert result is layer
    assert layer.model.layer(-1).has_activation(None).has_activation("linear").model is layer.model
    layer.layer("out").has_units(1)


def test_layer_is_type_fails(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layer(1).is_type("Conv2D"))
    assert err.message.startswith("layer 2 'dense") and "is a Dense layer; expected a Conv2D layer" in err.message


def test_layer_has_units_fails(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layer(-1).has_units(10))
    assert err.message == "layer 3 'out' has 1 unit; expected 10"
    assert (err.measured, err.expected) == (1, 10) and "output layer needs 10" in err.hint


def test_layer_without_units_fails() -> None:
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dropout(0.1, name="drop"), keras.layers.Dense(1)])
    err = failure(lambda: check_model(model).layer(0).has_units(3))
    assert err.message == "layer 1 'drop' is a Dropout layer, which has no 'units'"


def test_layer_has_activation_fails(relu_out_model: keras.Model) -> None:
    err = failure(lambda: check_model(relu_out_model).layer(-1).has_activation(None))
    assert err.message == "layer 3 'out' has activation 'relu'; expected 'linear'"
    assert "regression output should be linear" in err.hint
    err = failure(lambda: check_model(relu_out_model).layer(0).has_activation("tanh"))
    assert err.message == "layer 1 'hidden' has activation 'relu'; expected 'tanh'"
    assert "activation='tanh'" in err.hint


def test_layer_uses_bias_fails(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layer(0).uses_bias(False))
    assert err.message == "layer 1 'hidden' uses a bias; expected use_bias=False"
    assert (err.measured, err.expected) == (True, False) and "use_bias=False" in err.hint


def test_layer_shapes_and_params_fail(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).layer(-1).has_output_shape((None, 10)))
    assert err.message == "layer 3 'out' outputs (None, 1); expected (None, 10)"
    assert (err.measured, err.expected) == ("(None, 1)", "(None, 10)")
    err = failure(lambda: check_model(reg_model).layer(-1).has_input_shape((None, 8)))
    assert err.message == "layer 3 'out' takes (None, 4); expected (None, 8)"
    err = failure(lambda: check_model(reg_model).layer(0).has_params(17))
    assert err.message == "layer 1 'hidden' has 16 parameters; expected 17"
    err = failure(lambda: check_model(reg_model).layer(0).has_kernel_shape((8, 1)))
    assert err.message == "layer 1 'hidden' has a kernel of shape (1, 8); expected (8, 1)"
    assert "(inputs, units)" in err.hint


def test_layer_input_shape_of_merge_layer(shared_model: keras.Model) -> None:
    check_model(shared_model).layer("merge").has_input_shape([(None, 3), (None, 3)]).has_output_shape((None, 6))
    err = failure(lambda: check_model(shared_model).layer("merge").has_kernel_shape((6, 1)))
    assert err.message == "layer 2 'merge' (Concatenate) has no kernel"


# --------------------------------------------------------------------------- shared layers


def test_shares_layer_detects_one_dense_used_twice(shared_model: keras.Model) -> None:
    check_model(shared_model).shares_layer("shared").shares_layer("Dense").shares_layer(keras.layers.Dense)
    check_model(shared_model).has_shared_layers(1)
    err = failure(lambda: check_model(shared_model).shares_layer("shared", uses=3))
    assert "'shared' is used 2 times" in err.message and err.measured == {"shared": 2}


def test_shares_layer_fails_on_two_separate_layers(unshared_model: keras.Model) -> None:
    err = failure(lambda: check_model(unshared_model).shares_layer("Dense"))
    assert err.message.startswith("no 'Dense' layer is shared: 'dense")
    assert "used 1 time" in err.message and "two separate layers" in err.hint
    err = failure(lambda: check_model(unshared_model).has_shared_layers(1))
    assert err.message == "the model has 0 shared layers; expected at least 1"
    err = failure(lambda: check_model(unshared_model).shares_layer("LSTM"))
    assert err.message == "the model has no layer named or of type 'LSTM'"


def test_shared_layer_count_ignores_uses_outside_the_model(shared_model: keras.Model) -> None:
    single = keras.layers.Dense(2, name="solo")
    inp = keras.Input((3,))
    model = keras.Model(inp, single(inp))
    single(keras.Input((3,)))  # a call outside this model's graph
    err = failure(lambda: check_model(model).shares_layer("solo"))
    assert "'solo' is used 1 time" in err.message


# --------------------------------------------------------------------------- compile settings


def test_is_compiled_with_in_process(reg_model: keras.Model) -> None:
    check_model(reg_model).is_compiled_with(loss="mse", optimizer="adam", learning_rate=0.01, metrics=["mae"])
    check_model(reg_model).is_compiled_with(loss="mean_squared_error", optimizer=keras.optimizers.Adam,
                                            metrics=["mean_absolute_error"])
    check_model(reg_model).is_compiled_with(loss=keras.losses.MeanSquaredError,
                                            optimizer=keras.optimizers.Adam())
    check_model(reg_model).is_compiled_with(loss=keras.losses.MeanSquaredError(),
                                            metrics=[keras.metrics.MeanAbsoluteError()])
    check_model(reg_model).is_compiled_with(loss=keras.losses.mean_squared_error)


def test_is_compiled_with_object_forms(clf_model: keras.Model) -> None:
    check_model(clf_model).is_compiled_with(loss="sparse_categorical_crossentropy", optimizer="SGD",
                                            learning_rate=0.01, metrics=["accuracy"])
    check_model(clf_model).is_compiled_with(metrics=["sparse_categorical_accuracy"])
    err = failure(lambda: check_model(clf_model).is_compiled_with(loss="categorical_crossentropy"))
    assert err.message == ("the model is compiled with loss 'sparse_categorical_crossentropy'; "
                           "expected 'categorical_crossentropy'")
    assert "one-hot" in err.hint


def test_is_compiled_with_reloaded_keras_file(reloaded_model: keras.Model) -> None:
    check_model(reloaded_model).is_compiled_with(loss="categorical_crossentropy", optimizer="rmsprop",
                                                 learning_rate=0.005, metrics=["accuracy"])
    check_model(reloaded_model).is_compiled_with(loss=keras.losses.CategoricalCrossentropy,
                                                 optimizer=keras.optimizers.RMSprop, metrics=["acc"])
    err = failure(lambda: check_model(reloaded_model).is_compiled_with(loss="sparse_categorical_crossentropy"))
    assert err.hint == ("loss is categorical cross-entropy but the labels are integers: one-hot them or use "
                        "the sparse loss")
    err = failure(lambda: check_model(reloaded_model).is_compiled_with(loss="binary_crossentropy"))
    assert "yes/no" in err.hint


def test_is_compiled_with_not_compiled(relu_out_model: keras.Model) -> None:
    err = failure(lambda: check_model(relu_out_model).is_compiled_with(loss="mse"))
    assert err.message == "the model is not compiled"
    assert "call model.compile(" in err.hint and "before fit" in err.hint


def test_is_compiled_with_mismatches(reg_model: keras.Model) -> None:
    err = failure(lambda: check_model(reg_model).is_compiled_with(loss="binary_crossentropy"))
    assert err.message == "the model is compiled with loss 'mean_squared_error'; expected 'binary_crossentropy'"
    err = failure(lambda: check_model(reg_model).is_compiled_with(optimizer="sgd"))
    assert err.message == "the model is compiled with optimizer 'adam'; expected 'sgd'"
    assert "keras.optimizers.SGD" in err.hint
    err = failure(lambda: check_model(reg_model).is_compiled_with(learning_rate=0.001))
    assert err.message == "the optimizer's learning rate is 0.01; expected 0.001"
    assert "learning_rate=0.001" in err.hint and "not lr" in err.hint
    err = failure(lambda: check_model(reg_model).is_compiled_with(metrics=["acc"]))
    assert err.message == "the model is compiled with metrics ['mean_absolute_error']; expected also 'accuracy'"
    assert "metrics=['accuracy']" in err.hint


def test_is_compiled_with_regression_hint() -> None:
    model = _regression_model()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    err = failure(lambda: check_model(model).is_compiled_with(loss="mse"))
    assert "regression" in err.hint


# --------------------------------------------------------------------------- arrays


def test_check_array_rejects_bad_values() -> None:
    err = failure(lambda: check_array(None, "y_pred"))
    assert err.message == "y_pred is None"
    err = failure(lambda: check_array("1, 2, 3", "y_pred"))
    assert err.message == "expected y_pred to be an array, got str"
    err = failure(lambda: check_array([[1, 2], [3]], "seqs"))
    assert "different lengths" in err.message and "pad" in err.hint


def test_check_array_accepts_lists_scalars_and_tensors() -> None:
    check_array([[1.0, 2.0]]).has_shape((1, 2))
    check_array(3.5).has_shape(())
    check_array(keras.ops.ones((2, 3))).has_shape((None, 3)).has_dtype("float32")


def test_array_has_shape() -> None:
    arr = check_array(np.zeros((10,)), "y")
    assert arr.has_shape((10,)) is arr
    err = failure(lambda: arr.has_shape((None, 1)))
    assert err.message == "y has shape (10,); expected (None, 1)"
    assert (err.measured, err.expected) == ("(10,)", "(None, 1)") and "reshape(-1, 1)" in err.hint
    err = failure(lambda: check_array(np.zeros((3, 5)), "x").has_shape((5, 3)))
    assert ".T" in err.hint


def test_array_has_dtype() -> None:
    check_array(np.zeros(3, dtype="float32")).has_dtype("float").has_dtype("float32")
    check_array(np.arange(3)).has_dtype("int")
    check_array(np.array([True])).has_dtype("bool")
    err = failure(lambda: check_array(np.arange(3), "labels").has_dtype("float"))
    assert err.message == "labels has dtype int64; expected float" and "astype('float32')" in err.hint


def test_array_is_finite() -> None:
    check_array([1.0, 2.0]).is_finite()
    err = failure(lambda: check_array(np.array([[1.0, np.nan], [np.inf, 2.0]]), "w").is_finite())
    assert err.message == "w has 1 NaN and 1 infinite values (first at index (0, 1))"
    assert err.measured["first_index"] == [0, 1]


def test_array_close_to_public_and_hidden() -> None:
    expected = np.array([0.25, 0.5, 0.75, 123.456])
    check_array(expected + 1e-9).close_to(expected)
    got = expected.copy()
    got[[1, 3]] += [0.1, 0.4]
    err = failure(lambda: check_array(got, "pred").close_to(expected))
    assert err.message.startswith("2 of 4 elements of pred differ from the expected values "
                                  "(largest absolute difference 0.4, first at index (1,))")
    assert "expected 0.5" in err.message
    assert err.measured == {"differing": 2, "of": 4, "max_abs_diff": pytest.approx(0.4), "first_index": [1]}
    err = failure(lambda: check_array(got, "pred").close_to(expected, hide_expected=True))
    assert "123.456" not in err.message and "0.5" not in err.message and "expected 0" not in err.message
    assert "123.456" not in repr(err.expected) and "largest absolute difference 0.4" in err.message
    err = failure(lambda: check_array(expected[::-1], "pred").close_to(expected))
    assert "different order" in err.hint
    err = failure(lambda: check_array(expected[:2], "pred").close_to(expected))
    assert err.message == "pred has shape (2,); expected (4,)"


def test_array_all_between() -> None:
    check_array([0.0, 0.5, 1.0]).all_between(0, 1)
    err = failure(lambda: check_array([-0.5, 0.5, 2.0], "probs").all_between(0, 1))
    assert err.message == "2 of 3 elements of probs are outside [0, 1] (they range from -0.5 to 2)"
    assert "sigmoid or softmax" in err.hint


def test_array_sums_to() -> None:
    check_array([[0.2, 0.8], [0.5, 0.5]]).sums_to(1.0)
    err = failure(lambda: check_array([[0.2, 0.8], [0.9, 0.9], [0.6, 0.6]], "probs").sums_to(1.0))
    assert err.message == "2 of 3 rows of probs do not sum to 1 along axis -1 (first at (1,), summing to 1.8)"
    assert "softmax" in err.hint


# --------------------------------------------------------------------------- single values


def test_check_value() -> None:
    check_value(np.float32(0.5), "rate").close_to(0.5).between(0, 1).is_finite().has_type("float")
    check_value(np.array([3]), "k").equals(3).has_type("int")
    check_value("relu", "activation").equals("relu").has_type("str")
    check_value(True, "flag").equals(True)
    err = failure(lambda: check_value("ReLU ", "activation").equals("relu"))
    assert err.message == "activation is 'ReLU '; expected 'relu'" and "capitalisation" in err.hint
    err = failure(lambda: check_value(1, "flag").equals(True))
    assert "True or False" in err.hint
    err = failure(lambda: check_value(0.7, "score").close_to(0.123456, hide_expected=True))
    assert "0.123456" not in err.message and err.expected == NOT_SHOWN
    err = failure(lambda: check_value(0.7, "score").close_to(0.5))
    assert err.message.startswith("score is 0.7; expected 0.5")
    err = failure(lambda: check_value(1.5, "p").between(0, 1))
    assert err.message == "p is 1.5; expected between 0 and 1"
    err = failure(lambda: check_value(float("nan"), "loss").is_finite())
    assert err.message == "loss is nan"
    err = failure(lambda: check_value("3", "k").close_to(3))
    assert err.message == "expected k to be a number, got str"
    err = failure(lambda: check_value(3, "k").has_type("float"))
    assert err.message == "k is a int; expected float"
    err = failure(lambda: check_value(np.zeros(3), "k"))
    assert err.message == "expected k to be a single value, got an array of shape (3,)"
    err = failure(lambda: check_value(None, "k"))
    assert err.message == "k is None"


# --------------------------------------------------------------------------- DataFrames


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"age": [20.0, 30.0, None], "name": ["a", "b", "c"], "n": [1, 2, 3]})


def test_check_frame_rejects_non_frames() -> None:
    err = failure(lambda: check_frame(pd.Series([1, 2]), "df"))
    assert err.message == "expected df to be a pandas DataFrame, got Series" and "to_frame" in err.hint
    err = failure(lambda: check_frame(None))
    assert err.message == "expected DataFrame to be a pandas DataFrame, got None"


def test_frame_columns_shape_dtypes(frame: pd.DataFrame) -> None:
    check = check_frame(frame, "df")
    check.has_columns(["age", "n"]).has_columns(["n", "name", "age"], exact=True).has_shape((3, 3))
    check.has_shape((None, 3)).has_dtypes({"age": "float", "n": "int", "name": "string"})
    err = failure(lambda: check.has_columns(["Age", "weight"]))
    assert err.message.startswith("df is missing 2 column(s): ['Age', 'weight']")
    assert "'Age' is spelled 'age'" in err.hint
    err = failure(lambda: check.has_columns(["age"], exact=True))
    assert err.message == "df has 2 extra column(s): ['name', 'n']"
    err = failure(lambda: check.has_shape((4, 3)))
    assert err.message == "df has shape (3, 3); expected (4, 3)" and "rows" in err.hint
    err = failure(lambda: check.has_dtypes({"n": "float"}))
    assert err.message == "column 'n' of df has dtype int64; expected float"
    assert "df['n'].astype(float)" in err.hint


def test_frame_column_and_missing(frame: pd.DataFrame) -> None:
    check_frame(frame, "df").column("n").has_shape((3,)).all_between(1, 3)
    err = failure(lambda: check_frame(frame, "df").column("n").all_between(5, 9))
    assert "column 'n' of df" in err.message
    err = failure(lambda: check_frame(frame, "df").has_no_missing())
    assert err.message == "df has missing values in 1 column(s): 'age' (1)"
    assert err.measured == {"age": 1} and "fillna" in err.hint
    check_frame(frame.dropna(), "df").has_no_missing()


def test_frame_close_to(frame: pd.DataFrame) -> None:
    check_frame(frame, "df").close_to(frame.copy())
    other = frame.copy()
    other.loc[1, "n"] = 7
    err = failure(lambda: check_frame(frame, "df").close_to(other, hide_expected=True))
    assert err.message.startswith("1 of 3 elements of column 'n' of df differ")
    assert "7" not in err.message
    other = frame.copy()
    other["name"] = ["c", "b", "a"]
    err = failure(lambda: check_frame(frame, "df").close_to(other))
    assert err.message == "2 of 3 rows of column 'name' of df differ from the expected values (first at row position 0)"
    assert "different order" in err.hint


# --------------------------------------------------------------------------- metrics


def _classification_arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(3), size=40)
    labels = rng.integers(0, 3, size=40)
    return probs, labels, np.eye(3)[labels]


def test_compute_metric_classification_matches_sklearn() -> None:
    probs, labels, onehot = _classification_arrays()
    expected_acc = skm.accuracy_score(labels, probs.argmax(1))
    assert compute_metric(labels, probs, "accuracy") == pytest.approx(expected_acc)
    assert compute_metric(onehot, probs, "accuracy") == pytest.approx(expected_acc)
    assert compute_metric(labels[:, None], probs, "acc") == pytest.approx(expected_acc)
    assert compute_metric(labels, probs.argmax(1), "accuracy") == pytest.approx(expected_acc)
    assert compute_metric(onehot, probs, "log_loss") == pytest.approx(skm.log_loss(labels, probs), rel=1e-5)
    assert compute_metric(labels, probs, "log_loss") == pytest.approx(skm.log_loss(labels, probs), rel=1e-5)
    p = probs[:, :1]
    y = (labels == 0).astype(int)
    assert compute_metric(y, p, "accuracy") == pytest.approx(skm.accuracy_score(y, p[:, 0] >= 0.5))
    assert compute_metric(y[:, None], p, "binary_accuracy") == pytest.approx(skm.accuracy_score(y, p[:, 0] >= 0.5))
    assert compute_metric(y, p, "log_loss") == pytest.approx(skm.log_loss(y, p[:, 0]), rel=1e-5)
    multilabel = (probs > 0.3).astype(int)
    assert compute_metric(multilabel, probs, "binary_accuracy") == pytest.approx(np.mean((probs >= 0.5) == multilabel))


def test_compute_metric_regression_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=(50, 1))
    pred = y[:, 0] + rng.normal(scale=0.3, size=50)
    assert compute_metric(y, pred, "mae") == pytest.approx(skm.mean_absolute_error(y, pred))
    assert compute_metric(y, pred, "mse") == pytest.approx(skm.mean_squared_error(y, pred))
    assert compute_metric(y, pred, "rmse") == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert compute_metric(y, pred, "r2") == pytest.approx(skm.r2_score(y, pred))
    y2, p2 = rng.normal(size=(30, 2)), rng.normal(size=(30, 2))
    assert compute_metric(y2, p2, "r2") == pytest.approx(skm.r2_score(y2, p2))
    assert set(METRICS) == {"accuracy", "binary_accuracy", "mae", "mse", "rmse", "r2", "log_loss"}
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metric(y, pred, "f1")


def test_metric_shape_mismatches() -> None:
    probs, labels, _ = _classification_arrays()
    err = failure(lambda: compute_metric(labels, probs, "mse"))
    assert err.message == "the predictions have shape (40, 3) but the labels have 1 column"
    err = failure(lambda: compute_metric(labels[:30], probs, "accuracy"))
    assert err.message == "there are 40 predictions but 30 labels"
    err = failure(lambda: compute_metric(np.eye(3)[labels], probs[:, :1], "accuracy"))
    assert "labels have 3 columns" in err.message and "Dense(3, activation='softmax')" in err.hint
    err = failure(lambda: compute_metric(labels + 5, probs, "accuracy"))
    assert "not among the model's 3 classes" in err.message
    err = failure(lambda: compute_metric(labels, probs * 4 - 2, "log_loss"))
    assert "outside [0, 1]" in err.message and "raw scores" in err.hint
    err = failure(lambda: compute_metric(labels, np.full((40, 3), np.nan), "accuracy"))
    assert "NaN" in err.message and "learning rate" in err.hint


def test_check_metric_with_model(reg_model: keras.Model, line_data: tuple[np.ndarray, np.ndarray]) -> None:
    x, y = line_data
    value = check_metric(reg_model, (x, y), "mse").value
    pred = reg_model.predict(x, verbose=0)
    assert value == pytest.approx(float(np.mean((pred - y) ** 2)), rel=1e-5)
    check_metric(reg_model, {"x": x, "y": y}, "mae").below(100).above(0)
    take_metrics()
    err = failure(lambda: check_metric(reg_model, (x, y), "mse", name="hidden-set mse").below(
        Threshold(1e-6, "meteor_mse")))
    assert err.message.startswith("hidden-set mse is ") and "expected at most 1e-06" in err.message
    assert "learning rate" in err.hint
    assert take_metrics() == {"meteor_mse": pytest.approx(value)}


def test_check_metric_model_output_mismatch(clf_model: keras.Model) -> None:
    x = np.zeros((12, 4), dtype="float32")
    y = np.linspace(0.0, 5.0, 12)
    err = failure(lambda: check_metric(clf_model, (x, y), "mse"))
    assert err.message == "the model outputs (None, 3) but the labels have 1 column"
    err = failure(lambda: check_metric(clf_model, (np.zeros((12, 7)), y), "mse"))
    assert err.message == "the model takes (None, 4) but the data has shape (12, 7)"
    assert "keras.Input(shape=(7,))" in err.hint


def test_check_metric_never_shows_hidden_values(clf_model: keras.Model) -> None:
    x = np.full((6, 4), 987.654, dtype="float32")
    y = np.array([0, 1, 2, 42, 1, 0])
    err = failure(lambda: check_metric(clf_model, (x, y), "accuracy"))
    assert "987" not in err.message and "42" not in err.message
    assert err.message == "1 labels are not among the model's 3 classes"


def test_check_metric_above_records_threshold() -> None:
    probs, labels, _ = _classification_arrays()
    take_metrics()
    acc = check_metric(probs, (None, labels), "accuracy").above(Threshold(0.0, "clf_acc")).value
    assert take_metrics() == {"clf_acc": pytest.approx(acc)}
    err = failure(lambda: check_metric(probs, (None, labels), "accuracy").above(0.99))
    assert err.message.startswith("the accuracy on 40 examples is") and "softmax" in err.hint
    err = failure(lambda: check_metric(probs, (None, labels), "accuracy").above(0.99, hint="custom"))
    assert err.hint == "custom"


# --------------------------------------------------------------------------- histories


def test_check_history_sources_and_epochs(reg_model: keras.Model) -> None:
    hist = keras.callbacks.History()
    hist.history = {"loss": [3.0, 2.0, 1.0], "accuracy": [0.2, 0.5, 0.7]}
    check_history(hist).has_epochs(3).has_epochs(at_least=2)
    check_history(hist.history, "acc").has_epochs(3)
    err = failure(lambda: check_history(hist).has_epochs(10))
    assert err.message == "the history has 3 epochs; expected 10" and "epochs=10" in err.hint
    err = failure(lambda: check_history(hist).has_epochs(at_least=5))
    assert err.message == "the history has 3 epochs; expected at least 5"
    err = failure(lambda: check_history(hist, "val_loss"))
    assert err.message == "the history has no 'val_loss'; it has ['accuracy', 'loss']"
    assert "validation_split" in err.hint
    err = failure(lambda: check_history(reg_model))
    assert err.message == "expected a training history, got Sequential"
    err = failure(lambda: check_history({"loss": []}))
    assert "empty" in err.message


def test_history_is_finite() -> None:
    check_history({"loss": [1.0, 0.5]}).is_finite()
    err = failure(lambda: check_history({"loss": [1.0, 0.5, float("nan"), float("inf")]}).is_finite())
    assert err.message == "the loss is nan at epoch 3 (of 4)"
    assert err.measured == {"first_bad_epoch": 3, "bad_epochs": 2} and "learning rate" in err.hint


def test_decreases_accepts_noisy_decrease() -> None:
    rng = np.random.default_rng(3)
    noisy = 1.0 / np.arange(1, 21) + rng.normal(scale=0.03, size=20)
    assert kendall_tau(noisy) < -0.3
    check_history({"loss": noisy.tolist()}).decreases()
    check_history({"loss": [1.0, 0.9, 0.95, 0.7, 0.8, 0.5, 0.55, 0.4, 0.45]}).decreases()


def test_decreases_rejects_noisy_flat() -> None:
    rng = np.random.default_rng(4)
    flat = (1.0 + rng.normal(scale=0.01, size=20)).tolist()
    err = failure(lambda: check_history({"loss": flat}).decreases())
    assert err.message.startswith("the loss does not decrease: it stays flat")
    assert "does not move" in err.hint and "fit(...)" in err.hint
    assert set(err.measured) == {"kendall_tau", "change", "epochs"}


def test_decreases_rejects_first_vs_last_only() -> None:
    # the last epoch is below the first, but the loss rises for most of training
    rising = [1.0, 1.2, 1.3, 1.5, 1.6, 1.7, 1.8, 1.9, 0.9]
    assert rising[-1] < rising[0]
    err = failure(lambda: check_history({"loss": rising}).decreases())
    assert err.message.startswith("the loss does not decrease: it goes the other way")
    assert err.hint == "the loss grows: lower the learning rate, scale the inputs"
    # up in the middle, back down at the end: first > last, yet no downward trend
    hump = [1.0, 1.4, 1.8, 2.2, 2.6, 2.4, 2.0, 1.5, 0.95]
    err = failure(lambda: check_history({"loss": hump}).decreases())
    assert "does not decrease steadily" in err.message and "up and down" in err.hint


def test_decreases_needs_enough_drop_and_epochs() -> None:
    slow = [1.0, 0.99, 0.98, 0.97, 0.96, 0.95]
    err = failure(lambda: check_history({"loss": slow}).decreases())
    assert err.message.startswith("the loss falls by only 4% from the first to the last third")
    check_history({"loss": slow}).decreases(min_drop=0.02)
    err = failure(lambda: check_history({"loss": [1.0, 0.5]}).decreases())
    assert "at least 3 are needed" in err.message
    err = failure(lambda: check_history({"loss": [1.0, float("nan"), 0.5]}).decreases())
    assert "nan at epoch 2" in err.message


def test_increases() -> None:
    check_history({"accuracy": [0.3, 0.5, 0.55, 0.7, 0.8, 0.85]}, "accuracy").increases()
    err = failure(lambda: check_history({"accuracy": [0.9, 0.8, 0.7, 0.6]}, "accuracy").increases())
    assert err.message.startswith("the accuracy does not increase")


def test_final_and_best_bounds_record_thresholds() -> None:
    series = {"loss": [1.0, 0.5, 0.3, 0.4], "val_loss": [1.0, 0.6, 0.4, 0.9], "accuracy": [0.5, 0.7, 0.9, 0.8]}
    take_metrics()
    check_history(series).final_below(Threshold(0.45, "final_loss")).best_below(Threshold(0.35, "best_loss"))
    check_history(series, "accuracy").final_above(0.75).best_above(Threshold(0.85, "best_acc"))
    assert take_metrics() == {"final_loss": 0.4, "best_loss": 0.3, "best_acc": 0.9}
    err = failure(lambda: check_history(series, "val_loss").final_below(0.5))
    assert err.message == "the final val_loss (epoch 4) is 0.9; expected at most 0.5"
    assert "overfits" in err.hint and "epoch 3" in err.hint
    err = failure(lambda: check_history(series, "val_loss").best_below(0.1))
    assert err.message == "the best val_loss (epoch 3) is 0.4; expected at most 0.1"
    err = failure(lambda: check_history(series, "accuracy").final_above(0.95))
    assert err.message == "the final accuracy (epoch 4) is 0.8; expected at least 0.95"
    err = failure(lambda: check_history(series, "accuracy").best_above(0.95))
    assert err.message == "the best accuracy (epoch 3) is 0.9; expected at least 0.95"


# --------------------------------------------------------------------------- re-training


def test_retrain_is_deterministic(reg_model: keras.Model, line_data: tuple[np.ndarray, np.ndarray]) -> None:
    before = [w.copy() for w in reg_model.get_weights()]
    first = retrain(reg_model, line_data, epochs=4, seed=7, batch_size=16, validation_split=0.25)
    second = retrain(reg_model, line_data, epochs=4, seed=7, batch_size=16, validation_split=0.25)
    other = retrain(reg_model, line_data, epochs=4, seed=8, batch_size=16, validation_split=0.25)
    assert set(first) == {"loss", "mae", "val_loss", "val_mae"}
    assert all(len(v) == 4 for v in first.values())
    for key in first:
        np.testing.assert_allclose(first[key], second[key], rtol=1e-6, atol=0)
    assert all(len(other[key]) == 4 for key in first)  # another seed may differ
    assert all(np.array_equal(a, b) for a, b in zip(before, reg_model.get_weights(), strict=True))


def test_check_retraining_learns_a_line(reg_model: keras.Model, line_data: tuple[np.ndarray, np.ndarray]) -> None:
    check_retraining(reg_model, line_data, epochs=9, seed=0, batch_size=16).decreases().is_finite().has_epochs(9)


def test_retrain_uncompiled_uses_default_loss(line_data: tuple[np.ndarray, np.ndarray]) -> None:
    model = _regression_model()
    history = retrain(model, line_data, epochs=2, seed=0, loss="mae")
    assert set(history) == {"loss"} and len(history["loss"]) == 2


def test_retrain_failures(reg_model: keras.Model, line_data: tuple[np.ndarray, np.ndarray]) -> None:
    err = failure(lambda: retrain("model.keras", line_data, epochs=1, seed=0))
    assert err.message == "expected a Keras model, got str"
    x, y = line_data
    err = failure(lambda: retrain(reg_model, (np.zeros((8, 3)), y[:8]), epochs=1, seed=0))
    assert err.message.startswith("re-training the model failed (")
    err = failure(lambda: check_retraining(reg_model, (x, y), epochs=1, seed=0, metric="accuracy"))
    assert err.message.startswith("the history has no 'accuracy'") and "metrics=['accuracy']" in err.hint


# --------------------------------------------------------------------------- edge cases


def test_multi_output_model_names_the_output_layer() -> None:
    inp = keras.Input((3,), name="features")
    model = keras.Model(inp, [keras.layers.Dense(1, name="price")(inp),
                              keras.layers.Dense(2, activation="softmax", name="kind")(inp)])
    check_model(model).has_outputs(2).has_output_shape([(None, 1), (None, 2)])
    err = failure(lambda: check_model(model).has_output_shape((None, 1), (None, 3)))
    assert err.message == "the model's output 2 'kind' has shape (None, 2); expected (None, 3)"
    assert "'kind'" in err.hint and "units to 3" in err.hint
    model.compile(optimizer="adam", loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
                  metrics={"kind": ["accuracy"], "price": ["mae"]})
    check_model(model).is_compiled_with(loss={"price": "mse", "kind": "sparse_categorical_crossentropy"},
                                        metrics=["acc", "mae"])
    err = failure(lambda: check_model(model).is_compiled_with(loss={"price": "mae", "kind": "sparse_categorical_crossentropy"}))
    assert err.message == "output 1 'price' is compiled with loss 'mean_squared_error'; expected 'mean_absolute_error'"
    err = failure(lambda: check_metric(model, (np.zeros((4, 3)), np.zeros(4)), "mse"))
    assert err.message == "the model has 2 outputs; this check needs one"


@pytest.mark.filterwarnings("ignore:The object being serialized includes a `lambda`")
def test_compile_edge_cases() -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.9)
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss=lambda a, b: keras.ops.mean((a - b) ** 2))
    check_model(model).is_compiled_with(optimizer="sgd", learning_rate=0.1)
    err = failure(lambda: check_model(model).is_compiled_with(learning_rate=0.2))
    assert err.message == "the optimizer's initial learning rate of the schedule is 0.1; expected 0.2"
    # a lambda loss has no safe serialized form; re-training still uses it
    history = retrain(model, (np.zeros((8, 3)), np.zeros((8, 2))), epochs=1, seed=0)
    assert history["loss"] == [0.0]
    model.compile(optimizer="adam")
    err = failure(lambda: check_model(model).is_compiled_with(loss="mse"))
    assert err.message == "the model is compiled without a loss; expected 'mean_squared_error'"


def test_array_checks_edge_cases() -> None:
    check_array(["cat", "dog"]).close_to(["cat", "dog"])
    err = failure(lambda: check_array(["cat", "dog"], "labels").close_to(["cat", "cow"]))
    assert err.message == ("1 of 2 elements of labels differ from the expected values (first at index (1,)): "
                           "there labels is 'dog'; expected 'cow'")
    err = failure(lambda: check_array(["cat", "dog"], "labels").close_to(["cat", "cow"], hide_expected=True))
    assert "cow" not in err.message
    err = failure(lambda: check_array(["a", "b"], "labels").is_finite())
    assert err.message == "labels is not numeric: its dtype is <U1"
    err = failure(lambda: check_array(keras.Input((3,)), "x"))
    assert err.message == "x cannot be turned into an array (got KerasTensor)"
