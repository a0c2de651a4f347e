"""``deepgrade mutate``: the operators on solution code, and one real run over an assignment.

The operators are checked on small notebooks (fast): each touches only solution regions, keeps
the rest of the text as it was, and produces code that still parses. The real run grades a few
mutants of dl-python/01 in the sandbox and checks the report's verdicts against the grades.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograders.assignment import Assignment, find_all
from autograders.mutate import OPERATORS, marked_equivalent, mutants
from tests.conftest import copy_assignment

CELL = '''\
import keras
from keras import layers
X_train, X_test, y_train, y_test = 1, 2, 3, 4
def build():
    ### BEGIN SOLUTION
    model = keras.Sequential([
        keras.Input(shape=(8,)),
        layers.Dense(16, activation="relu"),
        layers.Dense(1, activation="sigmoid"),
    ])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    initial = model.get_weights()
    model.set_weights(initial)
    model.fit(X_train[:100], y_train[:100], epochs=10, validation_split=0.1, verbose=0)
    total = (X_train * 2).sum(axis=0)
    ### END SOLUTION
    return model
untouched = keras.Sequential([keras.Input(shape=(2,)), layers.Dense(3, activation="relu"), layers.Dense(1)])
'''


@pytest.fixture
def assignment(first_assignment, tmp_path: Path):
    """A copy of an assignment whose source notebook is one solution cell (CELL)."""
    copy = copy_assignment(first_assignment, tmp_path)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CELL, metadata={"nbgrader": {"grade_id": "model-solution", "solution": True}})]
    nbformat.write(nb, copy.source_notebook)
    return copy


def test_every_operator_changes_only_solution_code_and_keeps_it_valid(assignment) -> None:
    found = mutants(assignment)
    by_operator = {m.operator for m in found}
    wanted = {"activation", "units", "loss", "optimizer", "metric", "layer-removed", "epochs", "reset-removed",
              "validation-split", "off-by-one", "fit-on-evaluation", "axis", "arithmetic",
              "objects-for-strings", "functional-for-sequential", "batch-size", "extra-cells"}
    assert wanted <= by_operator, wanted - by_operator
    prefix, suffix = CELL.split("### BEGIN SOLUTION")[0], CELL.split("### END SOLUTION")[1]
    for mutant in found:
        if mutant.operator == "extra-cells":
            continue
        source = mutant.notebook.cells[0].source
        assert source != CELL and source.startswith(prefix) and source.endswith(suffix), mutant.id
        ast.parse(source)  # still Python
        assert mutant.diff.startswith("--- model-solution"), mutant.id
    ids = [m.id for m in found]
    assert len(ids) == len(set(ids)) and ids == [m.id for m in mutants(assignment)]  # unique and stable


def test_the_rewrites_are_what_they_say(assignment) -> None:
    code = {m.operator: m.notebook.cells[0].source for m in mutants(assignment) if m.kind == "equivalent"
            and m.operator != "extra-cells"}
    assert 'keras.Model(inputs, layers.Dense(1, activation="sigmoid")(layers.Dense(16, activation="relu")(inputs)))' \
        in code["functional-for-sequential"]
    assert "untouched = keras.Sequential" in code["functional-for-sequential"]  # outside the solution
    assert "batch_size=64" in code["batch-size"]
    fit_on_test = next(m for m in mutants(assignment, ["fit-on-evaluation"]))
    assert "model.fit(X_test[:100]" in fit_on_test.notebook.cells[0].source


def test_operators_are_documented() -> None:
    assert all(op.doc and op.kind in ("behaviour", "equivalent") for op in OPERATORS.values())


def test_a_real_run_grades_mutants_and_sorts_them(tmp_path: Path) -> None:
    """dl-python/01, graded for real: swapped arguments must lose points (killed), the extra cells keep
    full marks, and the JSON report says so."""
    out = tmp_path / "report.json"
    run = subprocess.run([sys.executable, "-m", "autograders.cli", "mutate", "dl-python/01-basics-with-numpy",
                          "--operators", "arguments-swapped,extra-cells", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert out.exists(), run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["behaviour_changing"] == 2 and report["killed"] == 2 and report["mutation_score"] == 1.0, report
    assert report["rewrites_kept"] == ["extra-cells@notebook#0"] and report["rewrites_lost"] == [], report
    assert run.returncode == 0 and "mutation score 100%" in run.stdout


@pytest.mark.parametrize("assignment_id", [a.id for a in find_all() if marked_equivalent(a)])
def test_marked_equivalent_mutants_still_exist_and_say_why(assignment_id: str) -> None:
    """An author's verdict names a mutant the notebook still produces, with its reason: a changed
    notebook cannot leave a stale mark that hides a new survivor."""
    assignment = Assignment.load(assignment_id)
    produced = {m.id for m in mutants(assignment) if m.kind == "behaviour"}
    for mutant_id, reason in marked_equivalent(assignment).items():
        assert mutant_id in produced, f"{assignment_id}: {mutant_id} is no longer a mutant of the notebook"
        assert len(reason.split()) >= 5, f"{assignment_id}: say why {mutant_id} is equivalent"
