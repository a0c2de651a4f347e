"""The course service's only server extension: nbgrader's formgrader, made safe to look at student work.

Staff open students' notebooks here, on the hub's origin, with the power to act for the course.
So, beyond what nbgrader's own extension does:

- only the formgrader's URLs and JupyterHub's sign-in callback answer; Lab, terminals, kernels,
  sessions, the contents and files APIs are refused, whatever else is installed, and so is any URL
  that carries markup characters (nbgrader writes path parts into its pages unescaped);
- a student's notebook is rendered sanitised: markdown, HTML/SVG/JavaScript outputs, attachments,
  notebook and cell metadata, and the gradebook's names (:class:`StudentNotebookSanitiser`,
  :class:`StaffHTMLExporter`);
- every answer carries a Content-Security-Policy. Pages run the formgrader's own script files and
  only the inline blocks of its templates (marked with a nonce per answer; nothing from the
  notebook part of a page gets one); everything else (API answers, submission files) gets a policy
  under which nothing runs. ``frame-ancestors 'self'`` lets JupyterLab show the formgrader in a panel;
- the Autograde button changes nothing and says what to run instead (nbgrader's would delete
  ``autograded/<student>/<assignment>`` and then run student code in this process);
- ``/formgrader?path=…`` no longer reloads nbgrader's configuration from a folder of the caller's
  choosing (a student's submission folder, say).

And it tells the truth about the course: every page names the course it belongs to, and a student
with no first and last name in the gradebook (deepgrade's roster knows people by their username)
is shown by that username, not as "None, None" (:class:`RosterNamesScript`).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import secrets
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote

import nbformat
from nbconvert.exporters import HTMLExporter
from nbconvert.preprocessors.sanitize import SanitizeHTML
from nbgrader.server_extensions.formgrader import apihandlers, handlers
from nbgrader.server_extensions.formgrader.base import (
    BaseApiHandler,
    BaseHandler,
    check_notebook_dir,
    check_xsrf,
)
from nbgrader.server_extensions.formgrader.formgrader import FormgradeExtension
from tornado import web
from tornado.httputil import HTTPServerRequest
from tornado.routing import Matcher, Rule

# Answers that are not formgrader pages: JSON, files from a submission, errors. A browser that is
# made to open one as a document runs nothing in it and gets an origin of its own.
NOTHING_RUNS = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; frame-ancestors 'self'; sandbox"

AUTOGRADE_REFUSED = """\
Nothing was changed.

nbgrader's in-kernel autograde is disabled here: it would delete the graded copy and run the
student's code unsandboxed inside this service. deepgrade grades every submission in a sandbox
when it is submitted, and this page shows that result.

To grade again, run on the hub's machine:
  deepgrade grade --all {course}/{assignment}
      every student's newest submission, through the grading queue
  deepgrade autograde {course}/{assignment} --student {student}
      the submission collected here
