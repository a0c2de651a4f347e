"""The course state that hub services share: the roster and the exchange's files.

One SQL database behind SQLAlchemy: SQLite under ``DEEPGRADE_HOME`` by default, and
PostgreSQL in production (``DEEPGRADE_DB_URL``), so that the exchange works the same
on a laptop and across pods. Files travel as tar.gz archives stored in the database;
nothing is ever written to a world-writable folder, and no submission is overwritten.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import DateTime, ForeignKey, Integer, LargeBinary, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from autograders.assignment import repo_root

ROLES = ("instructor", "student")
MAX_ARCHIVE_BYTES = 50 * 1024 * 1024
MAX_ARCHIVE_FILES = 200


def data_root() -> Path:
    """Where the platform keeps its state (``DEEPGRADE_HOME``, default ``<repo>/.deepgrade``)."""
    return Path(os.environ.get("DEEPGRADE_HOME", repo_root() / ".deepgrade")).resolve()


def default_db_url() -> str:
    return os.environ.get("DEEPGRADE_DB_URL") or f"sqlite:///{data_root() / 'deepgrade.sqlite'}"


class Base(DeclarativeBase):
    pass


class Member(Base):
    """One user's role in one course."""

    __tablename__ = "roster"
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    course: Mapped[str] = mapped_column(String(128), primary_key=True)
    role: Mapped[str] = mapped_column(String(16))


class Release(Base):
    __tablename__ = "releases"
    course: Mapped[str] = mapped_column(String(128), primary_key=True)
    assignment: Mapped[str] = mapped_column(String(128), primary_key=True)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archive: Mapped[bytes] = mapped_column(LargeBinary)


class Submission(Base):
    """A submission as received: the server's clock, never the client's, dates it."""

    __tablename__ = "submissions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course: Mapped[str] = mapped_column(String(128), index=True)
    assignment: Mapped[str] = mapped_column(String(128), index=True)
    student: Mapped[str] = mapped_column(String(128), index=True)
    submitted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    archive: Mapped[bytes] = mapped_column(LargeBinary)


class Feedback(Base):
    __tablename__ = "feedback"
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    notebook: Mapped[str] = mapped_column(String(256), primary_key=True)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    html: Mapped[bytes] = mapped_column(LargeBinary)


@dataclass(frozen=True)
class SubmissionInfo:
    id: int
    course: str
    assignment: str
    student: str
    submitted_at: datetime
    feedback: tuple[str, ...]  # notebooks with released feedback


