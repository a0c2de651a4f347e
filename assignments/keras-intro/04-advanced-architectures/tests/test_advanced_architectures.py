"""Autograder for keras-intro/04-advanced-architectures: each test scores a grade cell's points."""

import numpy as np

from autograders import grades
from autograders.checks import (
    check_array,
    check_history,
    check_history_fits_model,
    check_metric,
    check_model,
    dense,
    fail,
    from_student,
    layer_spec,
)

PROMPTS = ["it is not", "the strength of", "all we have", "the burned hand"]


def _predict(model, x):
    with from_student("predicting with the exported model"):
        return np.asarray(model.predict(x, verbose=0), dtype=np.float64)


def _layer_output(model, index, x):
    """What layer ``index`` of ``model`` outputs for ``x``. Positions do not count the InputLayer,
    so a Sequential, functional or nested model of the same layers gives the same answer."""
    return check_model(model).layer(index).output_on(x)


# ---------------------------------------------------------------------------- layer outputs


@grades("layer-outputs", points=1)
def test_separation_model(model):
    """4 inputs, Dense(2, tanh), one sigmoid output; Adam(0.01) and binary cross-entropy."""
    check_model(model).has_input_shape((None, 4)).layers(dense(2, "tanh"), dense(1, "sigmoid"))
    check_model(model).is_compiled_with(
        optimizer="adam", learning_rate=0.01, loss="binary_crossentropy"
    )


@grades("layer-outputs", points=1)
def test_first_layer_submodel(models, banknotes):
    """first_layer maps the 4 features to the 2 outputs of banknote_model's first layer."""
    sub = models["first_layer"]
    check_model(sub).has_input_shape((None, 4)).has_output_shape((None, 2))
    x_test, _ = banknotes.test
    expected = _layer_output(models["model"], 0, x_test)
    check_array(_predict(sub, x_test), "first_layer's output on X_test").close_to(
        expected, rtol=1e-4, atol=1e-4, hide_expected=True
    )


@grades("layer-outputs", points=1)
def test_before_and_after(arrays, model, banknotes):
    """`after` is the trained first layer's output on X_test; `before` was taken before training."""
    x_test, _ = banknotes.test
    after = check_array(arrays["after"], "after").has_shape((len(x_test), 2)).array
    before = check_array(arrays["before"], "before").has_shape((len(x_test), 2)).is_finite().array
    check_array(after, "after").close_to(
        _layer_output(model, 0, x_test), rtol=1e-4, atol=1e-4, hide_expected=True
    )
    if np.max(np.abs(before - after)) < 1e-3:
        fail(
            "before and after are the same: the first layer did not change in between",
            measured="identical",
            expected="different",
            hint="compute `before` with first_layer.predict(X_test) before calling fit, "
            "and `after` after it",
        )


@grades("layer-outputs", points=1)
def test_separation_hidden_accuracy(model, banknotes, thresholds):
    """The 2-neuron network classifies hidden banknotes."""
    check_metric(model, banknotes.hidden, "accuracy").above(
        thresholds["separation_hidden_accuracy"],
        hint="the model separates unseen banknotes poorly; the usual causes are fewer than 10 "
        "epochs, another learning rate than Adam(learning_rate=0.01), or inputs not standardised "
        "as in the notebook",
    )


# ---------------------------------------------------------------------------- CNN


@grades("cnn", points=2)
def test_cnn_architecture(model):
    """Conv2D(16, 3) -> Conv2D(8, 3) -> Flatten -> Dense(10, softmax), and their output shapes."""
    checked = check_model(model).has_input_shape((None, 8, 8, 1))
    kinds = [type(layer).__name__ for layer in checked.flat_layers()]
    if "Flatten" not in kinds:
        fail(
            "the model has no Flatten layer",
            measured=kinds,
            expected="Flatten before the Dense output",
            hint="add layers.Flatten() after the last Conv2D: a Dense layer on 4-D maps makes one "
            "prediction per pixel position instead of one per image",
        )
    checked.layers(
        layer_spec("Conv2D", filters=16, kernel_size=3, activation="relu"),
        layer_spec("Conv2D", filters=8, kernel_size=3, activation="relu"),
        layer_spec("Flatten"),
        dense(10, "softmax"),
    )
    checked.layer(0).has_output_shape((None, 6, 6, 16))
    checked.layer(1).has_output_shape((None, 4, 4, 8))
    checked.layer(2).has_output_shape((None, 128))
    checked.is_compiled_with(optimizer="adam", loss="categorical_crossentropy")


