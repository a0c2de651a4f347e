"""Recompute, don't trust: the helpers that tie exported numbers to the model artifact.

Each test pairs an honest export with the forgery it must catch (typed predictions, a made-up
history, a plain dict, a run that never reset its weights), on tiny real Keras models.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from autograders.artifacts import ExportedHistory, Submission  # noqa: E402
from autograders.checks import (  # noqa: E402
    CheckFailure,
    check_claim,
    check_history_fits_model,
    check_is_history,
    check_predictions,
    replay_fit,
    variant,
    weight_distance,
    with_batch_statistics,
)
from autograders.export import EXPORT_DIR_ENV, export  # noqa: E402


def _regression(seed: int = 0):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input(shape=(1,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.05), loss="mse")
    return model


@pytest.fixture(scope="module")
def orbit():
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    return x, (x[:, 0] ** 2).astype("float32")


@pytest.fixture(scope="module")
def trained(orbit):
    model = _regression()
    history = model.fit(*orbit, epochs=15, batch_size=16, verbose=0)
    return model, history


def test_claim_agrees_within_band_and_says_both_numbers():
    assert check_claim([0.5, 0.7], "accs").agrees_with([0.52, 0.69], atol=0.05).tolist() == [0.52, 0.69]
    with pytest.raises(CheckFailure) as failure:
        check_claim([0.5, 0.9], "accs").agrees_with([0.52, 0.69], atol=0.05)
    assert "accs does not match" in failure.value.message and "0.69" in failure.value.message
    with pytest.raises(CheckFailure):  # a claim of another shape is not the same claim
        check_claim([0.5], "accs").agrees_with([0.5, 0.6], atol=1)
    assert check_claim([[0.5], [0.6]], "accs").agrees_with([0.5, 0.6], atol=1e-9).shape == (2,)


def test_predictions_must_be_the_models(trained, orbit):
    model, _ = trained
    model.predict(orbit[0], verbose=0)  # an earlier check predicted (n, 1) batches with this model object
    minutes = np.arange(-3, 4, dtype="float32")
    honest = model.predict(np.arange(-3, 4), verbose=0)  # the notebook predicts on integers
    assert check_predictions(honest, model, minutes, "orbit").shape == (7, 1)
    typed = (minutes ** 2).reshape(-1, 1)
    with pytest.raises(CheckFailure, match="does not match the exported model's predictions"):
        check_predictions(typed, model, minutes, "orbit")


def test_a_plain_dict_is_not_a_history(trained):
    _, history = trained
    assert check_is_history(history).epochs == 15
    with pytest.raises(CheckFailure, match="plain dict"):
        check_is_history({"loss": [3.0, 2.0, 1.0]})
    with pytest.raises(CheckFailure, match="plain dict"):  # what the checker loads from a dict export
        check_is_history(ExportedHistory({"loss": [3.0, 2.0, 1.0]}))
    forged = ExportedHistory({"loss": [3.0] * 40}, params={"epochs": 30, "steps": 4})
    with pytest.raises(CheckFailure, match="40 epochs"):
        check_is_history(forged)


def test_history_must_fit_the_model(trained, orbit):
    model, history = trained
    check_history_fits_model(history, model, orbit, epochs=15, ratio=3.0, atol=0.05)
    untrained = _regression(seed=1)
    made_up = keras.callbacks.History()
    made_up.history = {"loss": [float(v) for v in history.history["loss"]]}
    made_up.params = dict(history.params)
    untrained.fit(orbit[0][:1], orbit[1][:1], epochs=1, verbose=0)  # compiled and built, barely trained
    untrained.set_weights([w * 40 for w in untrained.get_weights()])
    with pytest.raises(CheckFailure, match="do not come from training this model"):
        check_history_fits_model(made_up, untrained, orbit, epochs=15, ratio=3.0, atol=0.05)


def test_replay_from_initial_weights_tells_reset_from_no_reset(orbit):
    """The procedure check of a learning curve: a run that never reset travels further."""
    x, y = orbit
    model = _regression(seed=2)
    initial = model.get_weights()
    model.fit(x[:16], y[:16], epochs=10, verbose=0)  # the previous size's run
    model.fit(x, y, epochs=10, verbose=0)            # ...continued, never reset
    kept_training = model.get_weights()
    model.set_weights(initial)
    model.fit(x, y, epochs=10, verbose=0)
    reset = model.get_weights()
    replay = replay_fit(model, x, y, seed=0, epochs=10, weights=initial)
    expected = weight_distance(replay.weights(), initial)
    assert weight_distance(reset, initial) / expected < 1.18
    assert weight_distance(kept_training, initial) / expected > 1.18


def test_one_batch_replay_reproduces_the_run(orbit):
    x, y = orbit
    model = _regression(seed=3)
    initial = model.get_weights()
    model.fit(x, y, epochs=5, batch_size=len(x), verbose=0)
    replay = replay_fit(model, x, y, seed=7, epochs=5, batch_size=len(x), weights=initial)
    assert weight_distance(model.get_weights(), replay.weights()) < 1e-4
    with pytest.raises(CheckFailure, match="do not fit the model"):
        replay_fit(model, x, y, seed=7, epochs=1, weights=initial[:2])


def test_variant_changes_one_layer_and_keeps_the_rest():
    model = _regression()
    copy = variant(model, seed=0, layer_changes={0: {"activation": "sigmoid"}})
    assert copy.layers[0].get_config()["activation"] == "sigmoid"
    assert [w.shape for w in copy.weights] == [w.shape for w in model.weights]


def test_batch_statistics_replace_unwarmed_running_averages():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(3.0, 0.01, size=(256, 4)).astype("float32")
    model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(3, kernel_initializer="ones"),
                              keras.layers.BatchNormalization()])
    refreshed = with_batch_statistics(model, x)
    norm = refreshed.layers[-1]
    inputs = x @ np.ones((4, 3), dtype="float32")
    np.testing.assert_allclose(np.asarray(norm.moving_mean), inputs.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(norm.moving_variance), inputs.var(axis=0), rtol=1e-2, atol=1e-6)
    assert float(np.asarray(model.layers[-1].moving_mean)[0]) == 0.0  # the student's model is untouched
    assert abs(float(refreshed.predict(x, verbose=0).mean())) < 1e-2


def test_weight_lists_and_history_params_survive_the_export(tmp_path, monkeypatch, trained):
    model, history = trained
    monkeypatch.setenv(EXPORT_DIR_ENV, str(tmp_path / "artifacts"))
    export("cell", initial_weights=model.get_weights(), model=model, history=history, claimed={"loss": [1.0, 0.5]})
    submission = Submission(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "checker-tmp"))
    (tmp_path / "checker-tmp").mkdir()
    weights = submission.get("cell", "initial_weights", expect="weights")
    assert submission.get("cell", "model", expect="model").count_params() == model.count_params()
    assert not list((tmp_path / "checker-tmp").iterdir()), "the private copies of archives are removed once loaded"
    assert [w.shape for w in weights] == [w.shape for w in model.get_weights()]
    assert weight_distance(weights, model.get_weights()) == 0.0
    assert submission.get("cell", "history", expect="history").params["epochs"] == 15
    assert submission.get("cell", "claimed", expect="history").params == {}
