"""The bridge to nbgrader: its notebook format, ``generate_assignment`` and its gradebook.

We keep nbgrader's course directory layout (``source/``, ``release/``, ``gradebook.db``, or a
PostgreSQL gradebook with ``DEEPGRADE_GRADEBOOK_URL``) so that ``nbgrader export`` and the
formgrader keep working, but scores come from deepgrade's trusted checker, never from
nbgrader's in-kernel autograde.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from autograders.assignment import Assignment, repo_root
from autograders.formative import write_public_checks


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


def _api(root: Path, course: str, db_url: str | None = None):
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    config = Config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.course_id = course
    if db_url:
        config.CourseDirectory.db_url = db_url
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def generate(assignment: Assignment, root: Path | None = None, db_url: str | None = None) -> Path:
    """Run ``nbgrader generate_assignment``; returns the student notebook it wrote.

    With no ``root``, it works in a temporary course directory and copies the result to
    the assignment's ``release/`` folder. ``db_url`` is the gradebook it registers the
    assignment in (default: ``gradebook.db`` in the course directory).
    """
    with contextlib.ExitStack() as stack:
        work = root or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="deepgrade-gen-")))
        source = work / "source" / assignment.name
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(assignment.source_notebook, source / assignment.source_notebook.name)
        with _nbgrader_env():
            outcome = _api(work, assignment.course, db_url).generate_assignment(assignment.name, force=True, create=True)
        if not outcome.get("success"):
            raise RuntimeError(f"nbgrader generate_assignment failed for {assignment.id}:\n"
                               f"{outcome.get('error') or outcome.get('log')}")
        released = work / "release" / assignment.name / assignment.source_notebook.name
        if root is None:
            assignment.release_notebook.parent.mkdir(exist_ok=True)
            shutil.copy2(released, assignment.release_notebook)
        # the checks marked public (and nothing else of the tests) travel with the release
        write_public_checks(assignment.tests_dir, (released if root else assignment.release_notebook).parent,
                            assignment.id)
        return released if root else assignment.release_notebook


def gradebook_url(course: str, root: Path | None = None) -> str:
    """The gradebook's database URL: ``DEEPGRADE_GRADEBOOK_URL`` (``{course}`` is replaced by
    the course id), else the SQLite file ``<course root>/gradebook.db`` nbgrader uses by default.

    Several workers on different machines share a PostgreSQL gradebook; a SQLite file only
    works for workers that share one disk. Give each course its own database (put
    ``{course}`` in the database name): nbgrader's assignment names are unique per gradebook,
    not per course, so two courses with an assignment of the same name cannot share one.
    """
    template = os.environ.get("DEEPGRADE_GRADEBOOK_URL")
    if template:
        return template.replace("{course}", course)
    return f"sqlite:///{(root or course_root(course)) / 'gradebook.db'}"


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql:", "postgresql+", "postgres:"))


def _ensure_database(url: str) -> None:
    """Create the course's PostgreSQL database on first use (the role needs CREATEDB), so
    that a new course needs no manual step; concurrent creators are harmless."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.pool import NullPool

    target = make_url(url)
    try:
        create_engine(target, poolclass=NullPool).connect().close()
        return
    except OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    name = target.database or ""
    admin = create_engine(target.set(database="postgres"), poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection, contextlib.suppress(ProgrammingError):  # another worker won
        quoted = connection.dialect.identifier_preparer.quote_identifier(name)
        connection.execute(text(f"CREATE DATABASE {quoted}"))
    admin.dispose()


@dataclass(frozen=True)
class Attempt:
    """One submission as the score policy sees it: ``score`` is None while it has none (not graded
    yet, or the platform failed to grade it)."""

    key: Any
    submitted_at: datetime
    score: float | None


def counting(attempts: Iterable[Attempt], policy: str) -> Attempt | None:
    """The submission that counts under ``policy``: with ``latest`` the newest with a score, with
    ``best`` the highest score (the newest of equal ones). The one rule the gradebook, the feedback
    page and the exchange all apply."""
    scored = [a for a in attempts if a.score is not None]
    if not scored:
        return None
    if policy == "best":
        return max(scored, key=lambda a: (a.score, _utc(a.submitted_at)))
    return max(scored, key=lambda a: _utc(a.submitted_at))


def policy_reason(policy: str) -> str:
    """One sentence for the student: which submission counts, and why."""
    if policy == "best":
        return ("Your best score counts: this assignment keeps the highest-scoring of your submissions, "
                "so a later, lower score does not replace it.")
    return "Your latest graded submission counts: each new submission replaces the score of the one before."


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _in_gradebook(url: str, assignment: Assignment) -> bool:
    from nbgrader.api import Gradebook, MissingEntry

    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return False
    with _nbgrader_env(), Gradebook(url, course_id=assignment.course) as gb:
        try:
            gb.find_notebook(assignment.notebook_name, assignment.name)
            return True
        except MissingEntry:
            return False


def record(assignment: Assignment, student: str, grade_cells: dict[str, float],
           root: Path | None = None, timestamp: datetime | None = None) -> Path | str | None:
    """Write one submission's per-grade-cell scores into nbgrader's gradebook.

    Workers grade in parallel, possibly on several machines, so writes are serialised (a
    PostgreSQL advisory lock for a PostgreSQL gradebook, a file lock for a SQLite file). The
    gradebook holds one submission per student: the one the assignment's score policy counts
    (:func:`counting`), whatever order the gradings finish in. A submission the policy does not
    prefer to the recorded one is not written (returns None): with ``latest``, one older than it;
    with ``best``, one that scores less. A regrade of the recorded submission (same timestamp)
    always replaces it. Returns the SQLite file, or the PostgreSQL URL without its password.
    """
    from nbgrader.api import Gradebook, MissingEntry
    from sqlalchemy.engine import make_url

    root = root or course_root(assignment.course)
    root.mkdir(parents=True, exist_ok=True)
    url = gradebook_url(assignment.course, root)
    postgres = _is_postgres(url)
    # nbgrader's DateTime columns are naive: store UTC, whatever the database server's zone
    when = (timestamp or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    lock = _advisory_locked(url, assignment.course) if postgres else _locked(root / ".gradebook.lock")
    with lock, warnings.catch_warnings():
        # nbgrader's own session handling warns about autoflush on every new submission
        warnings.filterwarnings("ignore", message=".*not in session.*")
        if not _in_gradebook(url, assignment):
            generate(assignment, root, db_url=url)
        with _nbgrader_env(), Gradebook(url, course_id=assignment.course) as gb:
            gb.update_or_create_student(student)
            with contextlib.suppress(MissingEntry):
                recorded = gb.find_submission(assignment.name, student)
                stamp = recorded.timestamp.replace(tzinfo=None) if recorded.timestamp else None
                if stamp is not None and stamp != when:
                    kept = Attempt("recorded", stamp, float(recorded.score))
                    if counting([kept, Attempt("new", when, float(sum(grade_cells.values())))],
                                assignment.score_policy) is kept:
                        return None
            gb.update_or_create_submission(assignment.name, student, timestamp=when)
            for grade_id, score in grade_cells.items():
                grade = gb.find_grade(grade_id, assignment.notebook_name, assignment.name, student)
                grade.auto_score = score
                # nbgrader's own rule (SaveAutoGrades): scored by the grader, no manual grade to review
                grade.needs_manual_grade = grade.manual_score is not None
            gb.db.commit()
    return make_url(url).render_as_string(hide_password=True) if postgres else root / "gradebook.db"


@contextlib.contextmanager
def _advisory_locked(url: str, course: str) -> Iterator[None]:
    """A PostgreSQL session lock for the course's gradebook: unlike ``flock`` it holds across
    machines, and the server releases it if the worker dies."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    _ensure_database(url)
    key = int.from_bytes(hashlib.sha256(f"deepgrade-gradebook:{course}".encode()).digest()[:8], "big", signed=True)
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lay_out(root: Path, student: str, assignment: Assignment, files: Path, work: Path, when: datetime,
            extra: dict[str, str] | None = None) -> None:
    """nbgrader's folders for the formgrader, the one place that writes them: ``submitted/`` (as
    received, plus ``extra`` files), ``autograded/`` (as executed, with the same timestamp, which is
    how nbgrader tells it is graded) and ``feedback/``. What came from the student is copied through
    the untrusted reader: regular files only, capped, never a link."""
    from autograders.execute import EXECUTED
    from autograders.sandbox import remove_tree
    from autograders.untrusted import MAX_NOTEBOOK_BYTES, copy_out, copy_tree

    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    notebook = f"{assignment.notebook_name}.ipynb"
    folders = {kind: root / kind / student / assignment.name for kind in ("submitted", "autograded", "feedback")}
    kinds = ["autograded"] if folders["submitted"].resolve() == Path(files).resolve() else ["submitted", "autograded"]
    for kind in kinds:  # `deepgrade autograde` grades submitted/ where it lies: that one stays
        remove_tree(folders[kind])
        folders[kind].mkdir(parents=True)
    if "submitted" in kinds:
        copy_tree(files, folders["submitted"])
    for name, text in (extra or {}).items():
        (folders["submitted"] / name).write_text(text)
    if not copy_out(work / "sandbox", EXECUTED, folders["autograded"] / notebook, MAX_NOTEBOOK_BYTES):
        copy_out(files, notebook, folders["autograded"] / notebook, MAX_NOTEBOOK_BYTES)
    feedback = work / "feedback.html"
    if feedback.is_file():
        folders["feedback"].mkdir(parents=True, exist_ok=True)
        shutil.copy2(feedback, folders["feedback"] / f"{assignment.notebook_name}.html")
        (folders["feedback"] / "timestamp.txt").write_text(stamp)
    for kind in ("submitted", "autograded"):
        (folders[kind] / "timestamp.txt").write_text(stamp)