@grades("cnn", points=2)
def test_cnn_hidden_accuracy(model, digits, thresholds):
    """The CNN recognises hidden digits."""
    check_metric(model, digits.hidden, "accuracy").above(
        thresholds["cnn_hidden_accuracy"],
        hint="the CNN recognises few unseen digits; the usual causes are fewer than 10 epochs, "
        "labels that are not one-hot for categorical_crossentropy, or a missing Flatten",
    )


@grades("cnn", points=1)
def test_conv_activations(model, arrays, digits):
    """conv_activations: the first convolution's 16 maps of 6 x 6 for the first 5 test images."""
    got = check_array(arrays["conv_activations"], "conv_activations").has_shape((5, 6, 6, 16)).array
    x_test, _ = digits.test
    check_model(model).layer(0).is_type("Conv2D")
    check_array(got, "conv_activations").close_to(
        _layer_output(model, 0, x_test[:5]), rtol=1e-4, atol=1e-4, hide_expected=True
    )


# ---------------------------------------------------------------------------- autoencoder


@grades("autoencoder", points=1)
def test_autoencoder_architecture(model):
    """Conv(16) -> MaxPooling -> Conv(16) -> UpSampling -> Conv(1, sigmoid), all 'same' padded."""
    conv = {"kernel_size": 3, "padding": "same"}
    check_model(model).has_input_shape((None, 28, 28, 1)).has_output_shape(
        (None, 28, 28, 1)
    ).layers(
        layer_spec("Conv2D", filters=16, activation="relu", **conv),
        layer_spec("MaxPooling2D"),
        layer_spec("Conv2D", filters=16, activation="relu", **conv),
        layer_spec("UpSampling2D"),
        layer_spec("Conv2D", filters=1, activation="sigmoid", **conv),
    ).is_compiled_with(loss="binary_crossentropy", learning_rate=0.005)


@grades("autoencoder", points=1)
def test_encodings_and_decoded(model, arrays, mnist):
    """encodings: the pooled 14 x 14 x 16 maps of 5 noisy digits; decoded: their reconstructions."""
    encodings = check_array(arrays["encodings"], "encodings").has_shape((5, 14, 14, 16)).array
    decoded = check_array(arrays["decoded"], "decoded").has_shape((5, 28, 28, 1)).array
    check_model(model).layer(1).is_type("MaxPooling2D")
    first = mnist.noisy[:5]
    check_array(encodings, "encodings").close_to(
        _layer_output(model, 1, first), rtol=1e-4, atol=1e-4, hide_expected=True
    )
    check_array(decoded, "decoded").close_to(
        _predict(model, first), rtol=1e-4, atol=1e-4, hide_expected=True
    )


@grades("autoencoder", points=2)
def test_denoising_hidden(model, mnist, thresholds):
    """Mean squared error between the cleaned hidden noisy digits and their clean originals."""
    noisy, clean = mnist.hidden
    cleaned = _predict(model, noisy)
    hint = ("the reconstructions are far from the clean digits; the usual causes are fewer than 20 "
            "epochs, another learning rate than Adam(learning_rate=0.005), or a missing padding='same'")
    if cleaned.shape == noisy.shape and np.mean((cleaned - noisy) ** 2) < np.mean((cleaned - clean) ** 2):
        hint = ("the output is closer to the noisy digits than to the clean ones, so the model learned "
                "to copy the noise: the target of fit must be the clean digits, fit(mnist_noise, mnist)")
    check_metric(cleaned, (noisy, clean), "mse", name=f"the mse on {len(clean)} examples").below(
        thresholds["denoise_hidden_mse"], hint=hint
    )


@grades("autoencoder", points=1)
def test_autoencoder_history(history, model, mnist):
    """20 epochs of this autoencoder's training; the reconstruction loss falls. The last epoch's loss
    (averaged while the weights move) agrees with the exported model on the noisy digits, within a
    factor 2: a model fitted to the noisy digits themselves, a mistake scored elsewhere, stays inside."""
    check_history_fits_model(history, model, (mnist.noisy, mnist.clean), epochs=20, ratio=2.0, atol=0.02) \
        .is_finite().decreases()


# ---------------------------------------------------------------------------- LSTM


