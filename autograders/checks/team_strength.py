"""Checks for team-strength models (keras-advanced): the Embedding table of a possibly nested
model, its correlation with the true strengths of a simulated league (``datasets.league``), and
the sign flip that a model of ``team_1 - team_2`` must show when the two teams are swapped.

Used by the keras-advanced assignments; any model that learns one number per id with an
``Embedding`` and compares two ids can use them.
"""

from __future__ import annotations

import numpy as np

from autograders.checks import compare, fail, from_student


def embeddings(model) -> list:
    """Every Embedding layer, those inside nested models (the shared lookup) first."""
    nested, top = [], []
    with from_student("listing the model's layers"):
        children = list(model.layers)
    for layer in children:
        if type(layer).__name__ == "Embedding":
            top.append(layer)
        elif hasattr(layer, "layers"):
            nested.extend(embeddings(layer))
    return nested + top


def count_embeddings(model, expected: int = 1) -> None:
    found = embeddings(model)
    if len(found) != expected:
        names = [layer.name for layer in found]
        fail(f"the model holds {len(found)} Embedding layers {names}; expected {expected}",
             measured=len(found), expected=expected,
             hint="create the lookup once (inside team_strength_model) and call that same model on "
                  "both team inputs; a second Embedding gives every team a second, unrelated "
                  "strength")


def learned_strengths(model, n_teams: int) -> np.ndarray:
    found = embeddings(model)
    if not found:
        fail("the model has no Embedding layer, so it learns no team strengths",
             measured="no Embedding", expected="an Embedding(n_teams, 1)",
             hint="look the team ids up in layers.Embedding(input_dim=n_teams, output_dim=1)")
    with from_student("reading the Embedding's weights"):
        table = np.asarray(found[0].get_weights()[0], dtype=np.float64)
    if table.shape != (n_teams, 1):
        fail(f"the lookup table has shape {table.shape}; expected ({n_teams}, 1)",
             measured=list(table.shape), expected=[n_teams, 1],
             hint="one row per team id (input_dim=n_teams, and the ids run from 0 to n_teams - 1) "
                  "and one strength per team (output_dim=1)")
    return table[:, 0]


def check_strength_correlation(model, true: np.ndarray, threshold, n_teams: int,
                               teams: np.ndarray | None = None) -> float:
    """Pearson correlation between the learned and the true strengths, over every team or over
    ``teams`` (ids), e.g. leaving out those that another check is about."""
    learned = learned_strengths(model, n_teams)
    if teams is not None:
        learned, true = learned[teams], np.asarray(true)[teams]
    if not np.all(np.isfinite(learned)) or learned.std() == 0:
        fail("the learned strengths are not finite or all equal", measured="degenerate",
             expected="one finite strength per team",
             hint="training diverged or never ran: fit the model on the season games")
    r = float(np.corrcoef(learned, true)[0, 1])
    compare(r, threshold, "above",
            "the correlation between the learned team strengths and the true ones",
            hint="the learned strengths do not follow the true ones; the usual causes are two "
                 "separate lookups instead of one shared, a merge other than Subtract, or a fit "
                 "shorter than 5 epochs with Adam(learning_rate=0.1)")
    return r


def check_sign_flip(model, pairs: list[np.ndarray]) -> None:
    """Swapping the two teams must negate the prediction: f(a, b) = -f(b, a)."""
    a, b = pairs
    with from_student("predicting with the two-input model"):
        forward = np.asarray(model.predict([a, b], verbose=0, batch_size=4096), dtype=np.float64)
        backward = np.asarray(model.predict([b, a], verbose=0, batch_size=4096), dtype=np.float64)
    gap = float(np.max(np.abs(forward + backward))) if forward.size else 0.0
    scale = max(1.0, float(np.max(np.abs(forward))) if forward.size else 1.0)
    if not np.isfinite(gap) or gap > 1e-4 * scale:
        fail(f"swapping team_1 and team_2 does not flip the sign of the prediction "
             f"(largest |f(a, b) + f(b, a)| is {gap:.3g})", measured=gap, expected="0",
             hint="score_diff changes sign when the teams swap: look both teams up in the SAME "
                  "strength model and merge with layers.Subtract(), not Add or Concatenate")



def as_fitted(data: tuple[list, np.ndarray]) -> tuple[list, object]:
    """``(inputs, target)`` as the notebooks' ``fit`` receives them: pandas columns. Evaluated on
    these, a lookup missing its Flatten gets the loss ``fit`` measured for it (on a flat NumPy
    target its (None, 1, 1) output broadcasts, and the loss is far off), so it loses only the
    structure checks."""
    import pandas as pd

    inputs, target = data
    return [pd.Series(np.ravel(column)) for column in inputs], pd.Series(np.ravel(target))
