"""The pytest plugin that turns an assignment's test module into a grader.

Loaded with ``-p autograders.plugin`` by the trusted checker process only. It provides
the fixtures autograder tests ask for (``model``, ``history``, ``arrays``, ``values``,
``thresholds``, ``submission``, ``assignment``; ``train_data`` and ``hidden_data`` come
from the assignment's own conftest), seeds everything, and records one
:class:`CheckResult` per test. Tracebacks and test source never reach the results.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autograders.artifacts import Submission
from autograders.assignment import Assignment
from autograders.checks.base import take_metrics
from autograders.results import CheckFailure, CheckResult

_results: dict[str, CheckResult] = {}
_problems: list[str] = []
_flags: list[dict[str, Any]] = []  # audits that failed: for the instructor, never the student


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("deepgrade")
    group.addoption("--deepgrade-artifacts", help="folder with the submission's exported artifacts")
    group.addoption("--deepgrade-results", help="where to write the JSON check results")
    group.addoption("--deepgrade-assignment", help="the assignment folder")
    group.addoption("--deepgrade-seed", type=int, default=0)
    group.addoption("--deepgrade-calibrate", action="store_true", help="record metrics, pass thresholds")
    group.addoption("--deepgrade-exercise", help="run only the checks of this grade cell (formative checks)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "grades(grade_id, points, public=False): the grade cell a check scores")
    config.addinivalue_line("markers", "audits(grade_id): a check that only raises a flag for the instructor")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    seed = config.getoption("--deepgrade-seed")
    random.seed(seed)
    np.random.seed(seed)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Public checks use no hidden material (else a problem, which fails the course proof), and
    ``--deepgrade-exercise`` keeps one grade cell's checks only."""
    from autograders.formative import forbidden_fixtures

    for item in items:
        marker = item.get_closest_marker("grades")
        if marker is not None and marker.kwargs.get("public"):
            bad = forbidden_fixtures(getattr(item, "fixturenames", ()))
            if bad:
                _problems.append(f"{item.name} is public but uses {', '.join(bad)}: a public check may only "
                                 "use the student's own exported objects")
    exercise = config.getoption("--deepgrade-exercise")
    if exercise:
        keep = [i for i in items if (m := i.get_closest_marker("grades")) is not None and m.args[0] == exercise]
        config.hook.pytest_deselected(items=[i for i in items if i not in keep])
        items[:] = keep


def pytest_collection_finish(session: pytest.Session) -> None:
    """Seeds Keras only for assignments that use it, so numpy-only checks skip the TF import."""
    artifacts = session.config.getoption("--deepgrade-artifacts")
    # one level per grade cell, never a recursive walk: the folder is the student's, of any depth
    has_models = bool(artifacts) and any(Path(artifacts).glob("artifacts/*/*.keras"))
    if "keras" in sys.modules or has_models:
        import keras
        import tensorflow as tf

        keras.utils.set_random_seed(session.config.getoption("--deepgrade-seed"))
        tf.config.experimental.enable_op_determinism()


def _option(request: pytest.FixtureRequest, name: str) -> Any:
    value = request.config.getoption(name)
    if value is None:
        pytest.fail(f"{name} is required to run autograder tests", pytrace=False)
    return value


def _grade_id(request: pytest.FixtureRequest) -> str:
    marker = request.node.get_closest_marker("grades") or request.node.get_closest_marker("audits")
    if marker is None:
        pytest.fail("this autograder test has no @grades(...) marker", pytrace=False)
    return marker.args[0]


@pytest.fixture(scope="session")
def submission(request: pytest.FixtureRequest) -> Submission:
    return Submission(Path(_option(request, "--deepgrade-artifacts")))


@pytest.fixture(scope="session")
def assignment(request: pytest.FixtureRequest) -> Assignment:
    return Assignment.load(Path(_option(request, "--deepgrade-assignment")))


