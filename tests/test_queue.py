"""The grading queue with real workers: SIGKILL in the middle of a job with both backends
(the job table in SQLite, and Celery over a real Redis server), racing submissions, a
forged timestamp, the hourly limit, and ``deepgrade grade --all`` through the queue.

The submissions are dl-python's first chapter (NumPy only, so a grading takes seconds).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from autograders.assignment import Assignment
from hub.queue import CeleryQueue, DatabaseQueue
from hub.store import CourseStore, JobInfo
from tests.hubtools import free_port_block

NUMPY_CHAPTER = "dl-python/01-basics-with-numpy"
LEASE = "6"  # seconds: a killed worker's claim lapses quickly


@pytest.fixture(scope="module")
def chapter() -> Assignment:
    return Assignment.load(NUMPY_CHAPTER)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private DEEPGRADE_HOME: its own course database, gradebooks and scratch space."""
    monkeypatch.setenv("DEEPGRADE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEEPGRADE_DB_URL", raising=False)
    return tmp_path / "home"


def archive(notebook: Path, name: str, extra: dict[str, bytes] | None = None) -> bytes:
    """A submission archive holding ``notebook`` as ``name``.ipynb (plus ``extra`` files)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for arcname, data in {f"{name}.ipynb": notebook.read_bytes(), **(extra or {})}.items():
            info = tarfile.TarInfo(arcname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def submit(store: CourseStore, chapter: Assignment, student: str, notebook: Path | None = None, **extra) -> int:
    data = archive(notebook or chapter.source_notebook, chapter.notebook_name, extra or None)
    return store.submit(chapter.course, chapter.name, student, data).id


def start_worker(home: Path, **env: str) -> subprocess.Popen:
    """``deepgrade worker`` in its own process group, as an operator would run it."""
    return subprocess.Popen(
        [sys.executable, "-m", "autograders.cli", "worker", "--workers", "1"],
        env={**os.environ, "DEEPGRADE_HOME": str(home), "DEEPGRADE_JOB_LEASE": LEASE,
             "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(worker: subprocess.Popen, signum: int) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signum)
        worker.wait(timeout=60)


def wait_for(store: CourseStore, job_id: int, states: tuple[str, ...], timeout: float = 240) -> JobInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.job(job_id)
        if job.state in states:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} is {store.job(job_id).state}, not {states}, after {timeout} s")


def kill_mid_job(worker: subprocess.Popen, store: CourseStore, job_id: int) -> None:
    """SIGKILL the worker and everything it started, a few seconds into grading."""
    wait_for(store, job_id, ("grading",), timeout=120)
    time.sleep(3)
    assert store.job(job_id).state == "grading", "the job must still be running when the worker dies"
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()


def gradebook_row(home: Path, chapter: Assignment, student: str) -> tuple[float, datetime]:
    """Score and timestamp of the student's submission in nbgrader's own gradebook."""
    from nbgrader.api import Gradebook

    db = home / "courses" / chapter.course / "gradebook.db"
    with Gradebook(f"sqlite:///{db}", course_id=chapter.course) as gb:
        submission = gb.find_submission(chapter.name, student)
        assert len(gb.find_student(student).submissions) == 1
        return submission.score, submission.timestamp.replace(tzinfo=UTC)


def assert_graded_once(store: CourseStore, home: Path, chapter: Assignment, job_id: int) -> None:
    job = store.job(job_id)
    assert job.state == "graded", job
    assert job.attempt == 2, "the killed attempt was retried once"
    assert job.score == job.max_score == 12
    assert [j.id for j in store.jobs()] == [job_id], "no job was duplicated"
    assert store.feedback(job.submission_id, chapter.notebook_name), "the feedback was published"
    assert gradebook_row(home, chapter, "ada")[0] == 12


def test_sqlite_queue_survives_sigkill_mid_job(home: Path, chapter: Assignment) -> None:
    store = CourseStore()
    job = DatabaseQueue(store=store).submit(submit(store, chapter, "ada"), "ada")
    first = start_worker(home)
    try:
        kill_mid_job(first, store, job.id)
    finally:
        stop(first, signal.SIGKILL)
    second = start_worker(home)
    try:
        wait_for(store, job.id, ("graded", "failed"))
    finally:
        stop(second, signal.SIGTERM)
    assert_graded_once(store, home, chapter, job.id)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A real Redis server on a free loopback port (installed by ``make test``'s system step)."""
    exe = shutil.which("redis-server")
    if exe is None:
        subprocess.run(["./scripts/ensure-system-packages.sh", "test"], check=True)
        exe = shutil.which("redis-server")
    port = free_port_block(1)
    server = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    import redis

    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=30)


