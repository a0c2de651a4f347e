"""Grading queues: one interface, a local default and a production backend.

Both backends keep the durable job table in the course database (``hub.store.Job``) as
the single source of truth; they differ in who runs the workers and how they learn of
new jobs:

- ``DatabaseQueue`` (default): worker threads in the process that starts them (the
  exchange service under ``make hub``, or ``deepgrade worker``) poll the job table.
- ``CeleryQueue``: each job is also sent as a Celery task over Redis, so workers can run
  on several machines (``deepgrade worker`` with ``DEEPGRADE_QUEUE=celery``).

Pick one with ``DEEPGRADE_QUEUE`` (``database`` or ``celery``).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from traitlets import Float, Instance, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from autograders.kernels import WarmPool
from hub.store import CourseStore, JobInfo
from hub.worker import DEFAULT_LEASE, run_job, warm_pool, worker_name


class GradingQueue(LoggingConfigurable):
    """Puts grading jobs in the job table and gets them graded."""

    store = Instance(CourseStore)
    per_hour = Integer(help="Gradings of a student's own submissions per assignment and hour "
                            "(0: no limit), so that the grader cannot be used as an oracle.").tag(config=True)
    lease = Float(help="Seconds a worker's claim lasts without a heartbeat.").tag(config=True)
    poll = Float(1.0, help="Seconds between looks at the job table when idle.").tag(config=True)

    @default("store")
    def _default_store(self) -> CourseStore:
        return CourseStore()

    @default("per_hour")
    def _default_per_hour(self) -> int:
        return int(os.environ.get("DEEPGRADE_GRADINGS_PER_HOUR", "10"))

    @default("lease")
    def _default_lease(self) -> float:
        return float(os.environ.get("DEEPGRADE_JOB_LEASE", DEFAULT_LEASE))

    def submit(self, submission_id: int, requested_by: str) -> JobInfo:
        """Record a grading job for a stored submission and hand it to the workers."""
        job = self.store.enqueue(submission_id, requested_by, self.per_hour)
        try:
            self.dispatch(job)
        except Exception:  # the job is in the table: workers re-send open jobs when they start
            self.log.exception("job %d is recorded but could not be dispatched yet", job.id)
        return job

    def dispatch(self, job: JobInfo) -> None:
        """Tell the workers about a new job (polling backends need nothing)."""

    def start(self, workers: int) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def wait(self, job_ids: list[int], timeout: float | None = None,
             on_done: Callable[[JobInfo], None] | None = None) -> list[JobInfo]:
        """Block until every job in ``job_ids`` is graded or failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, done = set(job_ids), {}
        while pending:
            for job_id in sorted(pending):
                job = self.store.job(job_id)
                if job and job.done:
                    pending.discard(job_id)
                    done[job_id] = job
                    if on_done:
                        on_done(job)
            if pending and deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(pending)} were not graded within {timeout} s")
            if pending:
                time.sleep(self.poll)
        return [done[j] for j in job_ids]


class DatabaseQueue(GradingQueue):
    """In-process worker threads polling the durable job table (SQLite or PostgreSQL)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.pool: WarmPool | None = None

    def start(self, workers: int) -> None:
        self.pool = warm_pool(workers)
        for index in range(workers):
            thread = threading.Thread(target=self._work, args=(index,), name=f"grader-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.log.info("grading with %d in-process worker(s)", workers)

    def _work(self, index: int) -> None:
        name = worker_name(index)
        while not self._stop.is_set():
            try:
                job = self.store.claim(name, self.lease)
            except Exception:  # the database is briefly unavailable: try again
                self.log.exception("claiming a job failed")
                job = None
            if job is None:
                self._stop.wait(self.poll)
                continue
            self.log.info("%s grades job %d (submission %d, attempt %d)", name, job.id, job.submission_id,
                          job.attempt)
            run_job(self.store, job, self.lease, pool=self.pool)

    def stop(self) -> None:
        """Stop after the current jobs; a job cut short by exit is retried by the next worker."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self.pool:
            self.pool.close()
            self.pool = None


class CeleryQueue(GradingQueue):
    """Celery over Redis: jobs are also Celery tasks, so workers may run on other machines."""

    broker_url = Unicode(help="Celery broker, e.g. redis://redis:6379/0").tag(config=True)

    @default("broker_url")
    def _default_broker_url(self) -> str:
        return os.environ.get("DEEPGRADE_BROKER_URL", "redis://127.0.0.1:6379/0")

    def dispatch(self, job: JobInfo) -> None:
        from hub.celery_worker import app

        delay = max(0.0, (job.not_before - datetime.now(UTC)).total_seconds())
        with app.connection_for_write(self.broker_url) as connection:
            app.send_task("deepgrade.grade", args=[job.id], countdown=delay or None, connection=connection)

    def start(self, workers: int) -> None:
        """Run a Celery worker in this process (blocks); ``deepgrade worker`` calls this."""
        from hub import celery_worker
        from hub.celery_worker import app

        celery_worker.POOL = warm_pool(workers)  # this process's task threads share it
        app.worker_main(["worker", "--pool", "threads", "--concurrency", str(workers), "--loglevel", "INFO",
                         "--without-gossip", "--without-mingle", "--hostname", f"deepgrade-{os.getpid()}@%h"])


BACKENDS: dict[str, type[GradingQueue]] = {"database": DatabaseQueue, "celery": CeleryQueue}


def default_queue(name: str | None = None, **kwargs) -> GradingQueue:
    """The queue named by ``name`` or ``DEEPGRADE_QUEUE`` (default: the database queue)."""
    name = name or os.environ.get("DEEPGRADE_QUEUE", "database")
    if name not in BACKENDS:
        raise ValueError(f"unknown queue {name!r}: use {' or '.join(BACKENDS)}")
    return BACKENDS[name](**kwargs)
