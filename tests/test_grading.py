"""The grading spine end to end on the first assignment, with real kernels, real nbgrader
and the bubblewrap sandbox: bad input, the CLI, the gradebook, feedback and the proofs."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import datasets
from autograders.assignment import Assignment
from autograders.runner import grade
from autograders.sandbox import ProcessSandbox
from autograders.validate import Job, run_jobs
from tests.conftest import FIRST, cell, copy_assignment, edited_notebook

FULL = 15.0


def _check(result: dict, check_id: str) -> dict:
    return next(c for c in result["checks"] if c["id"] == check_id)


def _failed(result: dict) -> set[str]:
    return {c["id"] for c in result["checks"] if not c["passed"]}


def _replace(grade_id: str, old: str, new: str):
    def edit(nb):
        target = cell(nb, grade_id)
        assert old in target.source
        target.source = target.source.replace(old, new)
    return edit


def _delete(grade_id: str):
    def edit(nb):
        nb.cells.remove(cell(nb, grade_id))
    return edit


def _retype(grade_id: str):
    def edit(nb):
        index = nb.cells.index(cell(nb, grade_id))
        old = nb.cells[index]
        nb.cells[index] = nbformat.v4.new_markdown_cell(old.source, metadata=old.metadata)
    return edit


def _duplicate(grade_id: str):
    def edit(nb):
        index = nb.cells.index(cell(nb, grade_id))
        nb.cells.insert(index + 1, nbformat.from_dict(json.loads(json.dumps(nb.cells[index]))))
    return edit


BAD_INPUTS = {
    "deleted-autograder-cell": _delete("hello-nets"),
    "edited-autograder-cell": _replace("meteor-model", "model=orbit_model", "model=hello_model"),
    "retyped-autograder-cell": _retype("counting"),
    "duplicated-autograder-cell": _duplicate("build-as-shown"),
    "missing-variable": _replace("build-as-shown-solution", "shown_model =", "my_model ="),
    "not-a-model": _replace("build-as-shown-solution", "shown_model = keras.Sequential(",
                            "shown_model = 'a model'\n_unused = ("),
    "exception": _replace("counting-solution", "count_model = keras.Sequential(",
                          "raise ValueError('student bug')\ncount_model = keras.Sequential("),
    # Loops that wait rather than spin: the limits under test are wall-clock ones, and a spinning
    # loop would only take CPU from the rest of the suite (test_sandbox proves the CPU quota).
    "infinite-loop": _replace("build-as-shown-solution", "shown_model = keras.Sequential(",
                              "import time\nwhile True:\n    time.sleep(0.1)\nshown_model = keras.Sequential("),
}


@pytest.fixture(scope="module")
def bad_results(first_assignment: Assignment, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Grade every bad submission once, two at a time, with a short per-cell limit."""
    tmp = tmp_path_factory.mktemp("bad")
    quick = copy_assignment(first_assignment, tmp / "assignments",
                            limits={"time": 240, "cell_timeout": 60, "check_time": 240})
    jobs = [Job(quick, name, edited_notebook(quick, tmp / f"{name}.ipynb", edit), 1) for name, edit in BAD_INPUTS.items()]
    return {job.label: job.result for job in run_jobs(jobs, workers=2, base=tmp / 'runs')}


