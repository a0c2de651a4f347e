"""nbgrader exchange plugin that talks to the deepgrade exchange service.

Configure it with ``c.ExchangeFactory.exchange = "hub.exchange.plugin.ServiceExchange"``
and the same for the seven operations (see ``hub/config``). Students keep nbgrader's
assignment list in JupyterLab; behind it every transfer is an HTTP call that the hub
authenticates with the server's own ``JUPYTERHUB_API_TOKEN``.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
from dateutil.tz import gettz
from nbgrader.exchange import abc
from nbgrader.exchange.abc.exchange import ExchangeError
from traitlets import Bool, Unicode, default

from hub.store import pack, unpack

SUBMISSION_ID_FILE = ".deepgrade-submission"


class ServiceExchange(abc.Exchange):
    """Shared by every operation: where the service is and how to call it."""

    service_url = Unicode(help="base URL of the exchange service").tag(config=True)
    api_token = Unicode(help="JupyterHub token sent with each request").tag(config=True)
    assignment_dir = Unicode(".").tag(config=True)
    path_includes_course = Bool(True, help="fetch into <course>/<assignment>, as students take several courses"
                                ).tag(config=True)

    @default("service_url")
    def _default_service_url(self) -> str:
        if os.environ.get("DEEPGRADE_EXCHANGE_URL"):
            return os.environ["DEEPGRADE_EXCHANGE_URL"]
        hub_api = os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api")
        return hub_api.rsplit("/hub/api", 1)[0] + "/services/exchange/"

    @default("api_token")
    def _default_api_token(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = self.service_url.rstrip("/") + "/api/" + path.lstrip("/")
        try:
            response = requests.request(method, url, timeout=60,
                                        headers={"Authorization": f"token {self.api_token}"}, **kwargs)
        except requests.RequestException as exc:
            self.fail(f"the exchange service cannot be reached: {exc}")
        if response.status_code >= 400:
            try:
                message = response.json().get("message")
            except ValueError:
                message = response.text[:200]
            self.fail(f"exchange refused {method} {path}: {response.status_code} {message}")
        return response

    @property
    def course(self) -> str:
        if not self.coursedir.course_id:
            self.fail("no course id: set CourseDirectory.course_id or pass --course")
        return self.coursedir.course_id

    def local_dir(self, course: str, assignment: str) -> Path:
        base = Path(self.assignment_dir)
        return base / course / assignment if self.path_includes_course else base / assignment

    def format_time(self, iso: str) -> str:
        return datetime.fromisoformat(iso).astimezone(gettz(self.timezone)).strftime(self.timestamp_format)

    def init_src(self) -> None:
        pass

    def init_dest(self) -> None:
        pass


class ReleaseAssignment(ServiceExchange, abc.ExchangeReleaseAssignment):
    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        folder = Path(self.coursedir.format_path(self.coursedir.release_directory, ".", assignment))
        if not folder.is_dir():
            self.fail(f"{folder} does not exist: run generate_assignment first")
        self.call("PUT", f"courses/{self.course}/assignments/{assignment}", data=pack(folder))
        self.log.info("Released %s to the exchange", assignment)


class FetchAssignment(ServiceExchange, abc.ExchangeFetchAssignment):
    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        dest = self.local_dir(self.course, assignment)
        if dest.exists() and any(dest.glob("*.ipynb")):
            self.fail(f"{dest} already exists: rename or delete it to fetch a fresh copy")
        archive = self.call("GET", f"courses/{self.course}/assignments/{assignment}").content
        unpack(archive, dest)
        self.log.info("Fetched %s into %s", assignment, dest)


class Submit(ServiceExchange, abc.ExchangeSubmit):
    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        folder = self.local_dir(self.course, assignment)
        if not folder.is_dir():
            self.fail(f"{folder} does not exist: fetch the assignment first")
        released = {nb for item in self.call("GET", f"courses/{self.course}/assignments").json()
                    if item["assignment_id"] == assignment for nb in item["notebooks"]}
        missing = released - {p.stem for p in folder.glob("*.ipynb")}
        if missing:
            message = f"notebooks missing from your submission: {', '.join(sorted(missing))}"
            if self.strict:
                self.fail(message)
            self.log.warning(message)
        archive = pack(folder, patterns=("*.ipynb",))
        info = self.call("POST", f"courses/{self.course}/submissions",
                         params={"assignment": assignment}, data=archive).json()
        self.log.info("Submitted %s as #%s at %s (server time); grading: %s", assignment, info["id"],
                      self.format_time(info["timestamp"]), (info.get("grading") or {}).get("status", "not queued"))


class Collect(ServiceExchange, abc.ExchangeCollect):
    """Downloads each student's latest submission into ``submitted/<student>/<assignment>``."""

    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        latest: dict[str, dict[str, Any]] = {}
        for s in self.call("GET", f"courses/{self.course}/submissions",
                           params={"assignment": assignment}).json():
            latest[s["student_id"]] = s  # ordered by server time, so the last one wins
        wanted = self.coursedir.student_id
        for student, s in sorted(latest.items()):
            if wanted not in ("", "*", student):
                continue
            dest = Path(self.coursedir.format_path(self.coursedir.submitted_directory, student, assignment))
            id_file = dest / SUBMISSION_ID_FILE
            if dest.exists():
                if id_file.exists() and id_file.read_text().strip() == str(s["id"]):
                    continue
                if not self.update:
                    self.log.info("Skipping %s: already collected (use --update)", student)
                    continue
                shutil.rmtree(dest)
            archive = self.call("GET", f"courses/{self.course}/submissions/{s['id']}").content
            unpack(archive, dest)
            (dest / "timestamp.txt").write_text(self.format_time(s["timestamp"]))
            id_file.write_text(str(s["id"]))
            self.log.info("Collected submission #%s of %s", s["id"], student)


