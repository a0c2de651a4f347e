"""The course dashboard as a hub-managed service: ``/services/<course>-dashboard/``.

Who may look: JupyterHub's OAuth decides first (the ``instructor-<course>`` role holds
``access:services!service=<course>-dashboard``; anyone else is refused by the hub or gets 403
here), and then the course roster: the signed-in user must be an instructor of this course.
Services and tokens of other kinds are refused.

What it shows is read from the course store (:mod:`hub.dashboard.report`); the only thing it
changes is the grading queue (regrade a submission or an assignment, as the exchange's grade
endpoints do), with forms protected by JupyterHub's XSRF token. Pages carry no script at all,
figures are inline SVG drawn here, every text is escaped by the templates, and the policy says
so: nothing runs, only the page's own style block (by nonce) applies. A submission's feedback
page is served under the same sandbox policy as the exchange serves it to the student.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from jupyterhub.services.auth import HubOAuthCallbackHandler, HubOAuthenticated, UserNotAllowed
from jupyterhub.utils import url_path_join
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop

from hub.dashboard import COURSE_ENV
from hub.dashboard.charts import bar_chart, score_histogram
from hub.dashboard.grades import FORMATS, grades_csv
from hub.dashboard.report import load_course, percentile, summary
from hub.store import CourseStore

if TYPE_CHECKING:
    from hub.queue import GradingQueue

log = logging.getLogger("deepgrade.dashboard")
NAME = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"
STUDENT = r"([^/]{1,128})"  # usernames are the hub's: matched loosely, always escaped
TEMPLATES = Path(__file__).parent / "templates"
# the feedback page holds a student's own outputs: nothing in it runs or loads (as the exchange serves it)
FEEDBACK_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'self'"
NOTHING_RUNS = "default-src 'none'; frame-ancestors 'self'; sandbox"


def page_policy(nonce: str) -> str:
    """No script from anywhere; the page's own style block only; forms post back here."""
    return "; ".join(["default-src 'none'", f"style-src 'nonce-{nonce}'", "img-src 'self' data:",
                      "form-action 'self'", "base-uri 'none'", "frame-ancestors 'self'"])


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}" if isinstance(value, float) and value != int(value) else f"{value:g}"


def when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def templates() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=duration, number=number, when=when, path=lambda text: quote(str(text), safe=""),
                       percent=lambda rate: f"{rate * 100:.0f}%")
    env.globals.update(bar_chart=bar_chart, score_histogram=score_histogram, percentile=percentile, summary=summary)
    return env


class DashboardHandler(HubOAuthenticated, web.RequestHandler):
    """Signed-in instructors of this course only; every answer has a policy under which nothing runs."""

    def initialize(self, course: str, store: CourseStore, env: Environment, prefix: str) -> None:
        self.course, self.store, self.env, self.prefix = course, store, env, prefix
        self.nonce = secrets.token_urlsafe(18)

    @property
    def queue(self) -> GradingQueue:
        """The grading queue, made at the first regrade: importing it is most of a start-up, and the
        hub starts its services one after another."""
        settings = self.application.settings
        if settings.get("queue") is None:
            from hub.queue import default_queue

            settings["queue"] = default_queue(store=self.store)
        return settings["queue"]

    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", NOTHING_RUNS)
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header("Cache-Control", "no-store")

    def check_hub_user(self, model: dict[str, Any]) -> dict[str, Any]:
        model = super().check_hub_user(model)
        if model.get("kind", "user") != "user" or self.store.memberships(model["name"]).get(self.course) != "instructor":
            log.warning("refused %s %s: not an instructor of %s", model.get("kind"), model.get("name"), self.course)
            raise UserNotAllowed(model)
        return model

    @property
    def instructor(self) -> str:
        return self.current_user["name"]

    def render_page(self, template: str, **context: Any) -> None:
        self.set_header("Content-Security-Policy", page_policy(self.nonce))
        self.set_header("Content-Type", "text/html; charset=utf-8")
        xsrf = self.xsrf_token  # JupyterHub's (bound to the sign-in), as bytes
        queued = self.get_argument("queued", "")  # set by a regrade's redirect: a count, nothing else shown
        page = self.env.get_template(template).render(
            course=self.course, prefix=self.prefix, nonce=self.nonce, user=self.instructor,
            xsrf=xsrf.decode() if isinstance(xsrf, bytes) else xsrf,
            queued=int(queued) if queued.isdigit() else None, **context)
        self.finish(page)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Security-Policy", NOTHING_RUNS)
        self.finish(f"{status_code}: {self._reason}\n")


