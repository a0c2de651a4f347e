"""What a grading worker does with one job, whichever queue delivered it.

The job table (``hub.store.Job``) is the truth: a worker claims a job, renews its lease
while it grades, and finishes it in one fenced transaction that also publishes the
feedback. A worker killed half-way leaves a lapsed lease behind, and the next worker
grades the submission again from its stored archive, so nothing is lost or counted twice.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from pathlib import Path

from autograders.assignment import Assignment, Limits
from autograders.gradebook import course_root, lay_out
from autograders.kernels import WarmPool, warm_enabled
from autograders.sandbox import Sandbox, default_sandbox, remove_tree
from hub.store import CourseStore, JobInfo, data_root, unpack

DEFAULT_LEASE = 120.0  # seconds a claim lasts without a heartbeat


def worker_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}:{index}"


class Heartbeat:
    """Renews a job's lease in the background while it is being graded, but never past the
    grading's deadline: a worker stuck beyond it lets the lease lapse, and another worker takes
    the job over."""

    def __init__(self, store: CourseStore, job: JobInfo, lease: float, deadline: float = float("inf")):
        self.store, self.job, self.lease = store, job, lease
        self.until = time.monotonic() + deadline
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 4):
            if time.monotonic() > self.until or not self.store.heartbeat(self.job, self.lease):
                self.lost = True
                return

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def warm_pool(depth: int) -> WarmPool | None:
    """Warm sandboxes for ``depth`` worker threads (None when turned off): after each grading one
    more starts for the same assignment, ready before the next submission arrives."""
    return WarmPool(default_sandbox(), depth=depth, repeat=True, scratch=_scratch()) if warm_enabled() else None


def run_job(store: CourseStore, job: JobInfo, lease: float = DEFAULT_LEASE,
            sandbox: Sandbox | None = None, pool: WarmPool | None = None) -> bool:
    """Grade a claimed job and record its outcome; False if the claim was lost meanwhile.

    A platform error (ours, not the submission's) is not an outcome: the job goes back to the
    queue (``CourseStore.retry``) with nothing scored."""
    work = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-{job.attempt}-", dir=_scratch()))
    try:
        with Heartbeat(store, job, lease, deadline=_deadline(job) + lease):
            try:
                outcome = grade_submission(store, job, work, sandbox, pool)
            except Exception as exc:  # a bug of ours still ends in a recorded outcome
                outcome = {"status": "platform-error", "score": 0.0, "max_score": 0.0,
                           "message": f"platform error: {type(exc).__name__}: {exc}"[:500]}
        if outcome["status"] == "platform-error":
            return store.retry(job, outcome.get("message", "platform error"), json.dumps(outcome))
        feedback = work / "feedback.html"
        notebook = outcome.get("notebook", "submission")
        return store.finish(
            job, "graded" if outcome["status"] == "graded" else "failed",
            score=outcome["score"], max_score=outcome["max_score"], message=outcome.get("message", ""),
            result=json.dumps(outcome), feedback={notebook: feedback.read_bytes()} if feedback.exists() else {})
    finally:
        remove_tree(work)


def _deadline(job: JobInfo) -> float:
    from autograders.runner import deadline_of

    try:
        return deadline_of(Assignment.load(f"{job.course}/{job.assignment}").limits)
    except FileNotFoundError:
        return deadline_of(Limits())


def grade_submission(store: CourseStore, job: JobInfo, work: Path, sandbox: Sandbox | None,
                     pool: WarmPool | None = None) -> dict:
    """Unpack the stored archive, grade its notebook, and lay it out for nbgrader's formgrader."""
    from autograders.runner import grade

    row = store.submission(job.submission_id)
    try:
        assignment = Assignment.load(f"{job.course}/{job.assignment}")
    except FileNotFoundError:
        return {"status": "error", "score": 0.0, "max_score": 0.0,
                "message": f"the grader does not know assignment {job.course}/{job.assignment}"}
    files = work / "submission"
    unpack(row.archive, files)
    notebook = files / f"{assignment.notebook_name}.ipynb"
    if not notebook.is_file():
        return {"status": "error", "score": 0.0, "max_score": 0.0, "notebook": assignment.notebook_name,
                "message": f"the submission has no {notebook.name}: submit the notebook you fetched, "
                           "under its original name"}
    write_history(store, job, assignment, work)
    root = course_root(job.course)
    result = grade(notebook, assignment, workdir=work, student=job.student, seed=1,
                   sandbox=sandbox or default_sandbox(), record_gradebook=True, gradebook_root=root,
                   submitted_at=row.submitted_at, pool=pool)
    if result.get("execution", {}).get("gradebook"):  # the newest submission: show it in the formgrader
        from hub.exchange.plugin import SUBMISSION_ID_FILE

        lay_out(root, job.student, assignment, files, work, row.submitted_at,
                extra={SUBMISSION_ID_FILE: str(job.submission_id)})
    return {**result, "notebook": assignment.notebook_name}


def write_history(store: CourseStore, job: JobInfo, assignment: Assignment, work: Path) -> None:
    """The student's submissions of this assignment so far, with their scores and the score policy,
    beside the result: the feedback page lists them and says which one counts."""
    from autograders.feedback import HISTORY_FILE

    history = store.score_history(job.course, job.assignment, job.student)
    (work / HISTORY_FILE).write_text(json.dumps({
        "policy": assignment.score_policy, "current": job.submission_id,
        "submissions": [{"id": s.id, "submitted_at": s.submitted_at.isoformat(), "score": s.score,
                         "max_score": s.max_score, "state": s.state} for s in history]}))


def _scratch() -> Path:
    path = data_root() / "grading"
    path.mkdir(parents=True, exist_ok=True)
    return path
