"""What a grading worker does with one job, whichever queue delivered it.

The job table (``hub.store.Job``) is the truth: a worker claims a job, renews its lease
while it grades, and finishes it in one fenced transaction that also publishes the
feedback. A worker killed half-way leaves a lapsed lease behind, and the next worker
grades the submission again from its stored archive, so nothing is lost or counted twice.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import tempfile
import threading
from pathlib import Path

from autograders.assignment import Assignment
from autograders.gradebook import course_root
from autograders.kernels import WarmPool, warm_enabled
from autograders.sandbox import Sandbox, default_sandbox
from hub.store import CourseStore, JobInfo, data_root, unpack

DEFAULT_LEASE = 120.0  # seconds a claim lasts without a heartbeat


def worker_name(index: int = 0) -> str:
    return f"{socket.gethostname()}:{threading.get_native_id()}:{index}"


class Heartbeat:
    """Renews a job's lease in the background while it is being graded."""

    def __init__(self, store: CourseStore, job: JobInfo, lease: float):
        self.store, self.job, self.lease = store, job, lease
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job.id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.lease / 4):
            if not self.store.heartbeat(self.job, self.lease):
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
    """Grade a claimed job and record its outcome; False if the claim was lost meanwhile."""
    work = Path(tempfile.mkdtemp(prefix=f"job-{job.id}-{job.attempt}-", dir=_scratch()))
    try:
        with Heartbeat(store, job, lease):
            try:
                outcome = grade_submission(store, job, work, sandbox, pool)
            except Exception as exc:  # a bug of ours still ends in a recorded outcome
                outcome = {"status": "error", "score": 0.0, "max_score": 0.0,
                           "message": f"internal grading error: {type(exc).__name__}: {exc}"[:500]}
        feedback = work / "feedback.html"
        notebook = outcome.get("notebook", "submission")
        return store.finish(
            job, "graded" if outcome["status"] == "graded" else "failed",
            score=outcome["score"], max_score=outcome["max_score"], message=outcome.get("message", ""),
            result=json.dumps(outcome), feedback={notebook: feedback.read_bytes()} if feedback.exists() else {})
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    root = course_root(job.course)
    result = grade(notebook, assignment, workdir=work, student=job.student, seed=1,
                   sandbox=sandbox or default_sandbox(), record_gradebook=True, gradebook_root=root,
                   submitted_at=row.submitted_at, pool=pool)
    if result.get("execution", {}).get("gradebook"):  # the newest submission: show it in the formgrader
        _lay_out(root, job, assignment, files, work, row.submitted_at)
    return {**result, "notebook": assignment.notebook_name}


def _lay_out(root: Path, job: JobInfo, assignment: Assignment, files: Path, work: Path, when) -> None:
    """nbgrader's folders for the formgrader: submitted/ (as received), autograded/ (as executed,
    with the same timestamp, which is how nbgrader tells it is graded) and feedback/."""
    from autograders.execute import EXECUTED
    from hub.exchange.plugin import SUBMISSION_ID_FILE

    stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    notebook = f"{assignment.notebook_name}.ipynb"
    folders = {kind: root / kind / job.student / assignment.name for kind in ("submitted", "autograded")}
    for folder in folders.values():
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)
    shutil.copytree(files, folders["submitted"])
    (folders["submitted"] / SUBMISSION_ID_FILE).write_text(str(job.submission_id))
    folders["autograded"].mkdir(parents=True)
    executed = work / "sandbox" / EXECUTED
    shutil.copy2(executed if executed.exists() else files / notebook, folders["autograded"] / notebook)
    for folder in folders.values():
        (folder / "timestamp.txt").write_text(stamp)
    feedback = work / "feedback.html"
    if feedback.exists():
        target = root / "feedback" / job.student / assignment.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy2(feedback, target / f"{assignment.notebook_name}.html")


def _scratch() -> Path:
    path = data_root() / "grading"
    path.mkdir(parents=True, exist_ok=True)
    return path
