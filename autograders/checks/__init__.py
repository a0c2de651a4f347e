"""The check library used by assignment tests: chainable checks that raise ``CheckFailure``.

    check_model(model).has_input_shape((None, 1)).layers(dense(50, "relu"), dense(1))
    check_metric(model, hidden_data, "mse").below(thresholds["meteor_mse"])
    check_retraining(model, train_data, epochs=20, seed=0).decreases()
    check_claim(test_accs, "test_accs").agrees_with(replayed_accs, atol=0.15)
"""

from autograders.checks.array_checks import (
    ArrayCheck,
    FrameCheck,
    ValueCheck,
    check_array,
    check_frame,
    check_value,
)
from autograders.checks.base import (
    NOT_SHOWN,
    Hidden,
    Threshold,
    compare,
    fail,
    from_student,
    record_metric,
    reveal,
    take_metrics,
)
from autograders.checks.convergence import (
    HistoryCheck,
    check_history,
    check_retraining,
    fresh_copy,
    kendall_tau,
    retrain,
    training_setup,
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
from autograders.checks.replay import (
    ClaimCheck,
    Replay,
    check_claim,
    check_final_loss,
    check_history_fits_model,
    check_is_history,
    check_predictions,
    predict,
    replay_fit,
    variant,
    weight_distance,
    with_batch_statistics,
)
from autograders.results import CheckFailure

__all__ = [
    "METRICS",
    "NOT_SHOWN",
    "ArrayCheck",
    "CheckFailure",
    "ClaimCheck",
    "FrameCheck",
    "Hidden",
    "HistoryCheck",
    "LayerCheck",
    "LayerSpec",
    "MetricCheck",
    "ModelCheck",
    "Replay",
    "Threshold",
    "ValueCheck",
    "check_array",
    "check_claim",
    "check_final_loss",
    "check_frame",
    "check_history",
    "check_history_fits_model",
    "check_is_history",
    "check_metric",
    "check_model",
    "check_predictions",
    "check_retraining",
    "check_value",
    "compare",
    "compute_metric",
    "dense",
    "fail",
    "fresh_copy",
    "from_student",
    "kendall_tau",
    "layer_spec",
    "predict",
    "record_metric",
    "replay_fit",
    "retrain",
    "reveal",
    "take_metrics",
    "training_setup",
    "unpack_data",
    "variant",
    "weight_distance",
    "with_batch_statistics",
]