"""

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MARKUP = re.compile(r"[<>\"'`\\\x00-\x1f]")
RASTER_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif"})
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
BLANK_GIF = "R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
NOTEBOOK_STARTS = 'id="notebook-container"'  # nbgrader's formgrade template: student content follows
COURSELESS_HEADING = "<h1>nbgrader</h1>"  # the top left of nbgrader's base template


def page_policy(nonce: str, handler_hashes: list[str]) -> str:
    """Scripts from the formgrader's static folder, and inline ones only with this answer's nonce;
    the inline event handlers of the template by exact hash. Nothing from another origin."""
    scripts = ["'self'", f"'nonce-{nonce}'"]
    if handler_hashes:
        scripts += ["'unsafe-hashes'", *handler_hashes]
    return "; ".join([
        "default-src 'self'", f"script-src {' '.join(scripts)}", "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:", "font-src 'self' data:", "connect-src 'self'", "object-src 'none'",
        "frame-src 'none'", "base-uri 'self'", "form-action 'self'", "frame-ancestors 'self'"])


class StaffPage:
    """Mixed into nbgrader's page handlers: inline scripts of the template get a nonce, up to
    ``student_content_marker`` when the page has one; a page that should have it and does not
    gets no nonce at all (it breaks visibly rather than trusting student content)."""

    student_content_marker: str | None = None

    @cached_property
    def csp_nonce(self) -> str:
        return secrets.token_urlsafe(18)

    @property
    def content_security_policy(self) -> str:
        return page_policy(self.csp_nonce, [])

    def write(self, chunk: Any) -> None:
        if isinstance(chunk, str):
            chunk = self._mark_trusted_scripts(chunk)
        super().write(chunk)  # type: ignore[misc]

    def _mark_trusted_scripts(self, page: str) -> str:
        if self.student_content_marker is None:
            trusted, rest = page, ""
        else:
            cut = page.find(self.student_content_marker)
            trusted, rest = ("", page) if cut < 0 else (page[:cut], page[cut:])
        trusted = self._named_after_course(trusted)
        handlers_in_template = sorted(set(re.findall(r"\son[a-z]+=\"([^\"]*)\"", trusted)))
        hashes = [f"'sha256-{base64.b64encode(hashlib.sha256(h.encode()).digest()).decode()}'"
                  for h in handlers_in_template]
        self.set_header("Content-Security-Policy", page_policy(self.csp_nonce, hashes))  # type: ignore[attr-defined]
        return re.sub(r"<script\b", f'<script nonce="{self.csp_nonce}"', trusted, flags=re.IGNORECASE) + rest


    def _named_after_course(self, page: str) -> str:
        """The course's name in the title and at the top of the page: nbgrader's pages say only "nbgrader"."""
        course = html.escape(self.coursedir.course_id or "")  # type: ignore[attr-defined]
        if not course:
            return page
        page = page.replace("<title>", f"<title>{course} · ", 1)
        banner = f'<h1 id="course-name" title="course">{course}</h1>'
        if COURSELESS_HEADING in page:
            return page.replace(COURSELESS_HEADING, banner, 1)
        return re.sub(r"<body\b[^>]*>", lambda body: f'{body.group(0)}<div class="container">{banner}</div>', page,
                      count=1)


class RosterNamesScript(web.RequestHandler):
    """nbgrader's student lists, with a student who has no first and last name shown by their username
    (nbgrader writes "None, None"). The script is nbgrader's own file with that one line changed; if a
    later nbgrader no longer has the line, the service fails to serve it rather than show a wrong name."""

    NAME_LINE = 'var name = last_name + ", " + first_name;'
    ROSTER_NAME = ('var name = (this.model.get("last_name") === null && this.model.get("first_name") === null)'
                   ' ? String(this.model.get("student") || this.model.get("id")) : last_name + ", " + first_name;')

    def get(self, script: str) -> None:
        source = (Path(handlers.static_path) / "js" / f"{script}.js").read_text()
        if self.NAME_LINE not in source:
            raise web.HTTPError(500, f"nbgrader's {script}.js no longer has the line deepgrade changes")
        self.set_header("Content-Type", "application/javascript; charset=utf-8")
        self.finish(source.replace(self.NAME_LINE, self.ROSTER_NAME))


class StudentNotebookSanitiser(SanitizeHTML):
    """What nbconvert's SanitizeHTML does (markdown and raw sources, HTML and markdown outputs
    bleached; JavaScript, SVG and every other output type dropped), plus everything else a student
    controls that nbgrader's formgrade template writes into the page unescaped or as a URL: cell
    and output metadata, attachments, cell ids, execution counts, notebook metadata."""

    def preprocess(self, nb: Any, resources: dict) -> tuple[Any, dict]:
        nb.metadata = nbformat.from_dict({"language_info": {"name": "python"}})
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell: Any, resources: dict, index: int) -> tuple[Any, dict]:
        cell, resources = super().preprocess_cell(cell, resources, index) or (cell, resources)
        cell.metadata = nbformat.from_dict(_safe_cell_metadata(cell.get("metadata", {})))
        if "id" in cell and not SAFE_NAME.fullmatch(str(cell.id)):
            cell.id = f"cell-{index}"
        if cell.cell_type == "markdown":
            cell.attachments = nbformat.from_dict(_safe_attachments(cell))
        if cell.cell_type == "code":
            cell.execution_count = _count(cell.get("execution_count"))
            for output in cell.get("outputs", []):
                if "execution_count" in output:
                    output.execution_count = _count(output.execution_count)
                if "metadata" in output:
                    output.metadata = nbformat.from_dict(_safe_output_metadata(output.metadata))
                if output.get("output_type") == "error":
                    output.ename, output.evalue = str(output.get("ename", "")), str(output.get("evalue", ""))
                    output.traceback = [str(line) for line in output.get("traceback", [])]
        return cell, resources


def _safe_attachments(cell: Any) -> dict[str, dict[str, str]]:
    """Raster images only (an SVG or HTML attachment goes), as base64; every attachment the markdown
    names exists, a blank image if need be (nbconvert fails the whole page on a missing one)."""
    safe = {}
    for name, bundle in (cell.get("attachments") or {}).items():
        images = {mime: data for mime, data in (bundle or {}).items()
                  if mime in RASTER_IMAGES and isinstance(data, str) and BASE64.fullmatch(data)}
        if images:
            safe[name] = images
    for name in re.findall(r"attachment:([^\s)\"'>]+)", cell.get("source", "")):
        safe.setdefault(name, {"image/gif": BLANK_GIF})
    return safe


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _safe_cell_metadata(metadata: dict) -> dict:
    """nbgrader's fields with their types checked and a grade id that is a plain name (the template
    writes it into ``id="…"``); tags that are plain names. Everything else goes."""
    safe: dict[str, Any] = {}
    tags = metadata.get("tags")
    if isinstance(tags, list):
        safe["tags"] = [tag for tag in tags if isinstance(tag, str) and SAFE_NAME.fullmatch(tag)]
    nbgrader = metadata.get("nbgrader")
    if isinstance(nbgrader, dict) and isinstance(nbgrader.get("grade_id"), str) \
            and SAFE_NAME.fullmatch(nbgrader["grade_id"]):
        safe["nbgrader"] = {key: bool(nbgrader.get(key)) for key in ("solution", "grade", "locked", "task")}
        safe["nbgrader"]["grade_id"] = nbgrader["grade_id"]
        points = nbgrader.get("points")
        if isinstance(points, (int, float)) and not isinstance(points, bool):
            safe["nbgrader"]["points"] = points
    return safe


def _safe_output_metadata(metadata: Any) -> dict:
    """Only numeric image sizes: no ``filenames`` (an image URL of the student's choosing), no
    ``isolated`` (an iframe)."""
    if not isinstance(metadata, dict):
        return {}
    return {mime: {key: value for key, value in sizes.items()
                   if key in ("width", "height") and isinstance(value, (int, float)) and not isinstance(value, bool)}
            for mime, sizes in metadata.items() if mime in RASTER_IMAGES and isinstance(sizes, dict)}


class StaffHTMLExporter(HTMLExporter):
    """The formgrader's exporter with sanitising always on (not left to configuration), and the
    gradebook's names escaped: a student's username or name is theirs to choose."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.sanitize_html = True
        self.register_preprocessor(StudentNotebookSanitiser(parent=self), enabled=True)

    def from_notebook_node(self, nb: Any, resources: dict | None = None, **kw: Any) -> tuple[str, dict]:
        resources = dict(resources or {})
        for key in ("student", "first_name", "last_name", "notebook_path", "assignment_id", "notebook_id"):
            if isinstance(resources.get(key), str):
                resources[key] = html.escape(resources[key], quote=True)
        return super().from_notebook_node(nb, resources, **kw)


class SubmissionPage(StaffPage, handlers.SubmissionHandler):
    student_content_marker = NOTEBOOK_STARTS


class FormgraderHome(BaseHandler):
    """``/formgrader``: straight to the assignments. nbgrader's handler would, given ``?path=``,
    load ``nbgrader_config.py`` from that folder and run it in this process."""

    @web.authenticated
    @check_xsrf
    @check_notebook_dir
    def get(self) -> None:
        self.redirect(f"{self.base_url}/formgrader/manage_assignments")


class RefuseAutograde(BaseApiHandler):
    """The formgrader's Autograde button: leaves every file and grade as it was, and says why and
    what to run instead (the page shows ``log`` in its dialog)."""

    @web.authenticated
    @check_xsrf
    @check_notebook_dir
    def post(self, assignment_id: str, student_id: str) -> None:
        message = AUTOGRADE_REFUSED.format(course=self.coursedir.course_id, assignment=assignment_id,
                                           student=student_id)
        self.write(json.dumps({"success": False, "log": message}))


class Refused(web.RequestHandler):
    """Whatever is not the formgrader: 403, as plain text, before any other handler sees it."""

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("Content-Security-Policy", NOTHING_RUNS)
        self.finish("this course service serves the formgrader only\n")


class OutsideFormgrader(Matcher):
    """Matches every request the course service must refuse."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/") + "/"
        self.allowed = [self.base_url + name for name in ("formgrader", "oauth_callback", "logout")]

    def match(self, request: HTTPServerRequest) -> dict | None:
        path = request.path
        if MARKUP.search(unquote(path)):
            return {}
        if path in (self.base_url, self.base_url.rstrip("/")):
            return None  # redirects to the formgrader
        if any(path == prefix or path.startswith(prefix + "/") for prefix in self.allowed):
            return None
        return {}


class SafeFormgrader(FormgradeExtension):
    """nbgrader's formgrader with the staff exporter and the handlers above swapped in."""

    replacements: ClassVar[dict[type, type]] = {
        handlers.FormgraderHandler: FormgraderHome,
        handlers.SubmissionHandler: SubmissionPage,
        apihandlers.AutogradeHandler: RefuseAutograde,
    }

    def init_tornado_settings(self, webapp: web.Application) -> None:
        super().init_tornado_settings(webapp)
        webapp.settings["nbgrader_exporter"] = StaffHTMLExporter(config=self.config)

    def init_handlers(self, webapp: web.Application) -> None:
        routes = [(pattern, self._staff_handler(handler), *rest)
                  for pattern, handler, *rest in [*handlers.default_handlers, *apihandlers.default_handlers]]
        routes += [(r"/formgrader/static/js/(manage_submissions|manage_students)\.js", RosterNamesScript),
                   (r"/formgrader/static/(.*)", web.StaticFileHandler, {"path": handlers.static_path}),
                   (r"/formgrader/.*", handlers.Template404)]
        base_url = webapp.settings["base_url"]
        webapp.add_handlers(".*$", [(base_url.rstrip("/") + "/" + pattern.lstrip("/"), *rest)
                                    for pattern, *rest in routes])

    def _staff_handler(self, handler: type) -> type:
        if handler in self.replacements:
            return self.replacements[handler]
        if issubclass(handler, BaseHandler) and not issubclass(handler, (BaseApiHandler, web.StaticFileHandler)):
            return type(handler.__name__, (StaffPage, handler), {})
        return handler


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    webapp = serverapp.web_app
    webapp.settings.setdefault("headers", {})["Content-Security-Policy"] = NOTHING_RUNS
    # first rule of the application's router: refusals are decided before any extension's handler
    webapp.default_router.rules.insert(0, Rule(OutsideFormgrader(webapp.settings["base_url"]), Refused))
    formgrader = SafeFormgrader(parent=serverapp)
    formgrader.root_dir = serverapp.root_dir
    formgrader.log = serverapp.log
    formgrader.initialize([])
    formgrader.init_tornado_settings(webapp)
    formgrader.init_handlers(webapp)
    serverapp.log.info("deepgrade: the formgrader, sanitised, and nothing else")