class OverviewPage(DashboardHandler):
    @web.authenticated
    def get(self) -> None:
        self.render_page("overview.html", report=load_course(self.store, self.course))


class AssignmentPage(DashboardHandler):
    @web.authenticated
    def get(self, assignment: str) -> None:
        report = load_course(self.store, self.course)
        if assignment not in report.assignments:
            raise web.HTTPError(404, f"no assignment {assignment} in {self.course}")
        self.render_page("assignment.html", report=report, assignment=report.assignments[assignment])


class StudentPage(DashboardHandler):
    @web.authenticated
    def get(self, student: str) -> None:
        report = load_course(self.store, self.course)
        rows = report.student_rows(student)
        if student not in report.students and not any(row.attempts for row in rows.values()):
            raise web.HTTPError(404, "no such student in this course")
        self.render_page("student.html", report=report, student=student, rows=rows)


class FeedbackPage(DashboardHandler):
    @web.authenticated
    def get(self, submission_id: str, notebook: str) -> None:
        row = self.store.submission(int(submission_id))
        html = self.store.feedback(row.id, notebook) if row is not None and row.course == self.course else None
        if html is None:
            raise web.HTTPError(404, "no such feedback in this course")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Content-Security-Policy", FEEDBACK_POLICY)
        self.finish(html)


class GradesExport(DashboardHandler):
    @web.authenticated
    def get(self) -> None:
        layout = self.get_argument("layout", "wide")
        if layout not in FORMATS:
            raise web.HTTPError(400, f"layout is one of {', '.join(FORMATS)}")
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", f'attachment; filename="{self.course}-grades-{layout}.csv"')
        self.finish(grades_csv(load_course(self.store, self.course), layout))


class RegradeSubmission(DashboardHandler):
    @web.authenticated
    def post(self, submission_id: str) -> None:
        row = self.store.submission(int(submission_id))
        if row is None or row.course != self.course:
            raise web.HTTPError(404, "no such submission in this course")
        job = self.queue.submit(row.id, self.instructor)
        log.info("%s regrades submission %d of %s/%s (job %d)", self.instructor, row.id, self.course,
                 row.assignment, job.id)
        self.redirect(f"{self.prefix}students/{quote(row.student, safe='')}?queued=1")


class RegradeAssignment(DashboardHandler):
    @web.authenticated
    def post(self, assignment: str) -> None:
        """Each student's newest submission, as the exchange's assignment grade endpoint does."""
        jobs = [self.queue.submit(s.id, self.instructor) for s in self.store.latest_submissions(self.course, assignment)]
        log.info("%s regrades %s/%s: %d job(s)", self.instructor, self.course, assignment, len(jobs))
        self.redirect(f"{self.prefix}assignments/{assignment}?queued={len(jobs)}")


def make_app(course: str, store: CourseStore | None = None, queue: GradingQueue | None = None,
             prefix: str | None = None) -> web.Application:
    prefix = prefix or os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{course}-dashboard/")
    settings = {"course": course, "store": store or CourseStore(), "env": templates(), "prefix": prefix}
    routes = [
        (r"", OverviewPage),
        (rf"assignments/{NAME}", AssignmentPage),
        (rf"assignments/{NAME}/regrade", RegradeAssignment),
        (rf"students/{STUDENT}", StudentPage),
        (r"submissions/(\d+)/regrade", RegradeSubmission),
        (rf"submissions/(\d+)/feedback/{NAME}", FeedbackPage),
        (r"grades\.csv", GradesExport),
    ]
    handlers: list[tuple] = [(url_path_join(prefix, path) if path else prefix, handler, settings)
                             for path, handler in routes]
    handlers += [(url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
                 (prefix.rstrip("/"), web.RedirectHandler, {"url": prefix})]
    return web.Application(handlers, cookie_secret=os.urandom(32), xsrf_cookies=True, queue=queue)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="[dashboard %(asctime)s] %(message)s")
    course = os.environ[COURSE_ENV]
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:10110"))
    HTTPServer(make_app(course)).listen(url.port or 80, url.hostname or "127.0.0.1")
    log.info("dashboard of %s listening on %s", course, url.geturl())
    with contextlib.suppress(KeyboardInterrupt):  # the hub stops its services with SIGINT
        IOLoop.current().start()


if __name__ == "__main__":
    main()
