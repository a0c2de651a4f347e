"""Autograder for dl-python/03-keras-models: structure and compile settings of both models, their
metrics on the hidden split (calibrated thresholds), their own learning curves, and the
save-reload-predict round trip."""

import numpy as np

from autograders import grades
from autograders.checks import (
    CheckFailure,
    Hidden,
    check_array,
    check_history,
    check_history_fits_model,
    check_metric,
    check_model,
    dense,
    fail,
    from_student,
)

ACCURACY_KEYS = ("accuracy", "categorical_accuracy", "binary_accuracy", "acc")


@grades("wages-specify", points=1)
def test_wages_architecture(model):
    """n_cols inputs, Dense(50, relu), Dense(32, relu), Dense(1)."""
    check_model(model).has_input_shape((None, 9)).layers(
        dense(50, "relu"), dense(32, "relu"), dense(1, "linear"))


@grades("wages-compile", points=1)
def test_wages_compile(model):
    """Adam and the mean squared error."""
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_squared_error")


@grades("wages-fit", points=2)
def test_wages_hidden_mse(model, hidden_data, thresholds):
    """Mean squared error of the trained wages model on workers it never saw."""
    check_model(model).has_input_shape((None, 9))
    check_metric(model, hidden_data["wages"], "mse").below(
        thresholds["wages_hidden_mse"],
        hint="train for the full 30 epochs (Keras 3 trains for only 1 epoch unless you pass epochs=30), "
             "with adam and the mean squared error")


@grades("wages-fit", points=1)
def test_wages_converged(history, model, train_data):
    """The wages model's own loss curve: 30 epochs, finite, trending down, ending where the exported
    model's loss on the training rows is (within 10 % and 0.5 squared dollars; honest runs differ
    by under 1 %)."""
    check_history_fits_model(history, model, train_data["wages"], epochs=30, ratio=1.1, atol=0.5) \
        .is_finite().decreases()


@grades("titanic-model", points=1)
def test_titanic_target_one_hot(arrays, train_data):
    """titanic_target is the one-hot encoding of the survived column."""
    expected = train_data["titanic"][1]
    target = check_array(arrays["target"], "titanic_target").has_shape(expected.shape).array
    try:
        check_array(target, "titanic_target").close_to(expected, rtol=0, atol=1e-6)
    except CheckFailure as failure:
        failure.hint = "use keras.utils.to_categorical(titanic['survived']): column 0 is 'died', column 1 'survived'"
        raise


@grades("titanic-model", points=1)
def test_titanic_architecture(model):
    """n_cols inputs, Dense(32, relu), and 2 softmax outputs."""
    check_model(model).has_input_shape((None, 10)).layers(dense(32, "relu"), dense(2, "softmax"))


@grades("titanic-model", points=1)
def test_titanic_compile(model):
    """SGD, categorical cross-entropy and the accuracy metric."""
    check_model(model).is_compiled_with(optimizer="sgd", loss="categorical_crossentropy", metrics=["accuracy"])


@grades("titanic-model", points=1)
def test_titanic_hidden_accuracy(model, hidden_data, thresholds):
    """Accuracy of the Titanic classifier on passengers it never saw."""
    check_model(model).has_input_shape((None, 10))
    check_metric(model, hidden_data["titanic"], "accuracy").above(thresholds["titanic_hidden_accuracy"])


@grades("titanic-model", points=1)
def test_titanic_converged(history, model, train_data):
    """20 epochs, a falling loss that ends where the exported model's loss on the training rows is
    (within 10 % and 0.02; honest runs differ by under 1 %), and the accuracy recorded in the history
    (under the name that the accuracy's form gives it: "accuracy" for the string,
    "categorical_accuracy" for the class...)."""
    x, one_hot = train_data["titanic"]
    with from_student("predicting with your Titanic model"):
        outputs = np.shape(check_model(model).keras_model.predict(x[:1], verbose=0))[-1]
    target = one_hot[:, 1:] if outputs == 1 else one_hot  # a one-unit sigmoid loses its own points elsewhere
    check_history_fits_model(history, model, (x, target), epochs=20, ratio=1.1, atol=0.02) \
        .is_finite().decreases()
    check_history(history, next((k for k in ACCURACY_KEYS if k in history), "accuracy")).is_finite()


@grades("titanic-predictions", points=1)
def test_reloaded_model(model, submission, hidden_data):
    """loaded_model is the trained titanic_model, read back from its .keras file."""
    trained = submission.get("titanic-model", "model", expect="model")
    check_model(model)
    x = hidden_data["titanic"][0]
    with from_student("predicting with loaded_model and with titanic_model"):
        mine = np.asarray(check_model(model).keras_model.predict(x, verbose=0))
        original = np.asarray(trained.predict(x, verbose=0))
    if mine.shape != original.shape or not np.allclose(mine, original, rtol=1e-5, atol=1e-6):
        raise CheckFailure("loaded_model does not predict like the trained titanic_model",
                           measured="different predictions", expected="the same predictions",
                           hint="save titanic_model after fitting it, then load that file: "
                                "keras.models.load_model('titanic_model.keras')")


@grades("titanic-predictions", points=2)
def test_probability_true(arrays, models, pred_data):
    """The survival probability of each new passenger: column 1 of the two softmax columns (or the
    one column of a model with a single sigmoid output, which is the same probability)."""
    probability = check_array(arrays["probability_true"], "probability_true").has_shape(
        (pred_data.shape[0],)).is_finite().all_between(0, 1)
    with from_student("predicting on pred_data with loaded_model"):
        predictions = np.asarray(models["model"].predict(pred_data, verbose=0), dtype=np.float64)
    columns = predictions.reshape(len(pred_data), -1)
    if columns.shape[1] not in (1, 2):
        fail(f"loaded_model gives {columns.shape[1]} values per passenger; expected the two class "
             "probabilities", measured=columns.shape[1], expected=2,
             hint="the model needs 2 softmax outputs: [not survived, survived]")
    expected = columns[:, -1]
    try:
        probability.close_to(Hidden(expected), rtol=1e-4, atol=1e-5)
    except CheckFailure as failure:
        if columns.shape[1] == 2 and np.allclose(probability.array, columns[:, 0], rtol=1e-4, atol=1e-5):
            failure.hint = ("probability_true is column 0 of the predictions, the probability of not "
                            "surviving: take column 1 (predictions[:, 1])")
        else:
            failure.hint = ("probability_true differs from loaded_model's survival probabilities on "
                            "pred_data; the usual causes are predicting with another model than "
                            "loaded_model, inputs not standardised with feature_mean and feature_std, "
                            "or the wrong column of the predictions")
        raise