def _expected_sequences(words):
    vocabulary = sorted(set(words))
    index = {w: i + 1 for i, w in enumerate(vocabulary)}
    sequences = np.array([[index[w] for w in words[i : i + 4]] for i in range(len(words) - 3)])
    one_hot = np.eye(len(vocabulary) + 1, dtype="float32")[sequences[:, 3]]
    return vocabulary, index, sequences[:, :3], one_hot


@grades("sequences", points=1)
def test_vocabulary(arrays, text_words):
    """vocabulary: the distinct words in alphabetical order."""
    vocabulary, _, _, _ = _expected_sequences(text_words)
    got = check_array(arrays["vocabulary"], "vocabulary").has_shape((len(vocabulary),)).array
    if sorted(got.tolist()) == vocabulary and got.tolist() != vocabulary:
        fail(
            "vocabulary has the right words in the wrong order",
            measured="unsorted",
            expected="sorted",
            hint="sort it: vocabulary = sorted(set(words))",
        )
    check_array(got, "vocabulary").close_to(np.array(vocabulary))


@grades("sequences", points=1)
def test_sequences(arrays, text_words):
    """X_seq: the indices of 3 consecutive words; y_seq: the next word's index, one-hot."""
    vocabulary, _, x, y = _expected_sequences(text_words)
    x_seq = check_array(arrays["X_seq"], "X_seq").has_shape(x.shape).array
    y_seq = check_array(arrays["y_seq"], "y_seq").array
    if y_seq.ndim == 2 and y_seq.shape[1] == len(vocabulary):
        fail(
            f"y_seq has {y_seq.shape[1]} columns, one per word, but index {len(vocabulary)} needs "
            f"{len(vocabulary) + 1}",
            measured=y_seq.shape[1],
            expected=len(vocabulary) + 1,
            hint="the words are numbered from 1, so vocab_size = len(vocabulary) + 1",
        )
    check_array(x_seq, "X_seq").close_to(x)
    check_array(y_seq, "y_seq").has_shape(y.shape).close_to(y)


@grades("lstm", points=1)
def test_lstm_architecture(model, text_words):
    """Embedding(vocab_size, 8) -> LSTM(32) -> Dense(32, relu) -> Dense(vocab_size, softmax)."""
    size = len(set(text_words)) + 1
    check_model(model).has_input_shape((None, 3)).layers(
        layer_spec("Embedding", input_dim=size, output_dim=8),
        layer_spec("LSTM", units=32),
        dense(32, "relu"),
        dense(size, "softmax"),
    ).is_compiled_with(loss="categorical_crossentropy")


@grades("lstm", points=2)
def test_lstm_memorizes(model, text_words, thresholds):
    """Accuracy of the next-word prediction over all the sequences of the text."""
    _, _, x, y = _expected_sequences(text_words)
    check_metric(model, (x, y), "accuracy").above(
        thresholds["lstm_train_accuracy"],
        hint="train for 30 epochs with Adam(learning_rate=0.02) and batch_size=16 on one-hot "
        "targets",
    )


@grades("lstm", points=1)
def test_lstm_history(history, model, text_words):
    """30 epochs of this model's training; the loss falls and the accuracy rises. The last epoch's
    loss agrees with the exported model on the sequences (it memorises fast, so within a factor 3)."""
    _, _, x, y = _expected_sequences(text_words)
    check_history_fits_model(history, model, (x, y), epochs=30, ratio=3.0, atol=0.1) \
        .is_finite().decreases()
    check_history(history, "accuracy").increases()


@grades("lstm", points=1)
def test_next_words(model, arrays, text_words):
    """next_words: for each prompt, the word whose index the model finds most likely."""
    vocabulary, index, _, _ = _expected_sequences(text_words)
    got = check_array(arrays["next_words"], "next_words").has_shape((len(PROMPTS),)).array
    prompts = np.array([[index[w] for w in p.split()] for p in PROMPTS])
    best = np.argmax(_predict(model, prompts).reshape(len(prompts), -1), axis=1)
    expected = np.array([vocabulary[i - 1] if 0 < i <= len(vocabulary) else "" for i in best])
    shifted = np.array([vocabulary[i] if i < len(vocabulary) else "" for i in best])
    if not np.array_equal(got, expected) and np.array_equal(got, shifted):
        fail(
            "next_words are the words one place after the predicted ones in the vocabulary",
            measured=got.tolist(),
            expected="the predicted words",
            hint="index 0 is unused, so the word with index i is vocabulary[i - 1]: look the "
            "index up in index_to_word, not in vocabulary",
        )
    check_array(got, "next_words").close_to(expected)