class CourseStore:
    """Roster and exchange operations. Access control lives in the service, not here."""

    def __init__(self, url: str | None = None):
        url = url or default_db_url()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine = create_engine(url)
        Base.metadata.create_all(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    # -- roster ---------------------------------------------------------------------------
    def add_member(self, username: str, role: str, courses: Iterable[str]) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self.session.begin() as db:
            for course in courses:
                db.merge(Member(username=username, course=course, role=role))

    def remove_member(self, username: str) -> int:
        with self.session.begin() as db:
            members = db.scalars(select(Member).where(Member.username == username)).all()
            for member in members:
                db.delete(member)
            return len(members)

    def memberships(self, username: str) -> dict[str, str]:
        """course -> role for one user."""
        with self.session() as db:
            rows = db.scalars(select(Member).where(Member.username == username))
            return {m.course: m.role for m in rows}

    def roster(self) -> list[Member]:
        with self.session() as db:
            return list(db.scalars(select(Member).order_by(Member.course, Member.username)))

    # -- releases -------------------------------------------------------------------------
    def release(self, course: str, assignment: str, archive: bytes) -> datetime:
        check_archive(archive)
        now = datetime.now(UTC)
        with self.session.begin() as db:
            db.merge(Release(course=course, assignment=assignment, released_at=now, archive=archive))
        return now

    def unrelease(self, course: str, assignment: str) -> bool:
        with self.session.begin() as db:
            release = db.get(Release, (course, assignment))
            if release:
                db.delete(release)
            return release is not None

    def releases(self, course: str) -> list[Release]:
        with self.session() as db:
            return list(db.scalars(select(Release).where(Release.course == course)
                                   .order_by(Release.assignment)))

    def released(self, course: str, assignment: str) -> Release | None:
        with self.session() as db:
            return db.get(Release, (course, assignment))

    # -- submissions and feedback ---------------------------------------------------------
    def submit(self, course: str, assignment: str, student: str, archive: bytes) -> SubmissionInfo:
        check_archive(archive)
        with self.session.begin() as db:
            row = Submission(course=course, assignment=assignment, student=student,
                             submitted_at=datetime.now(UTC), archive=archive)
            db.add(row)
            db.flush()
            return SubmissionInfo(row.id, course, assignment, student, row.submitted_at, ())

    def submissions(self, course: str, assignment: str | None = None,
                    student: str | None = None) -> list[SubmissionInfo]:
        query = select(Submission.id, Submission.course, Submission.assignment, Submission.student,
                       Submission.submitted_at).where(Submission.course == course)
        if assignment:
            query = query.where(Submission.assignment == assignment)
        if student:
            query = query.where(Submission.student == student)
        with self.session() as db:
            rows = db.execute(query.order_by(Submission.submitted_at, Submission.id)).all()
            notebooks: dict[int, list[str]] = {}
            ids = [r.id for r in rows]
            if ids:
                for sid, nb in db.execute(select(Feedback.submission_id, Feedback.notebook)
                                          .where(Feedback.submission_id.in_(ids))):
                    notebooks.setdefault(sid, []).append(nb)
        return [SubmissionInfo(r.id, r.course, r.assignment, r.student, _utc(r.submitted_at),
                               tuple(sorted(notebooks.get(r.id, [])))) for r in rows]

    def submission(self, submission_id: int) -> Submission | None:
        with self.session() as db:
            return db.get(Submission, submission_id)

    def add_feedback(self, submission_id: int, notebook: str, html: bytes) -> None:
        with self.session.begin() as db:
            db.merge(Feedback(submission_id=submission_id, notebook=notebook,
                              released_at=datetime.now(UTC), html=html))

    def feedback(self, submission_id: int, notebook: str) -> bytes | None:
        with self.session() as db:
            row = db.get(Feedback, (submission_id, notebook))
            return row.html if row else None


def _utc(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# -- archives --------------------------------------------------------------------------------
def pack(folder: Path, patterns: Iterable[str] = ("*",)) -> bytes:
    """A tar.gz of the plain files in ``folder`` (recursively), skipping checkpoints."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for pattern in patterns:
            for path in sorted(folder.rglob(pattern)):
                rel = path.relative_to(folder)
                if path.is_file() and not path.is_symlink() and ".ipynb_checkpoints" not in rel.parts:
                    tar.add(path, arcname=str(rel), recursive=False)
    return buffer.getvalue()


def check_archive(archive: bytes) -> list[tarfile.TarInfo]:
    """Refuse archives that are too big, or hold links, devices or paths leaving the folder."""
    if len(archive) > MAX_ARCHIVE_BYTES:
        raise ValueError(f"archive of {len(archive)} bytes is over the {MAX_ARCHIVE_BYTES} byte limit")
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ValueError(f"not a tar.gz archive: {exc}") from None
    if len(members) > MAX_ARCHIVE_FILES:
        raise ValueError(f"archive holds {len(members)} files, more than {MAX_ARCHIVE_FILES}")
    for member in members:
        if not (member.isfile() or member.isdir()):
            raise ValueError(f"archive entry {member.name!r} is not a plain file")
        if member.name.startswith("/") or ".." in Path(member.name).parts:
            raise ValueError(f"archive entry {member.name!r} leaves its folder")
    return members


def unpack(archive: bytes, dest: Path) -> list[str]:
    """Extract a checked archive into ``dest``; returns the file names."""
    check_archive(archive)
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
        return [m.name for m in tar.getmembers() if m.isfile()]


def notebooks_in(archive: bytes) -> list[str]:
    return sorted(Path(m.name).stem for m in check_archive(archive)
                  if m.isfile() and m.name.endswith(".ipynb") and "/" not in m.name)
