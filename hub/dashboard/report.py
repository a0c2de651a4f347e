"""What the course dashboard and the grade export know about a class, read from the course store.

Everything comes from the store's tables (roster, submissions, grading jobs and their results,
feedback); nothing is written. A grading's result JSON is produced by our worker, but the texts
in it (check messages, integrity notes) quote what a student wrote: they are data to escape,
never markup, and each result is read with a size cap.

Which submission counts for an assignment is the assignment's ``score`` policy
(``assignment.yaml``: ``latest``, the default, or ``best``), applied by the one rule the gradebook
and the exchange apply (:func:`autograders.gradebook.counting`) to each submission's latest
finished grading: a submission still queued or grading, or one the platform could not grade,
never replaces a score.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import select

from autograders.assignment import Assignment, find_all
from autograders.gradebook import Attempt as Scored
from autograders.gradebook import counting
from hub.store import CourseStore, Feedback, Job, Member, PracticeEvent, Submission

MAX_RESULT_BYTES = 2_000_000  # a result larger than this is not parsed (the worker's are far smaller)
MAX_TEXT = 300  # characters of a check message or flag kept for display
TOP_MESSAGES = 3


def score_policy(course: str, assignment: str) -> str:
    """The assignment's ``score`` policy; ``latest`` when it is not on disk (or its policy is invalid)."""
    try:
        return Assignment.load(f"{course}/{assignment}").score_policy
    except (FileNotFoundError, ValueError):
        return "latest"


@dataclass(frozen=True)
class CheckOutcome:
    id: str
    passed: bool
    message: str
    points: float


@dataclass
class Attempt:
    """One submission with the state of its newest grading job and its newest graded result."""

    submission_id: int
    student: str
    assignment: str
    submitted_at: datetime
    state: str = "not queued"  # of the newest job
    message: str = ""  # of the newest job (a failure's reason, a wait)
    score: float | None = None  # of the newest finished job (None: none yet, or the platform failed)
    max_score: float | None = None
    feedback: tuple[str, ...] = ()
    checks: tuple[CheckOutcome, ...] = ()
    flags: tuple[str, ...] = ()

    @property
    def graded(self) -> bool:
        return self.score is not None


@dataclass(frozen=True)
class JobTimes:
    state: str
    enqueued_at: datetime
    finished_at: datetime | None
    message: str


