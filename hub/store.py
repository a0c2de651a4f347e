"""The course state that hub services share: the roster and the exchange's files.

One SQL database behind SQLAlchemy: SQLite under ``DEEPGRADE_HOME`` by default, and
PostgreSQL in production (``DEEPGRADE_DB_URL``), so that the exchange works the same
on a laptop and across pods. Files travel as tar.gz archives stored in the database;
nothing is ever written to a world-writable folder, and no submission is overwritten.

The roster is also where accounts start: an invitation (a single-use, expiring sign-up code)
for a name added without a password, and a record of each removal, which keeps that person
out until they are added again.

Archives are measured by what they expand to, never by what was sent (:class:`ExchangeLimits`,
read from the environment):

- ``DEEPGRADE_ARCHIVE_MAX_MB`` (default 100): the expanded size of one release or submission;
- ``DEEPGRADE_ARCHIVE_MAX_FILES`` (default 200): the entries in one archive;
- ``DEEPGRADE_STUDENT_QUOTA_MB`` (default 500): the expanded size of all of a student's stored
  submissions, across courses (0: no quota);
- ``DEEPGRADE_SUBMISSIONS_PER_ASSIGNMENT`` (default 50): submissions a student may store per
  assignment (0: no limit).

Both limits of one archive are checked while it is read: reading stops at the limit, and an
extraction that stops leaves nothing behind.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import IO

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from autograders.assignment import repo_root
from autograders.gradebook import Attempt

ROLES = ("instructor", "student")
MiB = 1024 * 1024
LIMIT_SETTINGS = ("DEEPGRADE_ARCHIVE_MAX_MB", "DEEPGRADE_ARCHIVE_MAX_FILES", "DEEPGRADE_STUDENT_QUOTA_MB",
                  "DEEPGRADE_SUBMISSIONS_PER_ASSIGNMENT")


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


class PendingInvitation(Base):
    """A single-use sign-up code for one roster name; only its SHA-256 digest is kept."""

    __tablename__ = "invitations"
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Removal(Base):
    """Someone taken off the roster: kept out (never re-enrolled) until they are added again."""

    __tablename__ = "removals"
    username: Mapped[str] = mapped_column(String(128), primary_key=True)
    removed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Invitation:
    """What ``deepgrade users add`` hands out: the code exists nowhere else."""

    username: str
    code: str
    expires_at: datetime

    def link(self, hub_url: str) -> str:
        return f"{hub_url.rstrip('/')}/hub/signup?invitation={self.code}"


def _digest(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


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
    # what the archive expands to, counted against the student's quota (None: stored before it was counted)
    expanded_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"
    submission_id: Mapped[int] = mapped_column(ForeignKey("submissions.id"), primary_key=True)
    notebook: Mapped[str] = mapped_column(String(256), primary_key=True)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    html: Mapped[bytes] = mapped_column(LargeBinary)


class Practice(Base):
    """A formative ``check()`` or ``hint()`` a student ran in their notebook: never a grade, only
    what the instructor's dashboard counts. The numbers are the kernel's claim, kept as such."""

    __tablename__ = "practice"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    course: Mapped[str] = mapped_column(String(128), index=True)
    assignment: Mapped[str] = mapped_column(String(128), index=True)
    student: Mapped[str] = mapped_column(String(128), index=True)
    exercise: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(8))  # "check" or "hint"
    passed: Mapped[int | None] = mapped_column(Integer, nullable=True)  # public checks passing, for a check
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


PRACTICE_KINDS = ("check", "hint")
PRACTICE_PER_ASSIGNMENT = 2000  # events kept per student and assignment: a loop in a notebook fills no disk


@dataclass(frozen=True)
class PracticeEvent:
    assignment: str
    student: str
    exercise: str
    kind: str
    passed: int | None
    total: int | None
    at: datetime


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


@dataclass(frozen=True)
class ScoredSubmission:
    """One submission in a student's score history: its server time, and the score of its latest
    finished grading (None while it has none: queued, grading, or failed on our side)."""

    id: int
    submitted_at: datetime
    state: str  # "not queued", a job state, or the finished state while a regrade runs
    score: float | None
    max_score: float | None

    @property
    def attempt(self) -> Attempt:
        return Attempt(self.id, self.submitted_at, self.score)


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
        _add_new_columns(self.engine)
        self.session = sessionmaker(self.engine, expire_on_commit=False)

    # -- roster ---------------------------------------------------------------------------
    def add_member(self, username: str, role: str, courses: Iterable[str]) -> None:
        """Enrol (or re-enrol) ``username``; this also lifts an earlier removal."""
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        with self.session.begin() as db:
            for course in courses:
                db.merge(Member(username=username, course=course, role=role))
            db.execute(delete(Removal).where(Removal.username == username))

    def remove_member(self, username: str) -> int:
        """Take ``username`` off every course, void their invitation and record the removal."""
        with self.session.begin() as db:
            members = db.scalars(select(Member).where(Member.username == username)).all()
            for member in members:
                db.delete(member)
            db.execute(delete(PendingInvitation).where(PendingInvitation.username == username))
            db.merge(Removal(username=username, removed_at=datetime.now(UTC)))
            return len(members)

    def is_removed(self, username: str) -> bool:
        with self.session() as db:
            return db.get(Removal, username) is not None

    def removed(self) -> set[str]:
        with self.session() as db:
            return set(db.scalars(select(Removal.username)))

    def invite(self, username: str, lifetime: timedelta) -> Invitation:
        """A new sign-up code for ``username`` (any earlier one stops working)."""
        code = secrets.token_urlsafe(24)
        expires_at = datetime.now(UTC) + lifetime
        with self.session.begin() as db:
            db.merge(PendingInvitation(username=username, digest=_digest(code), expires_at=expires_at))
        return Invitation(username, code, expires_at)

    def invited_name(self, code: str) -> str | None:
        """Whom a valid (unused, unexpired) code invites."""
        with self.session() as db:
            return db.scalar(select(PendingInvitation.username).where(
                PendingInvitation.digest == _digest(code), PendingInvitation.expires_at > datetime.now(UTC)))

    def redeem_invitation(self, username: str, code: str) -> bool:
        """Use up ``username``'s invitation if ``code`` is it and it has not expired: True once, at most."""
        if not code:
            return False
        with self.session.begin() as db:
            return db.execute(delete(PendingInvitation).where(
                PendingInvitation.username == username, PendingInvitation.digest == _digest(code),
                PendingInvitation.expires_at > datetime.now(UTC))).rowcount == 1

    def withdraw_invitation(self, username: str) -> None:
        with self.session.begin() as db:
            db.execute(delete(PendingInvitation).where(PendingInvitation.username == username))

    def memberships(self, username: str) -> dict[str, str]:
        """course -> role for one user."""
        with self.session() as db:
            rows = db.scalars(select(Member).where(Member.username == username))
            return {m.course: m.role for m in rows}

    def roster(self) -> list[Member]:
        with self.session() as db:
            return list(db.scalars(select(Member).order_by(Member.course, Member.username)))

    # -- releases -------------------------------------------------------------------------
    def release(self, course: str, assignment: str, archive: bytes, limits: ExchangeLimits | None = None) -> datetime:
        inspect_archive(archive, limits)
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
    def submit(self, course: str, assignment: str, student: str, archive: bytes,
               limits: ExchangeLimits | None = None) -> SubmissionInfo:
        """Keep a submission within the archive limits and the student's quotas (``TooLarge``,
        ``TooMany`` otherwise); the quotas count this submission, after it took the write lock."""
        limits = limits or ExchangeLimits.from_env()
        contents = inspect_archive(archive, limits)
        with self.session.begin() as db:
            row = Submission(course=course, assignment=assignment, student=student,
                             submitted_at=datetime.now(UTC), archive=archive,
                             expanded_bytes=contents.expanded_bytes)
            db.add(row)
            db.flush()  # holds the write lock from here: read the clock again, so ids and times agree
            _check_quotas(db, row, limits)
            row.submitted_at = datetime.now(UTC)
            return SubmissionInfo(row.id, course, assignment, student, row.submitted_at, ())

    # -- formative practice ----------------------------------------------------------------
    def record_practice(self, course: str, assignment: str, student: str, exercise: str, kind: str,
                        passed: int | None = None, total: int | None = None) -> None:
        """Keep one ``check()``/``hint()`` of a student; ``TooMany`` past the per-assignment cap."""
        if kind not in PRACTICE_KINDS:
            raise Refused(f"kind must be one of {', '.join(PRACTICE_KINDS)}, not {kind!r}")
        with self.session.begin() as db:
            kept = db.scalar(select(func.count()).select_from(Practice).where(
                Practice.course == course, Practice.assignment == assignment, Practice.student == student))
            if kept >= PRACTICE_PER_ASSIGNMENT:
                raise TooMany(f"{PRACTICE_PER_ASSIGNMENT} practice runs of {assignment} are already recorded")
            db.add(Practice(course=course, assignment=assignment, student=student, exercise=exercise, kind=kind,
                            passed=passed, total=total, at=datetime.now(UTC)))

    def practice(self, course: str, assignment: str | None = None) -> list[PracticeEvent]:
        query = select(Practice).where(Practice.course == course)
        if assignment:
            query = query.where(Practice.assignment == assignment)
        with self.session() as db:
            return [PracticeEvent(p.assignment, p.student, p.exercise, p.kind, p.passed, p.total, _utc(p.at))
                    for p in db.scalars(query.order_by(Practice.at, Practice.id))]

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

    def score_history(self, course: str, assignment: str, student: str) -> list[ScoredSubmission]:
        """Every submission of ``student`` of ``assignment``, oldest first, each with the score of its
        latest finished grading: what a score policy (``autograders.gradebook.counting``) chooses from."""
        history = []
        for s in self.submissions(course, assignment, student):
            done = s.finished
            state = done.state if done else (s.grading.state if s.grading else "not queued")
            history.append(ScoredSubmission(s.id, s.submitted_at, state, done.score if done else None,
                                            done.max_score if done else None))
        return history

    def submission(self, submission_id: int) -> Submission | None:
        with self.session() as db:
            row = db.get(Submission, submission_id)
            if row is not None:  # SQLite hands back naive times: they are UTC
                row.submitted_at = _utc(row.submitted_at)
                db.expunge(row)
            return row

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