class ReleaseFeedback(ServiceExchange, abc.ExchangeReleaseFeedback):
    """Sends ``feedback/<student>/<assignment>/*.html`` for the submission that was collected."""

    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        student = self.coursedir.student_id or "*"
        pattern = self.coursedir.format_path(self.coursedir.feedback_directory, student, assignment)
        for folder in sorted(Path("/").glob(pattern.lstrip("/"))):
            student_id = folder.parent.name
            submitted = Path(self.coursedir.format_path(
                self.coursedir.submitted_directory, student_id, assignment)) / SUBMISSION_ID_FILE
            if not submitted.exists():
                self.log.warning("No collected submission for %s: skipping its feedback", student_id)
                continue
            sid = submitted.read_text().strip()
            for html in sorted(folder.glob("*.html")):
                self.call("PUT", f"courses/{self.course}/submissions/{sid}/feedback/{html.stem}",
                          data=html.read_bytes())
                self.log.info("Released feedback %s for %s", html.name, student_id)


class FetchFeedback(ServiceExchange, abc.ExchangeFetchFeedback):
    def copy_files(self) -> None:
        assignment = self.coursedir.assignment_id
        mine = self.call("GET", f"courses/{self.course}/submissions", params={"assignment": assignment}).json()
        for s in mine:
            dest = self.local_dir(self.course, assignment) / "feedback" / self.format_time(s["timestamp"])
            for notebook in s["feedback"]:
                html = self.call("GET", f"courses/{self.course}/submissions/{s['id']}/feedback/{notebook}")
                dest.mkdir(parents=True, exist_ok=True)
                (dest / f"{notebook}.html").write_bytes(html.content)
                self.log.info("Fetched feedback into %s", dest)


class List(ServiceExchange, abc.ExchangeList):
    """The three listings nbgrader's UIs ask for: released, my submissions (cached), inbound."""

    def copy_files(self) -> None:  # listing transfers nothing
        pass

    def courses(self) -> list[str]:
        course = self.coursedir.course_id
        if course and course != "*":
            return [course]
        return sorted(self.call("GET", "courses").json())

    def list_files(self) -> list[dict[str, Any]]:
        assignment = self.coursedir.assignment_id if self.coursedir.assignment_id not in ("", "*") else None
        if self.inbound or self.cached:
            return self._submissions(assignment)
        found = []
        for course in self.courses():
            for item in self.call("GET", f"courses/{course}/assignments").json():
                if assignment and item["assignment_id"] != assignment:
                    continue
                local = self.local_dir(course, item["assignment_id"])
                fetched = local.is_dir()
                found.append({
                    "course_id": course, "assignment_id": item["assignment_id"],
                    "status": "fetched" if fetched else "released",
                    "path": str(local.resolve()) if fetched else item["assignment_id"],
                    "notebooks": [{"notebook_id": nb, "path": str((local / f"{nb}.ipynb").resolve())}
                                  for nb in item["notebooks"]],
                })
        return found

    def _submissions(self, assignment: str | None) -> list[dict[str, Any]]:
        groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for course in self.courses():
            params = {"assignment": assignment} if assignment else {}
            for s in self.call("GET", f"courses/{course}/submissions", params=params).json():
                timestamp = self.format_time(s["timestamp"])
                local = self.local_dir(course, s["assignment_id"]) / "feedback" / timestamp
                notebooks = [{"notebook_id": nb, "has_exchange_feedback": True,
                              "has_local_feedback": (local / f"{nb}.html").exists(),
                              "local_feedback_path": str(local / f"{nb}.html"), "feedback_updated": False}
                             for nb in s["feedback"]]
                has_local = bool(notebooks) and all(nb["has_local_feedback"] for nb in notebooks)
                # nbgrader's assignment list shows this text as is: the student reads the grading's state there
                label = f"{timestamp} · {s['grading']['status']}" if s.get("grading") else timestamp
                groups.setdefault((course, s["student_id"], s["assignment_id"]), []).append({
                    "course_id": course, "student_id": s["student_id"], "assignment_id": s["assignment_id"],
                    "status": "submitted", "timestamp": label, "submission_id": s["id"], "grading": s.get("grading"),
                    "notebooks": notebooks, "has_exchange_feedback": bool(s["feedback"]),
                    "has_local_feedback": has_local, "feedback_updated": False,
                    "local_feedback_path": str(local) if has_local else None,
                })
        return [{"course_id": c, "student_id": st, "assignment_id": a, "status": "submitted",
                 "submissions": subs} for (c, st, a), subs in sorted(groups.items())]

    def remove_files(self) -> list[dict[str, Any]]:
        if self.inbound or self.cached:
            self.fail("submissions are never deleted")
        listed = self.list_files()
        for item in listed:
            self.call("DELETE", f"courses/{item['course_id']}/assignments/{item['assignment_id']}")
            item["status"] = "removed"
        return listed


__all__ = [
    "Collect",
    "ExchangeError",
    "FetchAssignment",
    "FetchFeedback",
    "List",
    "ReleaseAssignment",
    "ReleaseFeedback",
    "ServiceExchange",
    "Submit",
]