def test_malformed_json_is_recorded_not_crashed(first_assignment: Assignment, tmp_path: Path) -> None:
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [ {"cell_type": "code", ')
    result = grade(broken, first_assignment, workdir=tmp_path / "out")
    assert result["status"] == "error" and result["score"] == 0
    assert "not valid notebook JSON" in result["message"]
    assert result["max_score"] == FULL  # the outcome still lists what was at stake
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "error"
    assert (tmp_path / "out" / "feedback.html").exists()


def test_non_utf8_notebook_is_recorded(first_assignment: Assignment, tmp_path: Path) -> None:
    broken = tmp_path / "latin1.ipynb"
    broken.write_bytes(b'{"cells": [], "metadata": {"title": "caf\xe9"}}')
    result = grade(broken, first_assignment, workdir=tmp_path / "out")
    assert result["status"] == "error" and "UTF-8" in result["message"]


@pytest.mark.parametrize("name", ["deleted-autograder-cell", "edited-autograder-cell",
                                  "retyped-autograder-cell", "duplicated-autograder-cell"])
def test_tampered_autograder_cells_are_restored(bad_results: dict, name: str) -> None:
    result = bad_results[name]
    assert result["status"] == "graded"
    assert result["score"] == FULL, _failed(result)
    assert result["integrity"], "the repair must be recorded"
    word = {"deleted": "deleted", "edited": "edited", "retyped": "changed to markdown",
            "duplicated": "appeared twice"}[name.split("-")[0]]
    assert any(word in note for note in result["integrity"]), result["integrity"]


def test_missing_variable_names_the_error(bad_results: dict) -> None:
    result = bad_results["missing-variable"]
    assert _failed(result) == {"test_shown_architecture"}
    message = _check(result, "test_shown_architecture")["message"]
    assert "NameError" in message and "shown_model" in message
    assert result["score"] == FULL - 1


def test_object_that_is_not_a_model(bad_results: dict) -> None:
    result = bad_results["not-a-model"]
    check = _check(result, "test_shown_architecture")
    assert not check["passed"] and "not a Keras model" in check["message"] and check["hint"]
    assert result["score"] == FULL - 1


def test_exception_in_student_code_costs_only_its_cell(bad_results: dict) -> None:
    result = bad_results["exception"]
    assert _failed(result) == {"test_count_architecture", "test_count_model_parameters", "test_count_answer"}
    assert "ValueError: student bug" in _check(result, "test_count_architecture")["message"]
    assert result["score"] == FULL - 3


def test_infinite_loop_is_interrupted_and_the_rest_graded(bad_results: dict) -> None:
    result = bad_results["infinite-loop"]
    assert result["status"] == "graded"
    assert "stopped after 60 s" in result["message"]
    assert _failed(result) == {"test_shown_architecture"}
    assert "CellTimeout" in _check(result, "test_shown_architecture")["message"]


def test_whole_notebook_time_limit(first_assignment: Assignment, tmp_path: Path) -> None:
    slow = copy_assignment(first_assignment, tmp_path / "a", limits={"time": 30, "cell_timeout": 600})
    notebook = edited_notebook(slow, tmp_path / "loop.ipynb", _replace(
        "hello-nets-solution", "hello_model = keras.Sequential(",
        "import time\nwhile True:\n    time.sleep(0.1)\nhello_model = keras.Sequential("))
    result = grade(notebook, slow, workdir=tmp_path / "out")
    assert "killed after 30 s" in result["message"]
    assert result["execution"]["timed_out"] and result["score"] == 0
    assert (tmp_path / "out" / "result.json").exists()


def test_cli_grades_reference_into_gradebook_with_feedback(first_assignment: Assignment, tmp_path: Path) -> None:
    course = tmp_path / "course"
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "autograders.cli", "grade", str(first_assignment.source_notebook),
                           "--assignment", FIRST, "--student", "ada", "--course-dir", str(course),
                           "--output", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "score 15 / 15" in proc.stdout and "test_meteor_generalizes" in proc.stdout
    # nbgrader's own export reads the score back out of its gradebook
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "export", f"--CourseDirectory.root={course}",
                    f"--CourseDirectory.course_id={first_assignment.course}"],
                   cwd=course, env=env, check=True, capture_output=True, timeout=300)
    rows = list(csv.DictReader((course / "grades.csv").open()))
    assert [(r["student_id"], float(r["score"]), float(r["max_score"])) for r in rows] == [("ada", FULL, FULL)]
    # feedback: results, a learning curve, the student's own outputs; no hidden tests or data
    page = (out / "feedback.html").read_text()
    assert "15 / 15" in page and "data:image/png;base64" in page and "final training loss" in page
    hidden_tests = (first_assignment.tests_dir / "test_introducing_keras.py").read_text()
    assert "def test_" not in page and "check_metric(" not in page
    assert not any(line.strip() in page for line in hidden_tests.splitlines() if len(line.strip()) > 30)
    hidden = datasets.hidden_split("keras-intro/orbit")
    assert not any(repr(float(v)) in page for v in hidden["y"].head(50))
    feedback = json.loads((out / "feedback.json").read_text())
    assert all({"measured", "expected", "message", "hint"} <= set(c) for c in feedback["checks"])


def test_process_sandbox_results_are_labelled(first_assignment: Assignment, tmp_path: Path) -> None:
    result = grade(first_assignment.release_notebook, first_assignment, workdir=tmp_path, sandbox=ProcessSandbox())
    assert result["isolation"].startswith("process") and "NOT ISOLATED" in result["isolation_warning"]
    assert "NOT ISOLATED" in (tmp_path / "feedback.html").read_text()
    assert result["score"] == 0 and result["status"] == "graded"


def test_calibrate_writes_distributions_and_thresholds(tmp_path: Path) -> None:
    # keras-advanced/01: thresholds and a learning curve, in 5 gradings (keras-intro/01 takes 8)
    copy = copy_assignment(Assignment.load("keras-advanced/01-functional-api"), tmp_path / "assignments")
    for spec in copy.config["thresholds"].values():
        for key in ("value", "reference", "broken"):
            spec.pop(key, None)
    copy.save()
    proc = subprocess.run([sys.executable, "-m", "autograders.cli", "calibrate", str(copy.path), "--seeds", "2"],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calibrated = Assignment.load(copy.path)
    for spec in calibrated.config["thresholds"].values():
        assert len(spec["reference"]["values"]) == 2
        worst, value = spec["reference"]["worst"], spec["value"]
        assert (value >= worst > 0) if spec["direction"] == "below" else (worst >= value > 0), spec
        assert spec["broken"], "planted mistakes are measured against each threshold"
    assert calibrated.reference_curves, "the reference's learning-curve band is stored"