def _add_new_columns(engine) -> None:
    """Columns added after a table was first made (``create_all`` only makes missing tables)."""
    def missing() -> bool:
        return "expanded_bytes" not in {c["name"] for c in inspect(engine).get_columns("submissions")}

    if missing():
        try:
            with engine.begin() as db:
                db.execute(text("ALTER TABLE submissions ADD COLUMN expanded_bytes BIGINT"))
        except DBAPIError:
            if missing():  # not another process adding it at the same moment
                raise


def _check_quotas(db, row: Submission, limits: ExchangeLimits) -> None:
    """Refuse ``row`` (already flushed, so counted) when it takes its student past a quota."""
    if limits.submissions_per_assignment:
        count = db.scalar(select(func.count()).select_from(Submission).where(
            Submission.student == row.student, Submission.course == row.course,
            Submission.assignment == row.assignment))
        if count > limits.submissions_per_assignment:
            raise TooMany(f"{row.student} has already submitted {row.course}/{row.assignment} "
                          f"{limits.submissions_per_assignment} times, the most the exchange keeps; "
                          "ask your instructor if you need to submit again")
    if limits.student_bytes:
        stored = db.scalar(select(func.sum(func.coalesce(Submission.expanded_bytes, func.length(Submission.archive))))
                           .where(Submission.student == row.student)) or 0
        if stored > limits.student_bytes:
            raise TooLarge(f"this submission ({_size(row.expanded_bytes or 0)} expanded) would take "
                           f"{row.student}'s stored submissions to {_size(stored)}, over the "
                           f"{_size(limits.student_bytes)} quota; ask your instructor")


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