@pytest.fixture(scope="session")
def thresholds(request: pytest.FixtureRequest, assignment: Assignment):
    return assignment.thresholds(calibrating=request.config.getoption("--deepgrade-calibrate"))


@pytest.fixture(scope="session")
def seed(request: pytest.FixtureRequest) -> int:
    return request.config.getoption("--deepgrade-seed")


class Exported:
    """The named objects one grade cell exported, loaded lazily: ``arrays["weights"]``."""

    def __init__(self, submission: Submission, grade_id: str, kind: str):
        self._submission, self._grade_id, self._kind = submission, grade_id, kind

    def __getitem__(self, name: str) -> Any:
        return self._submission.get(self._grade_id, name, expect=self._kind)

    def __contains__(self, name: str) -> bool:
        try:
            return name in self._submission.manifest(self._grade_id)
        except CheckFailure:
            return False


@pytest.fixture
def model(request: pytest.FixtureRequest, submission: Submission) -> Any:
    return submission.get(_grade_id(request), "model", expect="model")


@pytest.fixture
def history(request: pytest.FixtureRequest, submission: Submission) -> dict[str, list[float]]:
    return submission.get(_grade_id(request), "history", expect="history")


@pytest.fixture
def models(request: pytest.FixtureRequest, submission: Submission) -> Exported:
    return Exported(submission, _grade_id(request), "model")


@pytest.fixture
def arrays(request: pytest.FixtureRequest, submission: Submission) -> Exported:
    return Exported(submission, _grade_id(request), "array")


@pytest.fixture
def values(request: pytest.FixtureRequest, submission: Submission) -> Exported:
    return Exported(submission, _grade_id(request), "value")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    audit = item.get_closest_marker("audits")
    if audit is not None:
        if report.failed and call.excinfo is not None:
            _flags.append(_flag(item.name, audit.args[0], call.excinfo.value))
        return
    marker = item.get_closest_marker("grades")
    if marker is None:
        if report.when == "setup":
            _problems.append(f"{item.name} has no @grades(...) marker")
        return
    if report.when == "setup" or item.nodeid not in _results:
        _results.setdefault(item.nodeid, CheckResult(
            id=item.name, grade_id=marker.args[0], points=float(marker.kwargs.get("points", 0)),
            passed=False, description=(item.function.__doc__ or "").strip().split("\n")[0]))
    result = _results[item.nodeid]
    if report.when == "call" and report.passed:
        result.passed = True
        result.message = "passed"
    if report.failed and call.excinfo is not None:
        result.passed = False
        _explain(result, call.excinfo.value)
    if report.when == "teardown":
        result.metrics = take_metrics()


def _flag(check: str, grade_id: str, exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CheckFailure):
        return {"check": check, "grade_id": grade_id, "message": exc.message,
                "measured": exc.measured, "expected": exc.expected}
    first = str(exc).strip().split("\n")[0][:300]
    return {"check": check, "grade_id": grade_id, "message": f"the audit could not run ({type(exc).__name__}: {first})"}


def _explain(result: CheckResult, exc: BaseException) -> None:
    if isinstance(exc, CheckFailure):
        result.message, result.hint = exc.message, exc.hint
        result.measured, result.expected = exc.measured, exc.expected
    elif isinstance(exc, AssertionError):
        result.message = "the check failed"
    else:
        # Only the exception type and its first line: enough to act on, no hidden test source.
        first = str(exc).strip().split("\n")[0][:300]
        result.message = f"checking raised {type(exc).__name__}: {first}"
        result.hint = "your object could not be used as the exercise expects; compare its shape and type with the instructions"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _problems.append(f"could not collect {report.nodeid}: {str(report.longrepr).splitlines()[-1][:300]}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = session.config.getoption("--deepgrade-results")
    if not path:
        return
    data = {"checks": [r.to_dict() for r in _results.values()], "problems": _problems, "flags": _flags}
    Path(path).write_text(json.dumps(data, indent=1))
