"""The bridge to nbgrader: its notebook format, ``generate_assignment`` and its gradebook.

We keep nbgrader's course directory layout (``source/``, ``release/``, ``gradebook.db``)
so that ``nbgrader export`` and the formgrader keep working, but scores come from
deepgrade's trusted checker, never from nbgrader's in-kernel autograde.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from autograders.assignment import Assignment, repo_root


def course_root(course: str) -> Path:
    """nbgrader course directory for ``course`` under ``DEEPGRADE_HOME`` (default ``.deepgrade``)."""
    home = Path(os.environ.get("DEEPGRADE_HOME", repo_root() / ".deepgrade"))
    return home / "courses" / course


@contextlib.contextmanager
def _nbgrader_env() -> Iterator[None]:
    """nbgrader runs ``alembic`` from PATH when it creates a gradebook."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{old}"
    try:
        yield
    finally:
        os.environ["PATH"] = old


def _api(root: Path, course: str):
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = course
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def generate(assignment: Assignment, root: Path | None = None) -> Path:
    """Run ``nbgrader generate_assignment``; returns the student notebook it wrote.

    With no ``root``, it works in a temporary course directory and copies the result to
    the assignment's ``release/`` folder.
    """
    with contextlib.ExitStack() as stack:
        work = root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deepgrade-gen-")))
        source = work / "source" / assignment.name
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(assignment.source_notebook, source / assignment.source_notebook.name)
        with _nbgrader_env():
            outcome = _api(work, assignment.course).generate_assignment(assignment.name, force=True, create=True)
        if not outcome.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment failed for {assignment.id}:\n"
                               f"{outcome.get('error') or outcome.get('log')}")
        released = work / "release" / assignment.name / assignment.source_notebook.name
        if root is None:
            assignment.release_notebook.parent.mkdir(exist_ok=True)
            shutil.copy2(released, assignment.release_notebook)
            return assignment.release_notebook
        return released


def _in_gradebook(root: Path, assignment: Assignment) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    db = root / "gradebook.db"
    if not db.exists():
        return False
    with Gradebook(f"sqlite:///{db}", course_id=assignment.course) as gb:
        try:
            gb.find_notebook(assignment.notebook_name, assignment.name)
            return True
        except MissingEntry:
            return False


def record(assignment: Assignment, student: str, grade_cells: dict[str, float],
           root: Path | None = None, timestamp: datetime | None = None) -> Path | None:
    """Write one submission's per-grade-cell scores into nbgrader's gradebook.

    Workers grade in parallel, so writes are serialised by a file lock, and a submission
    older than the one already recorded for the student is not written (returns None):
    the gradebook always holds the newest submission, whatever order the gradings finish in.
    """
    from nbgrader.api import Gradebook, MissingEntry

    root = root or course_root(assignment.course)
    root.mkdir(parents=True, exist_ok=True)
    timestamp = timestamp or datetime.now(UTC)
    with _locked(root / ".gradebook.lock"), warnings.catch_warnings():
        # nbgrader's own session handling warns about autoflush on every new submission
        warnings.filterwarnings("ignore", message=".*not in session.*")
        if not _in_gradebook(root, assignment):
            generate(assignment, root)
        with _nbgrader_env(), Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=assignment.course) as gb:
            gb.update_or_create_student(student)
            with contextlib.suppress(MissingEntry):
                recorded = gb.find_submission(assignment.name, student).timestamp
                if recorded and recorded.replace(tzinfo=UTC) > timestamp.astimezone(UTC).replace(tzinfo=UTC):
                    return None
            gb.update_or_create_submission(assignment.name, student, timestamp=timestamp)
            for grade_id, score in grade_cells.items():
                grade = gb.find_grade(grade_id, assignment.notebook_name, assignment.name, student)
                grade.auto_score = score
            gb.db.commit()
    return root / "gradebook.db"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
