"""The exchange as a hub-managed service, in place of nbgrader's world-writable folder.

Every request is authenticated by JupyterHub (the caller's token), and the caller's
identity, never a field in the request, decides what it may do:

- a student lists and fetches releases of their courses, submits as themself only,
  and reads only their own submissions and feedback;
- an instructor of the course, or the course's formgrader service, releases, collects
  and returns feedback.

The server's clock dates each submission, and each submission is a new row. Each
submission is put in the grading queue at once; its latest job's state (queued, grading,
graded, failed with a reason) and score come back with every listing, and the feedback
is published when grading ends. Instructors may regrade a submission or an assignment.

``GET …/courses/<course>/assignments/<assignment>/scores`` is a student's score history: each of
their submissions with its time and score, the assignment's score policy (``latest`` or ``best``)
and which submission counts under it. A student reads their own only; an instructor names the
student (``?student=<name>``).

``POST …/courses/<course>/assignments/<assignment>/practice`` records a student's formative
``check()`` or ``hint()`` (sent by their kernel, capped per student and assignment) for the course
dashboard; it never touches a grade.

What is kept is limited by what archives expand to (``hub.store.ExchangeLimits``: the
``DEEPGRADE_ARCHIVE_MAX_MB``, ``DEEPGRADE_ARCHIVE_MAX_FILES``, ``DEEPGRADE_STUDENT_QUOTA_MB`` and
``DEEPGRADE_SUBMISSIONS_PER_ASSIGNMENT`` settings). A refusal is a JSON ``{"status", "message"}``
that the nbgrader plugin shows: 400 for an unsafe or broken archive, 413 for one too large or
over the student's storage quota, 429 past the submissions allowed per assignment. Request
bodies larger than any allowed archive are cut off by the HTTP server itself. Reading archives
runs on a small thread pool, off the event loop, so one upload never stalls other requests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from jupyterhub.services.auth import HubAuth, HubAuthenticated
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from autograders.assignment import Assignment
from autograders.gradebook import counting, policy_reason
from hub.queue import GradingQueue, default_queue
from hub.store import (
    CourseStore,
    ExchangeLimits,
    JobInfo,
    Refused,
    ScoredSubmission,
    SubmissionInfo,
    notebooks_in,
)

log = logging.getLogger("deepgrade.exchange")
NAME = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"
ARCHIVE_THREADS = 2  # archives read at once: bounds the CPU and memory that uploads take together
T = TypeVar("T")


def job_model(job: JobInfo | None) -> dict[str, Any] | None:
    if job is None:
        return None
    return {"job": job.id, "state": job.state, "score": job.score, "max_score": job.max_score,
            "message": job.message, "attempt": job.attempt, "status": job.describe()}


def submission_model(s: SubmissionInfo) -> dict[str, Any]:
    grading = job_model(s.grading)
    if grading:
        grading["status"] = s.status()
    return {"id": s.id, "course_id": s.course, "assignment_id": s.assignment, "student_id": s.student,
            "timestamp": s.submitted_at.isoformat(), "feedback": list(s.feedback), "grading": grading}


def score_policy(course: str, assignment: str) -> str:
    """The assignment's ``score:`` setting; ``latest`` (the default) where this server has no copy of it."""
    try:
        return Assignment.load(f"{course}/{assignment}").score_policy
    except FileNotFoundError:
        return "latest"


def scores_model(course: str, assignment: str, student: str, history: list[ScoredSubmission],
                 policy: str) -> dict[str, Any]:
    counted = counting([s.attempt for s in history], policy)
    return {"course_id": course, "assignment_id": assignment, "student_id": student, "policy": policy,
            "counted": counted.key if counted else None, "reason": policy_reason(policy),
            "submissions": [{"id": s.id, "timestamp": s.submitted_at.isoformat(), "state": s.state,
                             "score": s.score, "max_score": s.max_score,
                             "counts": counted is not None and s.id == counted.key} for s in history]}