@dataclass
class StudentRow:
    """One enrolled student (or someone who submitted though no longer enrolled) in one assignment."""

    student: str
    enrolled: bool
    attempts: list[Attempt] = field(default_factory=list)
    counted: Attempt | None = None

    @property
    def latest(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def flags(self) -> list[str]:
        return sorted({flag for attempt in self.attempts for flag in attempt.flags})


@dataclass(frozen=True)
class CheckStats:
    id: str
    points: float
    graded: int
    failed: int
    messages: list[tuple[str, int]]  # the most common failure messages, with their counts

    @property
    def failure_rate(self) -> float:
        return self.failed / self.graded if self.graded else 0.0


@dataclass
class PracticeStats:
    """One exercise's formative practice: ``check()`` and ``hint()`` runs reported by students' kernels."""

    exercise: str
    students: int = 0  # who ran check() or hint() at least once
    checks: int = 0
    hints: int = 0
    checks_before: int = 0  # before the student's first submission (all of them, for one who has none)
    hints_before: int = 0
    all_passing: int = 0  # checks whose every public check passed


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass
class AssignmentReport:
    course: str
    name: str
    policy: str
    rows: list[StudentRow]
    jobs: list[JobTimes]
    now: datetime
    practice: list[PracticeEvent] = field(default_factory=list)

    @property
    def enrolled(self) -> list[StudentRow]:
        return [row for row in self.rows if row.enrolled]

    @property
    def not_submitted(self) -> list[str]:
        return [row.student for row in self.enrolled if not row.attempts]

    @property
    def attempts(self) -> list[Attempt]:
        return sorted((a for row in self.rows for a in row.attempts), key=lambda a: (a.submitted_at, a.submission_id))

    @property
    def max_score(self) -> float | None:
        scores = [a.max_score for a in self.attempts if a.max_score]
        return max(scores) if scores else None

    @property
    def counted_scores(self) -> list[float]:
        return [row.counted.score for row in self.enrolled if row.counted and row.counted.score is not None]

    def queue_counts(self) -> dict[str, int]:
        counts = Counter(job.state for job in self.jobs)
        return {state: counts.get(state, 0) for state in ("queued", "grading", "graded", "failed")}

    def waiting_seconds(self) -> list[float]:
        """How long each job still in the queue has waited so far."""
        return [(self.now - job.enqueued_at).total_seconds() for job in self.jobs if job.state == "queued"]

    def turnaround_seconds(self) -> list[float]:
        """From queued to a result, for each job that ended."""
        return [(job.finished_at - job.enqueued_at).total_seconds() for job in self.jobs
                if job.finished_at is not None and job.state in ("graded", "failed")]

    def failures(self) -> list[tuple[str, int]]:
        """Why gradings failed, most frequent first."""
        return Counter(_short(job.message) or "(no reason given)" for job in self.jobs
                       if job.state == "failed").most_common()

    def check_stats(self) -> list[CheckStats]:
        """Per check, over each student's newest graded submission: how often it fails, and why."""
        graded: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        points: dict[str, float] = {}
        messages: dict[str, Counter[str]] = {}
        for row in self.rows:
            newest = next((a for a in reversed(row.attempts) if a.graded), None)
            for check in newest.checks if newest else ():
                graded[check.id] += 1
                points.setdefault(check.id, check.points)
                if not check.passed:
                    failed[check.id] += 1
                    messages.setdefault(check.id, Counter())[check.message or "(no message)"] += 1
        return [CheckStats(check, points[check], graded[check], failed[check],
                           messages.get(check, Counter()).most_common(TOP_MESSAGES))
                for check in sorted(graded, key=lambda c: (-failed[c] / graded[c], c))]

    def practice_stats(self) -> list[PracticeStats]:
        """Per exercise, how much the class practised with the public checks and hints, and how much
        of it came before each student's first submission."""
        first = {row.student: row.attempts[0].submitted_at for row in self.rows if row.attempts}
        stats: dict[str, PracticeStats] = {}
        who: dict[str, set[str]] = {}
        for event in self.practice:
            entry = stats.setdefault(event.exercise, PracticeStats(event.exercise))
            who.setdefault(event.exercise, set()).add(event.student)
            before = event.student not in first or event.at < first[event.student]
            if event.kind == "check":
                entry.checks += 1
                entry.checks_before += before
                entry.all_passing += bool(event.total) and event.passed == event.total
            else:
                entry.hints += 1
                entry.hints_before += before
        for exercise, entry in stats.items():
            entry.students = len(who[exercise])
        return sorted(stats.values(), key=lambda entry: entry.exercise)

    def submissions_per_day(self) -> list[tuple[str, int]]:
        days = Counter(a.submitted_at.astimezone(UTC).strftime("%Y-%m-%d") for a in self.attempts)
        return sorted(days.items())


@dataclass
class CourseReport:
    course: str
    students: list[str]  # enrolled, sorted
    assignments: dict[str, AssignmentReport]

    def student_rows(self, student: str) -> dict[str, StudentRow]:
        """assignment -> the student's row (with no attempts where they did not submit)."""
        return {name: next((row for row in report.rows if row.student == student), StudentRow(student, False))
                for name, report in self.assignments.items()}


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _utc(when: datetime | None) -> datetime | None:
    return None if when is None else (when if when.tzinfo else when.replace(tzinfo=UTC))


def _parse_result(raw: str | None) -> dict:
    if not raw or len(raw) > MAX_RESULT_BYTES:
        return {}
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _checks(result: dict) -> tuple[CheckOutcome, ...]:
    found = []
    for check in result.get("checks") or []:
        if isinstance(check, dict) and isinstance(check.get("id"), str):
            points = check.get("points")
            found.append(CheckOutcome(_short(check["id"]), bool(check.get("passed")), _short(check.get("message") or ""),
                                      float(points) if isinstance(points, int | float) else 0.0))
    return tuple(found)


def _flags(result: dict) -> tuple[str, ...]:
    """The integrity notes of a grading (an edited autograder cell, suspicious training data, ...)."""
    notes = [*(result.get("integrity") or []), *(result.get("flags") or [])]
    return tuple(_short(note) for note in notes if isinstance(note, str) and note)


def course_assignments(course: str, seen: Iterable[str] = ()) -> list[str]:
    """The course's assignments on disk, and any other that has submissions."""
    return sorted({a.name for a in find_all() if a.course == course} | set(seen))


def load_course(store: CourseStore, course: str, now: datetime | None = None) -> CourseReport:
    """Read one course from the store: every enrolled student in every assignment."""
    now = now or datetime.now(UTC)
    with store.session() as db:
        students = sorted(db.scalars(select(Member.username).where(Member.course == course,
                                                                  Member.role == "student")))
        submissions = db.execute(select(Submission.id, Submission.assignment, Submission.student,
                                        Submission.submitted_at).where(Submission.course == course)
                                 .order_by(Submission.submitted_at, Submission.id)).all()
        jobs = db.execute(select(Job.id, Job.submission_id, Job.assignment, Job.state, Job.enqueued_at,
                                 Job.finished_at, Job.score, Job.max_score, Job.message)
                          .where(Job.course == course).order_by(Job.id)).all()
        feedback: dict[int, list[str]] = {}
        for submission_id, notebook in db.execute(select(Feedback.submission_id, Feedback.notebook).join(
                Submission, Submission.id == Feedback.submission_id).where(Submission.course == course)):
            feedback.setdefault(submission_id, []).append(notebook)
        newest_job = {job.submission_id: job for job in jobs}
        newest_done = {job.submission_id: job for job in jobs if job.state in ("graded", "failed")}
        results = {job_id: raw for job_id, raw in db.execute(select(Job.id, Job.result).where(
            Job.id.in_([job.id for job in newest_done.values()])))} if newest_done else {}

    attempts: dict[tuple[str, str], list[Attempt]] = {}
    for sub in submissions:
        attempt = Attempt(sub.id, sub.student, sub.assignment, _utc(sub.submitted_at),
                          feedback=tuple(sorted(feedback.get(sub.id, []))))
        if sub.id in newest_job:
            attempt.state, attempt.message = newest_job[sub.id].state, _short(newest_job[sub.id].message or "")
        if sub.id in newest_done:
            done = newest_done[sub.id]
            result = _parse_result(results.get(done.id))
            attempt.score, attempt.max_score = done.score, done.max_score
            attempt.checks, attempt.flags = _checks(result), _flags(result)
        attempts.setdefault((sub.assignment, sub.student), []).append(attempt)

    enrolled = set(students)
    practice = [event for event in store.practice(course) if event.student in enrolled]
    reports = {}
    for name in course_assignments(course, {sub.assignment for sub in submissions}):
        policy = score_policy(course, name)
        submitters = {student for assignment, student in attempts if assignment == name}
        rows = []
        for student in sorted(set(students) | submitters):
            mine = attempts.get((name, student), [])
            rows.append(StudentRow(student, student in students, mine, counted_attempt(mine, policy)))
        times = [JobTimes(job.state, _utc(job.enqueued_at), _utc(job.finished_at), job.message or "")
                 for job in jobs if job.assignment == name]
        reports[name] = AssignmentReport(course, name, policy, rows, times, now,
                                         [event for event in practice if event.assignment == name])
    return CourseReport(course, students, reports)


def counted_attempt(attempts: list[Attempt], policy: str) -> Attempt | None:
    """The submission whose score counts under ``policy`` (None: nothing has a score yet)."""
    chosen = counting([Scored(attempt, attempt.submitted_at, attempt.score) for attempt in attempts], policy)
    return chosen.key if chosen else None


def summary(values: list[float]) -> dict[str, float | None]:
    return {"mean": statistics.fmean(values) if values else None, "p50": percentile(values, 50),
            "p95": percentile(values, 95)}
