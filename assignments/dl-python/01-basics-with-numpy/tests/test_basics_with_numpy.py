"""Autograder for dl-python/01-basics-with-numpy. Node values and outputs are compared exactly
(to 1e-9) with values recomputed here for the worked examples and for seeded weight sets, so
copying the numbers printed in the text cannot pass: the function has to be right."""

from autograders import grades
from autograders.checks import CheckFailure, check_array, check_value

EXACT = {"rtol": 0.0, "atol": 1e-9}


def exact(arrays, hidden_data, name, hint, shape=None):
    """``arrays[name]`` equals the expected array; on failure the hint names the usual mistake."""
    expected = hidden_data[name]
    check = check_array(arrays[name], name).has_shape(shape or expected.shape).is_finite()
    try:
        check.close_to(expected, **EXACT)
    except CheckFailure as failure:
        failure.hint = hint
        raise


@grades("forward-propagation", points=1)
def test_forward_hidden_nodes(arrays, hidden_data):
    """Hidden node values of the linear network, for the example and 6 generated weight sets."""
    exact(arrays, hidden_data, "linear_hidden",
          "each hidden node is the dot product of the inputs with that node's weights: "
          "(input_data * weights['node_0']).sum(), and the same for node_1")


@grades("forward-propagation", points=1)
def test_forward_output(arrays, hidden_data):
    """Predictions of the linear network."""
    exact(arrays, hidden_data, "linear_output",
          "the output is the dot product of the hidden node values (not the inputs) with weights['output']")


@grades("relu", points=1)
def test_relu_values(arrays, hidden_data):
    """relu(x) on positive, negative and zero inputs."""
    exact(arrays, hidden_data, "relu_values",
          "ReLU keeps positive numbers unchanged and turns negative numbers into 0: max(input, 0)")


@grades("relu-network", points=1)
def test_relu_hidden_outputs(arrays, hidden_data):
    """Hidden node outputs after ReLU, for the example and 8 generated weight sets."""
    exact(arrays, hidden_data, "relu_hidden",
          "apply relu to each hidden node's input: a node whose weighted sum is negative outputs 0")


@grades("relu-network", points=1)
def test_relu_network_output(arrays, hidden_data):
    """Predictions of the ReLU network (the output node itself has no activation)."""
    exact(arrays, hidden_data, "relu_output",
          "the hidden nodes use ReLU but the output node does not: a prediction can be negative. "
          "Multiply the ReLU outputs of the hidden layer by weights['output'] and sum")


@grades("many-rows", points=1)
def test_results_for_rows(arrays, hidden_data):
    """`results` holds one prediction per row of `input_rows`, in order."""
    exact(arrays, hidden_data, "results",
          "loop over input_rows and append predict_with_network(row, weights) for each row, keeping the order")


@grades("many-rows", points=1)
def test_results_generated_rows(arrays, hidden_data):
    """predict_with_network on 10 generated rows for 4 weight sets."""
    exact(arrays, hidden_data, "results_grid",
          "predict_with_network must work for any row and any weights; the output node has no activation, "
          "so predictions can be negative")


@grades("deep-network", points=1)
def test_deep_first_hidden_layer(arrays, hidden_data):
    """Outputs of hidden layer 0, for the example and 8 generated weight sets."""
    exact(arrays, hidden_data, "deep_hidden_0",
          "hidden layer 0 reads the inputs with weights 'node_0_0' and 'node_0_1', then applies relu")


@grades("deep-network", points=1)
def test_deep_second_hidden_layer(arrays, hidden_data):
    """Outputs of hidden layer 1."""
    exact(arrays, hidden_data, "deep_hidden_1",
          "hidden layer 1 is fed by the outputs of hidden layer 0, not by the raw inputs; it uses "
          "'node_1_0' and 'node_1_1' and relu")


@grades("deep-network", points=1)
def test_deep_output(arrays, hidden_data):
    """Predictions of the two-hidden-layer network."""
    exact(arrays, hidden_data, "deep_output",
          "the prediction is the dot product of hidden layer 1's outputs with weights['output'], with no activation")


def _letter(value, name):
    check_value(value, name).has_type("str")
    return value.strip().lower().strip(")")


@grades("representation", points=1)
def test_answer_1(values):
    """Which layers find the most complex patterns."""
    check_value(_letter(values["answer_1"], "answer_1"), "answer_1").equals("b", hide_expected=True)


@grades("representation", points=1)
def test_answer_2(values):
    """Who chooses the patterns that hidden nodes represent."""
    check_value(_letter(values["answer_2"], "answer_2"), "answer_2").equals("c", hide_expected=True)