class ExchangeHandler(HubAuthenticated, web.RequestHandler):
    """Base: resolves the caller and their role in the course."""

    def initialize(self, store: CourseStore, hub_auth: HubAuth, queue: GradingQueue, limits: ExchangeLimits,
                   archives: ThreadPoolExecutor) -> None:
        self.store = store
        self.hub_auth = hub_auth
        self.queue = queue
        self.limits = limits
        self.archives = archives

    async def off_loop(self, work: Callable[..., T], *args: Any) -> T:
        """Run archive work on the archive threads; a refusal becomes its HTTP status and reason."""
        try:
            return await IOLoop.current().run_in_executor(self.archives, work, *args)
        except Refused as exc:
            raise web.HTTPError(exc.status, str(exc)) from None

    def check_xsrf_cookie(self) -> None:  # token-authenticated API, no cookies involved
        pass

    @property
    def caller(self) -> dict[str, Any]:
        user = self.get_current_user()
        if not user:
            raise web.HTTPError(403, "a JupyterHub token is required")
        return user

    def role(self, course: str) -> str | None:
        """'instructor', 'student' or None for the caller in ``course``."""
        caller = self.caller
        if caller.get("kind") == "service":
            # a course's formgrader service is named after the course
            return "instructor" if caller["name"] == course else None
        return self.store.memberships(caller["name"]).get(course)

    def require(self, course: str, *roles: str) -> str:
        role = self.role(course)
        if role not in roles:
            raise web.HTTPError(403, f"{self.caller['name']} may not do this in course {course}")
        return role

    def send_json(self, value: Any, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(value))

    def send_archive(self, data: bytes, name: str) -> None:
        self.set_header("Content-Type", "application/gzip")
        self.set_header("Content-Disposition", f'attachment; filename="{name}.tar.gz"')
        self.finish(data)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None))[1]
        message = exc.log_message if isinstance(exc, web.HTTPError) and exc.log_message else self._reason
        self.finish(json.dumps({"status": status_code, "message": message}))


class CoursesHandler(ExchangeHandler):
    @web.authenticated
    def get(self) -> None:
        caller = self.caller
        if caller.get("kind") == "service":
            self.send_json({caller["name"]: "instructor"})
        else:
            self.send_json(self.store.memberships(caller["name"]))


class AssignmentsHandler(ExchangeHandler):
    @web.authenticated
    async def get(self, course: str) -> None:
        self.require(course, "student", "instructor")
        listing = []
        for r in self.store.releases(course):
            listing.append({"course_id": course, "assignment_id": r.assignment,
                            "released_at": r.released_at.isoformat(),
                            "notebooks": await self.off_loop(notebooks_in, r.archive)})
        self.send_json(listing)


class AssignmentHandler(ExchangeHandler):
    @web.authenticated
    def get(self, course: str, assignment: str) -> None:
        self.require(course, "student", "instructor")
        release = self.store.released(course, assignment)
        if release is None:
            raise web.HTTPError(404, f"{assignment} is not released in {course}")
        self.send_archive(release.archive, assignment)

    @web.authenticated
    async def put(self, course: str, assignment: str) -> None:
        self.require(course, "instructor")
        when = await self.off_loop(self.store.release, course, assignment, self.request.body, self.limits)
        log.info("%s released %s/%s", self.caller["name"], course, assignment)
        self.send_json({"course_id": course, "assignment_id": assignment, "released_at": when.isoformat()})

    @web.authenticated
    def delete(self, course: str, assignment: str) -> None:
        self.require(course, "instructor")
        if not self.store.unrelease(course, assignment):
            raise web.HTTPError(404, f"{assignment} is not released in {course}")
        self.send_json({"removed": assignment})


class ScoresHandler(ExchangeHandler):
    @web.authenticated
    def get(self, course: str, assignment: str) -> None:
        """A student's submissions of ``assignment`` with their scores, and which one counts."""
        role = self.require(course, "student", "instructor")
        student = self.get_argument("student", None)
        if role == "student":
            if student not in (None, self.caller["name"]):
                raise web.HTTPError(403, "students may only read their own scores")
            student = self.caller["name"]
        elif not student:
            raise web.HTTPError(400, "name the student: ?student=<name>")
        history = self.store.score_history(course, assignment, student)
        self.send_json(scores_model(course, assignment, student, history, score_policy(course, assignment)))


