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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    func,
    select,
    update,
)
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


class Job(Base):
    """One request to grade one submission: the durable source of truth for every queue backend.

    ``attempt`` is a fencing token: a worker claims a job by raising it, and only the holder
    of the current attempt may finish it, so a job killed half-way is retried and never
    counted twice. ``lease_until`` is renewed by the worker's heartbeat; once it lapses,
    any worker may claim the job again.
    """

    __tablename__ = "grading_jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), index=True)
    course: Mapped[str] = mapped_column(String(128))
    assignment: Mapped[str] = mapped_column(String(128))
    student: Mapped[str] = mapped_column(String(128), index=True)
    requested_by: Mapped[str] = mapped_column(String(128))  # the student on submit, or an instructor
    state: Mapped[str] = mapped_column(String(16), index=True, default="queued")
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    result: Mapped[str | None] = mapped_column(Text, nullable=True)  # result.json of the grading


JOB_STATES = ("queued", "grading", "graded", "failed")
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class JobInfo:
    id: int
    submission_id: int
    course: str
    assignment: str
    student: str
    state: str
    attempt: int
    not_before: datetime
    score: float | None
    max_score: float | None
    message: str

    @property
    def done(self) -> bool:
        return self.state in ("graded", "failed")

    def describe(self) -> str:
        """One line a student understands: what happened to their submission."""
        if self.state == "graded":
            return f"graded: {self.score:g} / {self.max_score:g}"
        if self.state == "failed":
            return f"failed: {self.message}"
        if self.state == "queued" and self.not_before > datetime.now(UTC):
            return f"queued: {self.message}"
        return self.state


def _job_info(job: Job) -> JobInfo:
    return JobInfo(job.id, job.submission_id, job.course, job.assignment, job.student, job.state, job.attempt,
                   _utc(job.not_before), job.score, job.max_score, job.message or "")


@dataclass(frozen=True)
class SubmissionInfo:
    id: int
    course: str
    assignment: str
    student: str
    submitted_at: datetime
    feedback: tuple[str, ...]  # notebooks with released feedback
    grading: JobInfo | None = None  # the latest grading job, if any
    finished: JobInfo | None = None  # the latest job that ended (graded or failed), if any

    def status(self) -> str:
        """What the student reads: the latest outcome, and a regrade in progress if there is one."""
        if self.grading is None:
            return "not queued"
        if self.grading.done or self.finished is None:
            return self.grading.describe()
        return f"{self.finished.describe()}; regrade {self.grading.describe()}"


