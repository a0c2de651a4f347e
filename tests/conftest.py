"""Shared fixtures: the first assignment, an isolated DEEPGRADE_HOME, notebook surgery, the
session's one private Docker engine (``engine``, from ``tests/dockertools.py``) and the course
validation that runs beside the suite (``course_proof``, from ``tests/course_proof.py``)."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from autograders.assignment import Assignment
from tests.course_proof import (  # noqa: F401 -- the background course validation (a plugin)
    course_proof,
    pytest_collection_modifyitems,
    pytest_terminal_summary,
    pytest_unconfigure,
)
from tests.dockertools import engine  # noqa: F401 -- defined here once, so one dockerd serves every module

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The test deployment's split keys (public, see the file): every process the suite starts inherits them.
os.environ.setdefault("DEEPGRADE_SPLIT_SECRET", str(Path(__file__).with_name("split-secret.yaml")))
FIRST = "keras-intro/01-introducing-keras"


@pytest.fixture(scope="session")
def first_assignment() -> Assignment:
    return Assignment.load(FIRST)


@pytest.fixture(scope="session", autouse=True)
def deepgrade_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Gradebooks written by tests go to a temporary home, never into the checkout."""
    home = tmp_path_factory.mktemp("deepgrade-home")
    os.environ["DEEPGRADE_HOME"] = str(home)
    return home


def copy_assignment(assignment: Assignment, dest: Path, **config_changes) -> Assignment:
    """A private copy of an assignment (same course/name layout) with config overrides."""
    target = dest / assignment.course / assignment.name
    shutil.copytree(assignment.path, target, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((target / "assignment.yaml").read_text())
    for key, value in config_changes.items():
        config[key] = value
    (target / "assignment.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Assignment.load(target)


def edited_notebook(assignment: Assignment, dest: Path, edit: Callable[[nbformat.NotebookNode], None]) -> Path:
    """The reference notebook with ``edit`` applied to it, written to ``dest``."""
    nb = nbformat.read(assignment.source_notebook, as_version=4)
    edit(nb)
    nbformat.write(nb, dest)
    return dest


def cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP port on the host's loopback that accepts connections: sandboxes must not reach it."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()