PRACTICE_BODY_BYTES = 4096


class PracticeHandler(ExchangeHandler):
    """A student's formative ``check()`` or ``hint()``, sent from their kernel for the course dashboard.

    Only the caller's own practice in a course they take is kept, and it is capped: a kernel can
    send anything, so these are counts of claims, never grades."""

    @web.authenticated
    def post(self, course: str, assignment: str) -> None:
        if self.require(course, "student", "instructor") != "student" or self.caller.get("kind") == "service":
            self.send_json({"kept": False})  # an instructor trying the checks is not the class practising
            return
        if len(self.request.body) > PRACTICE_BODY_BYTES:
            raise web.HTTPError(413, "a practice record is a few small fields")
        try:
            event = json.loads(self.request.body)
            exercise, kind = event["exercise"], event["kind"]
            passed, total = event.get("passed"), event.get("total")
        except (ValueError, TypeError, KeyError):
            raise web.HTTPError(400, "send JSON with exercise and kind (and passed, total for a check)") from None
        counts_ok = all(v is None or (type(v) is int and 0 <= v <= 10_000) for v in (passed, total))
        if not (isinstance(exercise, str) and re.fullmatch(NAME, exercise)) or not counts_ok:
            raise web.HTTPError(400, "exercise must be a grade cell's name; passed and total small counts")
        if self.store.released(course, assignment) is None:
            raise web.HTTPError(404, f"{assignment} is not released in {course}")
        try:
            self.store.record_practice(course, assignment, self.caller["name"], exercise, kind, passed, total)
        except Refused as exc:
            raise web.HTTPError(exc.status, str(exc)) from None
        self.send_json({"kept": True}, status=201)


class SubmissionsHandler(ExchangeHandler):
    @web.authenticated
    def get(self, course: str) -> None:
        role = self.require(course, "student", "instructor")
        student = self.get_argument("student", None)
        if role == "student":
            if student not in (None, self.caller["name"]):
                raise web.HTTPError(403, "students may only list their own submissions")
            student = self.caller["name"]
        found = self.store.submissions(course, self.get_argument("assignment", None), student)
        self.send_json([submission_model(s) for s in found])

    @web.authenticated
    async def post(self, course: str) -> None:
        self.require(course, "student", "instructor")
        me = self.caller["name"]
        if self.caller.get("kind") == "service":
            raise web.HTTPError(403, "services do not submit")
        if self.get_argument("student", me) != me:
            raise web.HTTPError(403, f"{me} may only submit as {me}")
        assignment = self.get_argument("assignment")
        if self.store.released(course, assignment) is None:
            raise web.HTTPError(404, f"{assignment} is not released in {course}")
        info = await self.off_loop(self.store.submit, course, assignment, me, self.request.body, self.limits)
        job = self.queue.submit(info.id, me)  # stored first, so a queue failure loses nothing
        log.info("%s submitted %s/%s as #%d (grading job %d)", me, course, assignment, info.id, job.id)
        self.send_json({**submission_model(info), "grading": job_model(job)}, status=201)


class SubmissionHandler(ExchangeHandler):
    def owned(self, course: str, submission_id: str):
        role = self.require(course, "student", "instructor")
        row = self.store.submission(int(submission_id))
        if row is None or row.course != course or (role == "student" and row.student != self.caller["name"]):
            raise web.HTTPError(404, f"no submission {submission_id} of yours in {course}")
        return row

    @web.authenticated
    def get(self, course: str, submission_id: str) -> None:
        row = self.owned(course, submission_id)
        self.send_archive(row.archive, f"{row.assignment}-{row.id}")