def test_celery_queue_survives_sigkill_mid_job(home: Path, chapter: Assignment, redis_url: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPGRADE_BROKER_URL", redis_url)
    env = {"DEEPGRADE_QUEUE": "celery", "DEEPGRADE_BROKER_URL": redis_url, "DEEPGRADE_VISIBILITY_TIMEOUT": "5"}
    store = CourseStore()
    first = start_worker(home, **env)
    try:
        job = CeleryQueue(store=store, broker_url=redis_url).submit(submit(store, chapter, "ada"), "ada")
        kill_mid_job(first, store, job.id)
    finally:
        stop(first, signal.SIGKILL)
    second = start_worker(home, **env)
    try:
        wait_for(store, job.id, ("graded", "failed"))
    finally:
        stop(second, signal.SIGTERM)
    assert_graded_once(store, home, chapter, job.id)


def test_racing_submissions_are_both_recorded_in_order(home: Path, chapter: Assignment, tmp_path: Path) -> None:
    """Two submissions of one student at the same moment, one of them with a forged timestamp
    file and one malformed: both are stored and graded, and the gradebook keeps the newer."""
    store = CourseStore()
    queue = DatabaseQueue(store=store, per_hour=0)
    broken = tmp_path / "broken.ipynb"
    broken.write_text('{"cells": [')
    forged = {"timestamp.txt": b"2020-01-01 00:00:00.000000 UTC"}
    barrier, ids = threading.Barrier(2), {}

    def send(kind: str, notebook: Path | None) -> None:
        barrier.wait()
        ids[kind] = submit(store, chapter, "ada", notebook, **forged)

    threads = [threading.Thread(target=send, args=args) for args in (("good", None), ("broken", broken))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = store.submissions(chapter.course, chapter.name, "ada")
    assert sorted(ids.values()) == [r.id for r in rows], "both kept, ordered by server time"
    assert rows[0].submitted_at <= rows[1].submitted_at
    jobs = [queue.submit(r.id, "ada") for r in rows]
    queue.start(2)
    try:
        done = {j.submission_id: j for j in queue.wait([j.id for j in jobs], timeout=300)}
    finally:
        queue.stop()
    assert done[ids["good"]].state == "graded" and done[ids["good"]].score == 12
    failed = done[ids["broken"]]
    assert failed.state == "failed" and "not valid notebook JSON" in failed.message
    assert failed.describe().startswith("failed: ")
    newer = rows[1]
    score, stamp = gradebook_row(home, chapter, "ada")
    assert score == done[newer.id].score, "the gradebook holds the newer submission"
    assert abs(stamp - newer.submitted_at) < timedelta(seconds=1), "server time, not the forged file"
    assert stamp.year == datetime.now(UTC).year


def test_hourly_limit_defers_and_never_drops(home: Path, chapter: Assignment) -> None:
    store = CourseStore()
    queue = DatabaseQueue(store=store, per_hour=2)
    jobs = [queue.submit(submit(store, chapter, "ada"), "ada") for _ in range(3)]
    now = datetime.now(UTC)
    assert [j.not_before <= now for j in jobs] == [True, True, False]
    assert timedelta(minutes=59) < jobs[2].not_before - now <= timedelta(hours=1)
    assert "at most 2 submission(s) per hour" in jobs[2].describe()
    assert store.claim("w", 10, job_id=jobs[2].id) is None, "a deferred job is not graded early"
    assert len(store.submissions(chapter.course, chapter.name, "ada")) == 3
    regrade = queue.submit(jobs[2].submission_id, "instructor")
    assert regrade.not_before <= datetime.now(UTC), "an instructor's regrade is not limited"
    other = queue.submit(submit(store, chapter, "bob"), "bob")
    assert other.not_before <= datetime.now(UTC), "the limit is per student"


def test_grade_all_regrades_a_class_through_the_queue(home: Path, chapter: Assignment, tmp_path: Path) -> None:
    store = CourseStore()
    submit(store, chapter, "ada")
    submit(store, chapter, "bob", chapter.release_notebook)
    proc = subprocess.run([sys.executable, "-m", "autograders.cli", "grade", "--all", NUMPY_CHAPTER,
                           "--workers", "2"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert "ada: graded: 12 / 12" in proc.stdout and "bob: graded: 0 / 12" in proc.stdout, proc.stdout + proc.stderr
    assert proc.returncode == 0
    assert {j.state for j in store.jobs()} == {"graded"}
    assert gradebook_row(home, chapter, "bob")[0] == 0


def test_a_regrade_keeps_showing_the_last_score(home: Path, chapter: Assignment) -> None:
    store = CourseStore()
    queue = DatabaseQueue(store=store, per_hour=0)
    first = queue.submit(submit(store, chapter, "ada"), "ada")
    claimed = store.claim("w", 30, job_id=first.id)
    assert store.finish(claimed, "graded", score=12, max_score=12, message="", result="{}", feedback={})
    assert not store.finish(claimed, "graded", score=0, max_score=12, message="", result="{}", feedback={}), \
        "a finished attempt cannot be finished twice"
    queue.submit(first.submission_id, "instructor")
    [row] = store.submissions(chapter.course, chapter.name, "ada")
    assert row.status() == "graded: 12 / 12; regrade queued"
