"""The public checks of this assignment, written by `deepgrade generate`: run them with
check("exercise") in your notebook. Your score comes from all the checks, when you submit."""
from autograders import grades
from autograders.checks import Hidden, check_model, check_value, dense, fail


@grades("functional-model", points=1, public=True, hints=(
    "This chapter builds models with the functional API: layers are called on tensors.",
    "Start from input_tensor = keras.Input(shape=(1,)), call your layer on it, and wrap both ends "
    "in keras.Model(...).",
    "output_tensor = output_layer(input_tensor); model = keras.Model(input_tensor, output_tensor)",
))
def test_built_with_functional_api(model):
    """The model is a keras.Model(inputs, outputs), not a Sequential stack."""
    kind = type(model).__name__
    if kind != "Functional":
        fail(f"the model is a {kind}; expected a functional model", measured=kind,
             expected="Functional",
             hint="this chapter is about the functional API: create input_tensor = keras.Input(...), "
                  "call the layer on it, and build keras.Model(input_tensor, output_tensor) "
                  "instead of keras.Sequential([...])")


@grades("functional-model", points=1, public=True, hints=(
    "One number goes in (seed_diff) and one number comes out (the predicted score difference).",
    "The input is keras.Input(shape=(1,)); the only layer is a Dense layer with 1 unit.",
    "A score difference can be negative, so the output layer has no activation: "
    "layers.Dense(1, name=\"predicted-score-diff\").",
))
def test_one_number_in_one_number_out(model):
    """One number in, one number out, through a single linear Dense layer."""
    check_model(model).has_input_shape((None, 1)).has_output_shape((None, 1)).layers(
        dense(1, "linear"))


@grades("functional-model", points=1, public=True, hints=(
    "A Dense layer from 1 input to 1 output has one weight and one bias.",
    "Add no other layers: model.summary() should report 2 trainable parameters.",
))
def test_parameter_count(model):
    """One weight and one bias."""
    check_model(model).has_params(total=2, trainable=2)


@grades("compile-and-summary", points=1, public=True, hints=(
    "The games are scored by how many points a prediction is off: the loss is the mean absolute error.",
    "model.compile(optimizer=\"adam\", loss=\"mean_absolute_error\")",
))
def test_compiled_with_adam_and_mae(model):
    """Compiled with the Adam optimizer and the mean absolute error."""
    check_model(model).is_compiled_with(optimizer="adam", loss="mean_absolute_error")


@grades("compile-and-summary", points=1, public=True, hints=(
    "Read the total number of parameters from model.summary() (or model.count_params()).",
    "n_params = model.count_params() gives the same number as the summary.",
))
def test_parameter_answer(arrays):
    """The number of parameters read from the summary."""
    check_value(arrays["n_params"], "n_params").equals(Hidden(2))