class CourseStore:
    """Roster and exchange operations. Access control lives in the service, not here."""

    def __init__(self, url: str | None = None):
        url = url or default_db_url()
        options = {}
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            options["connect_args"] = {"timeout": 60}  # workers and the exchange write concurrently
        self.engine = create_engine(url, **options)
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
            db.flush()  # holds the write lock from here: read the clock again, so ids and times agree
            row.submitted_at = datetime.now(UTC)
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
            latest, finished = self._latest_jobs(db, ids)
        return [SubmissionInfo(r.id, r.course, r.assignment, r.student, _utc(r.submitted_at),
                               tuple(sorted(notebooks.get(r.id, []))), latest.get(r.id), finished.get(r.id))
                for r in rows]

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

    # -- grading jobs -----------------------------------------------------------------------
    def enqueue(self, submission_id: int, requested_by: str, per_hour: int = 0) -> JobInfo:
        """Add a grading job. ``per_hour`` > 0 caps the gradings a student's own submissions
        get per assignment in any hour: later ones wait (``not_before``), they are never dropped."""
        now = datetime.now(UTC)
        with self.session.begin() as db:
            sub = db.get(Submission, submission_id)
            if sub is None:
                raise KeyError(f"no submission {submission_id}")
            not_before, message = now, ""
            if per_hour > 0 and requested_by == sub.student:
                earlier = db.scalars(select(Job.not_before).where(
                    Job.student == sub.student, Job.course == sub.course, Job.assignment == sub.assignment,
                    Job.requested_by == sub.student).order_by(Job.not_before.desc()).limit(per_hour)).all()
                if len(earlier) == per_hour and _utc(earlier[-1]) + timedelta(hours=1) > now:
                    not_before = _utc(earlier[-1]) + timedelta(hours=1)
                    message = (f"this assignment grades at most {per_hour} submission(s) per hour; "
                               f"this one is graded after {not_before:%H:%M} UTC")
            job = Job(submission_id=sub.id, course=sub.course, assignment=sub.assignment, student=sub.student,
                      requested_by=requested_by, state="queued", enqueued_at=now, not_before=not_before,
                      message=message)
            db.add(job)
            db.flush()
            return _job_info(job)

    def claim(self, worker: str, lease: float, job_id: int | None = None) -> JobInfo | None:
        """Take the oldest due job (or ``job_id``): queued, or grading with a lapsed lease."""
        now = datetime.now(UTC)
        with self.session.begin() as db:
            query = select(Job).where(
                ((Job.state == "queued") & (Job.not_before <= now))
                | ((Job.state == "grading") & (Job.lease_until < now)))
            if job_id is not None:
                query = query.where(Job.id == job_id)
            job = db.scalars(query.order_by(Job.not_before, Job.id).limit(1)).first()
            if job is None:
                return None
            if job.attempt >= MAX_ATTEMPTS:  # it crashed its worker every time: record that and move on
                job.state, job.finished_at = "failed", now
                job.message = (f"grading was interrupted {job.attempt} times (the worker crashed or was "
                               "killed); your instructor can regrade it")
                return None
            claimed = db.execute(update(Job).where(Job.id == job.id, Job.attempt == job.attempt).values(
                state="grading", attempt=job.attempt + 1, worker=worker,
                lease_until=now + timedelta(seconds=lease))).rowcount
            if claimed != 1:  # another worker won the race
                return None
            db.refresh(job)
            return _job_info(job)

    def heartbeat(self, job: JobInfo, lease: float) -> bool:
        """Extend the lease; False when the job was taken over (this attempt is stale)."""
        with self.session.begin() as db:
            return db.execute(update(Job).where(Job.id == job.id, Job.attempt == job.attempt,
                                                Job.state == "grading").values(
                lease_until=datetime.now(UTC) + timedelta(seconds=lease))).rowcount == 1

    def finish(self, job: JobInfo, state: str, *, score: float, max_score: float, message: str,
               result: str, feedback: dict[str, bytes]) -> bool:
        """Record the outcome and publish the feedback in one transaction, fenced by the attempt."""
        now = datetime.now(UTC)
        with self.session.begin() as db:
            done = db.execute(update(Job).where(Job.id == job.id, Job.attempt == job.attempt,
                                                Job.state == "grading").values(
                state=state, score=score, max_score=max_score, message=message, result=result,
                finished_at=now, lease_until=None)).rowcount == 1
            if done:
                for notebook, html in feedback.items():
                    db.merge(Feedback(submission_id=job.submission_id, notebook=notebook, released_at=now,
                                      html=html))
            return done

    def retry(self, job: JobInfo, message: str, result: str, delay: float = 30.0) -> bool:
        """A platform error ended this attempt: queue the job again after ``delay`` seconds, or, after
        ``MAX_ATTEMPTS``, end it as failed. No score and no feedback either way; fenced like finish."""
        now = datetime.now(UTC)
        again = job.attempt < MAX_ATTEMPTS
        values = ({"state": "queued", "not_before": now + timedelta(seconds=delay),
                   "message": f"graded again shortly: the last try hit a {message}"[:1000]} if again else
                  {"state": "failed", "finished_at": now, "message": f"{message} (tried {job.attempt} times; "
                                                                     "your instructor can regrade it)"[:1000]})
        with self.session.begin() as db:
            return db.execute(update(Job).where(Job.id == job.id, Job.attempt == job.attempt,
                                                Job.state == "grading").values(
                lease_until=None, result=result, **values)).rowcount == 1

    def job(self, job_id: int) -> JobInfo | None:
        with self.session() as db:
            row = db.get(Job, job_id)
            return _job_info(row) if row else None

    def jobs(self, state: str | None = None) -> list[JobInfo]:
        query = select(Job).order_by(Job.id)
        if state:
            query = query.where(Job.state == state)
        with self.session() as db:
            return [_job_info(j) for j in db.scalars(query)]

    def job_result(self, job_id: int) -> str | None:
        with self.session() as db:
            row = db.get(Job, job_id)
            return row.result if row else None

    def latest_submissions(self, course: str, assignment: str) -> list[SubmissionInfo]:
        """Each student's newest submission of ``assignment``."""
        latest: dict[str, SubmissionInfo] = {}
        for s in self.submissions(course, assignment):
            latest[s.student] = s  # ordered by server time, so the last one wins
        return [latest[k] for k in sorted(latest)]

    def newer_graded(self, job: JobInfo) -> bool:
        """True when a later submission of the same student and assignment is already graded."""
        with self.session() as db:
            return db.scalar(select(func.count()).select_from(Job).where(
                Job.student == job.student, Job.course == job.course, Job.assignment == job.assignment,
                Job.submission_id > job.submission_id, Job.state == "graded")) > 0

    @staticmethod
    def _latest_jobs(db, submission_ids: list[int]) -> tuple[dict[int, JobInfo], dict[int, JobInfo]]:
        """(latest job, latest finished job) per submission."""
        latest: dict[int, JobInfo] = {}
        finished: dict[int, JobInfo] = {}
        if submission_ids:
            for job in db.scalars(select(Job).where(Job.submission_id.in_(submission_ids)).order_by(Job.id)):
                info = _job_info(job)
                latest[job.submission_id] = info
                if info.done:
                    finished[job.submission_id] = info
        return latest, finished


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
