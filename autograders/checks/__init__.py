"""The check library used by assignment tests: chainable checks that raise ``CheckFailure``.

    check_model(model).has_input_shape((None, 1)).layers(dense(50, "relu"), dense(1))
    check_metric(model, hidden_data, "mse").below(thresholds["meteor_mse"])
    check_retraining(model, train_data, epochs=20, seed=0).decreases()
"""

from autograders.checks.array_checks import (
    ArrayCheck,
    FrameCheck,
    ValueCheck,
    check_array,
    check_frame,
    check_value,
)
from autograders.checks.base import Threshold, compare, fail, record_metric, take_metrics
from autograders.checks.convergence import (
    HistoryCheck,
    check_history,
    check_retraining,
    kendall_tau,
    retrain,
)
from autograders.checks.keras_checks import (
    LayerCheck,
    LayerSpec,
    ModelCheck,
    check_model,
    dense,
    layer_spec,
)
from autograders.checks.metrics import (
    METRICS,
    MetricCheck,
    check_metric,
    compute_metric,
    unpack_data,
)
from autograders.results import CheckFailure

__all__ = [
    "METRICS",
    "ArrayCheck",
    "CheckFailure",
    "FrameCheck",
    "HistoryCheck",
    "LayerCheck",
    "LayerSpec",
    "MetricCheck",
    "ModelCheck",
    "Threshold",
    "ValueCheck",
    "check_array",
    "check_frame",
    "check_history",
    "check_metric",
    "check_model",
    "check_retraining",
    "check_value",
    "compare",
    "compute_metric",
    "dense",
    "fail",
    "kendall_tau",
    "layer_spec",
    "record_metric",
    "retrain",
    "take_metrics",
    "unpack_data",
]
