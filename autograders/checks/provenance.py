"""Provenance: was a model trained on rows it was never given?

Some course datasets are public in full elsewhere (scikit-learn ships the digits, MNIST and
Titanic are everywhere), so keeping the hidden rows secret cannot stop a student who trains on a
full copy: their model then scores on the hidden rows like on training rows. The checker can tell,
because it owns the public rows: it retrains the submitted architecture on them (seeded, as the
exercise prescribes) and compares. A submission far better on the hidden rows than both its own
retraining and the reference's best is *suspicious*, not proven guilty (a lucky seed, a better
idea), so this is an audit (:func:`autograders.audits`): it raises a flag with the evidence for the
instructor and changes no points.
"""

from __future__ import annotations

from typing import Any

from .base import fail
from .metrics import _LOWER_IS_BETTER, _canonical_metric, check_metric


def retrained_score(model: Any, public: Any, hidden: Any, metric: str, *, epochs: int, batch_size: int = 32,
                    seed: int = 0) -> float | None:
    """The metric on ``hidden`` of a fresh copy of ``model``'s architecture, compiled like it and
    fitted on ``public``; None when the architecture cannot be copied (a subclassed model)."""
    import keras

    try:
        fresh = keras.models.clone_model(model)
        optimizer = type(model.optimizer).from_config(model.optimizer.get_config())
        fresh.compile(optimizer=optimizer, loss=model.loss)
    except Exception:  # any model Keras cannot clone: fall back to the reference alone
        return None
    keras.utils.set_random_seed(seed)
    x, y = public
    fresh.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    return check_metric(fresh, hidden, metric).value


def check_provenance(model: Any, public: Any, hidden: Any, metric: str, *, reference_best: float, epochs: int,
                     batch_size: int = 32, margin: float = 0.05, seed: int = 0) -> None:
    """Flag a model whose ``metric`` on ``hidden`` beats, by more than ``margin``, both the same
    architecture retrained here on ``public`` and the best reference seed (``reference_best``)."""
    name = _canonical_metric(metric)
    measured = check_metric(model, hidden, name).value
    retrained = retrained_score(model, public, hidden, name, epochs=epochs, batch_size=batch_size, seed=seed)
    lower_is_better = name in _LOWER_IS_BETTER
    sign = -1.0 if lower_is_better else 1.0
    bounds = [reference_best] + ([retrained] if retrained is not None else [])
    ceiling = max(sign * b for b in bounds) + margin
    if sign * measured > ceiling:
        against = f"the same architecture retrained here on the public rows reaches {retrained:.3f}, " \
            if retrained is not None else ""
        fail(f"suspicious: trained on held-out data? {name} on the hidden rows is {measured:.3f}; "
             f"{against}the reference's best seed {reference_best:.3f}",
             measured=round(measured, 4), expected=f"{'at least' if lower_is_better else 'at most'} "
             f"{sign * ceiling:.3f}", hint="ask the student how the model was trained; compare the notebook's "
             "data loading with the exercise")