class Refused(ValueError):
    """A release or submission the exchange turns down; ``status`` is the HTTP status that says why."""

    status = 400


class TooLarge(Refused):
    status = 413


class TooMany(Refused):
    status = 429


def _size(n: int) -> str:
    return f"{n / MiB:.1f} MiB" if n >= MiB else f"{n / 1024:.1f} KiB"


def _setting(name: str, default: int, unit: int = 1) -> int:
    value = os.environ.get(name, "").strip()
    return int(float(value) * unit) if value else default


@dataclass(frozen=True)
class ExchangeLimits:
    """What the exchange keeps (see the module docstring for the settings); 0 turns a quota off."""

    archive_bytes: int = 100 * MiB
    archive_files: int = 200
    student_bytes: int = 500 * MiB
    submissions_per_assignment: int = 50

    @classmethod
    def from_env(cls) -> ExchangeLimits:
        return cls(archive_bytes=_setting("DEEPGRADE_ARCHIVE_MAX_MB", cls.archive_bytes, MiB),
                   archive_files=_setting("DEEPGRADE_ARCHIVE_MAX_FILES", cls.archive_files),
                   student_bytes=_setting("DEEPGRADE_STUDENT_QUOTA_MB", cls.student_bytes, MiB),
                   submissions_per_assignment=_setting("DEEPGRADE_SUBMISSIONS_PER_ASSIGNMENT",
                                                       cls.submissions_per_assignment))

    @property
    def stream_bytes(self) -> int:
        """The most tar stream (file data plus headers and padding) an archive within the limits needs."""
        return self.archive_bytes + (self.archive_files + 2) * 8 * tarfile.BLOCKSIZE + tarfile.RECORDSIZE