class FeedbackHandler(SubmissionHandler):
    @web.authenticated
    def get(self, course: str, submission_id: str, notebook: str) -> None:
        row = self.owned(course, submission_id)
        html = self.store.feedback(row.id, notebook)
        if html is None:
            raise web.HTTPError(404, f"no feedback for {notebook} yet")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        # the page holds the student's own outputs: never let it run scripts or load anything
        self.set_header("Content-Security-Policy", "sandbox; default-src 'none'; img-src data:; "
                                                   "style-src 'unsafe-inline'")
        self.finish(html)

    @web.authenticated
    def put(self, course: str, submission_id: str, notebook: str) -> None:
        self.require(course, "instructor")
        row = self.owned(course, submission_id)
        self.store.add_feedback(row.id, notebook, self.request.body)
        self.send_json({"submission": row.id, "notebook": notebook})


class RegradeSubmissionHandler(SubmissionHandler):
    @web.authenticated
    def post(self, course: str, submission_id: str) -> None:
        self.require(course, "instructor")
        row = self.owned(course, submission_id)
        job = self.queue.submit(row.id, self.caller["name"])
        self.send_json(job_model(job), status=202)


class RegradeAssignmentHandler(ExchangeHandler):
    @web.authenticated
    def post(self, course: str, assignment: str) -> None:
        """Regrade each student's newest submission of ``assignment``."""
        self.require(course, "instructor")
        jobs = [self.queue.submit(s.id, self.caller["name"]) for s in self.store.latest_submissions(course, assignment)]
        self.send_json([job_model(j) for j in jobs], status=202)


def make_app(store: CourseStore | None = None, prefix: str | None = None, queue: GradingQueue | None = None,
             limits: ExchangeLimits | None = None) -> web.Application:
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/exchange/")
    store = store or CourseStore()
    settings = {"store": store, "hub_auth": HubAuth(cache_max_age=30), "queue": queue or default_queue(store=store),
                "limits": limits or ExchangeLimits.from_env(),
                "archives": ThreadPoolExecutor(ARCHIVE_THREADS, thread_name_prefix="exchange-archives")}
    api = url_path_join(prefix, "api")
    routes = [
        (r"/courses", CoursesHandler),
        (rf"/courses/{NAME}/assignments", AssignmentsHandler),
        (rf"/courses/{NAME}/assignments/{NAME}", AssignmentHandler),
        (rf"/courses/{NAME}/assignments/{NAME}/grade", RegradeAssignmentHandler),
        (rf"/courses/{NAME}/assignments/{NAME}/scores", ScoresHandler),
        (rf"/courses/{NAME}/assignments/{NAME}/practice", PracticeHandler),
        (rf"/courses/{NAME}/submissions", SubmissionsHandler),
        (rf"/courses/{NAME}/submissions/(\d+)", SubmissionHandler),
        (rf"/courses/{NAME}/submissions/(\d+)/grade", RegradeSubmissionHandler),
        (rf"/courses/{NAME}/submissions/(\d+)/feedback/{NAME}", FeedbackHandler),
        __import__("hub.exchange.results_api", fromlist=["ROUTE"]).ROUTE,  # a student's own result, check by check
    ]
    return web.Application([(api + path, handler, settings) for path, handler in routes])


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[exchange %(asctime)s] %(message)s")
    url = os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10101")
    from urllib.parse import urlparse

    parsed = urlparse(url)
    store = CourseStore()
    queue = default_queue(store=store)
    workers = int(os.environ.get("DEEPGRADE_WORKERS", "1"))
    if workers and os.environ.get("DEEPGRADE_QUEUE", "database") == "database":
        queue.start(workers)  # the embedded default: graders run beside the exchange
    limits = ExchangeLimits.from_env()
    # a body larger than any allowed archive is cut off before it is buffered
    server = HTTPServer(make_app(store, queue=queue, limits=limits), max_body_size=limits.stream_bytes)
    server.listen(parsed.port or 80, parsed.hostname or "127.0.0.1")
    log.info("exchange listening on %s", url)
    with contextlib.suppress(KeyboardInterrupt):  # the hub stops its services with SIGINT
        IOLoop.current().start()


if __name__ == "__main__":
    main()
