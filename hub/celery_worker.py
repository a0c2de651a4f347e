"""The Celery app behind ``CeleryQueue``: one task, ``deepgrade.grade(job_id)``.

Messages are acknowledged only after the job is finished (``acks_late``), so a worker
killed with SIGKILL leaves its message to be delivered again; every worker also sweeps
the job table when it starts and re-sends what is still open. Duplicate deliveries are
harmless: the job table's fenced claim lets exactly one worker grade each attempt.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from celery import Celery
from celery.signals import worker_ready

from autograders.kernels import WarmPool
from hub.store import CourseStore
from hub.worker import DEFAULT_LEASE, run_job, worker_name

app = Celery("deepgrade", broker=os.environ.get("DEEPGRADE_BROKER_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": int(os.environ.get("DEEPGRADE_VISIBILITY_TIMEOUT", "3600"))},
    task_ignore_result=True,
)

POOL: WarmPool | None = None  # set by CeleryQueue.start for the worker's task threads


def _lease() -> float:
    return float(os.environ.get("DEEPGRADE_JOB_LEASE", DEFAULT_LEASE))


@app.task(name="deepgrade.grade", bind=True, max_retries=None)
def grade(self, job_id: int) -> str:
    store = CourseStore()
    job = store.claim(worker_name(), _lease(), job_id=job_id)
    if job is None:
        current = store.job(job_id)
        if current is None or current.done:
            return "already done"  # a duplicate delivery
        # not due yet (rate limit) or another worker holds a live lease: look again later
        wait = (current.not_before - datetime.now(UTC)).total_seconds() if current.state == "queued" else _lease()
        raise self.retry(countdown=max(1.0, wait))
    run_job(store, job, _lease(), pool=POOL)
    return store.job(job_id).state


@worker_ready.connect
def _resend_open_jobs(**_: object) -> None:
    """After a crash, open jobs may have no message left in the broker: send them again."""
    store = CourseStore()
    for state in ("queued", "grading"):
        for job in store.jobs(state):
            app.send_task("deepgrade.grade", args=[job.id])