@dataclass(frozen=True)
class ArchiveContents:
    files: tuple[str, ...]
    expanded_bytes: int


class _CappedStream:
    """The decompressed tar stream, cut off past ``cap`` bytes. Headers and padding count too, so
    no entry, however it is declared (a huge pax header, say), makes us read or hold more."""

    def __init__(self, raw: IO[bytes], cap: int, refusal: str):
        self.raw, self.cap, self.refusal, self.count = raw, cap, refusal, 0

    def read(self, size: int = -1) -> bytes:
        budget = self.cap - self.count
        data = self.raw.read(budget + 1 if size is None or size < 0 or size > budget else size)
        self.count += len(data)
        if self.count > self.cap:
            raise TooLarge(self.refusal)
        return data


def _entry_name(member: tarfile.TarInfo) -> str:
    """The entry's path, normalised; refused when absolute or climbing out with ``..``."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise Refused(f"archive entry {member.name!r} leaves its folder")
    return str(path) if path.parts else ""


def _write_new(source: IO[bytes], target: Path) -> None:
    """A new regular file in a folder only we have written to: never through a link, never twice."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, MiB)


def _read_archive(archive: bytes, limits: ExchangeLimits, into: Path | None) -> ArchiveContents:
    """One pass over a tar.gz, writing its files under ``into`` when given. Refuses it at the first
    link, device or path leaving the folder, and as soon as it passes a limit."""
    if len(archive) > limits.stream_bytes:
        raise TooLarge(f"the archive of {_size(len(archive))} is over the {_size(limits.archive_bytes)} limit")
    too_large = f"the archive expands to more than {_size(limits.archive_bytes)}, the limit of one archive"
    stream = _CappedStream(gzip.GzipFile(fileobj=io.BytesIO(archive)), limits.stream_bytes, too_large)
    files: list[str] = []
    folders: set[str] = set()  # the folders the files so far lie in: no file may take one's name
    total = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for count, member in enumerate(tar, start=1):
                if count > limits.archive_files:
                    raise TooLarge(f"the archive holds more than {limits.archive_files} entries")
                name = _entry_name(member)
                if member.isdir():
                    continue
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or not name:
                    raise Refused(f"archive entry {member.name!r} is not a plain file")
                parents = {str(parent) for parent in PurePosixPath(name).parents} - {"."}
                if name in files or name in folders or parents.intersection(files):
                    raise Refused(f"archive entry {name!r} clashes with another entry")
                folders |= parents
                total += member.size
                if total > limits.archive_bytes:
                    raise TooLarge(too_large)
                if into is not None:
                    _write_new(tar.extractfile(member), into / name)
                files.append(name)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise Refused(f"not a tar.gz archive: {exc}") from None
    return ArchiveContents(tuple(files), total)


def inspect_archive(archive: bytes, limits: ExchangeLimits | None = None) -> ArchiveContents:
    """Read an archive through without writing anything: ``Refused`` (or ``TooLarge``) if unsafe or too big."""
    return _read_archive(archive, limits or ExchangeLimits.from_env(), None)


def unpack(archive: bytes, dest: Path, limits: ExchangeLimits | None = None) -> list[str]:
    """Extract into ``dest``: the whole archive, or nothing when it is refused part-way (the files
    written so far are in a staging folder beside ``dest``, which is deleted). Returns the file names."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}-unpacking-", dir=dest.parent))
    try:
        contents = _read_archive(archive, limits or ExchangeLimits.from_env(), staging)
        dest.mkdir(exist_ok=True)
        for name in contents.files:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return list(contents.files)


def notebooks_in(archive: bytes) -> list[str]:
    return sorted(PurePosixPath(name).stem for name in inspect_archive(archive).files
                  if name.endswith(".ipynb") and "/" not in name)
