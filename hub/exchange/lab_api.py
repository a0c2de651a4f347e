"""The student server's side of the JupyterLab grading panel (``labextension/``).

A Jupyter server extension, enabled for student servers in ``hub/config/student``. The browser
holds no hub token, so the panel asks its own server, which asks the exchange service with the
server's ``JUPYTERHUB_API_TOKEN`` (exactly as nbgrader's assignment list does through
:class:`hub.exchange.plugin.ServiceExchange`): the hub, not the request, says who the student is.
Everything here is read-only:

- ``GET  <base>/deepgrade/submissions``: the student's submissions in all their courses, with
  each one's grading state (queued, grading, graded, failed) and score;
- ``GET  <base>/deepgrade/courses/<course>/submissions/<id>/result``: one submission's checks;
- ``GET  <base>/deepgrade/courses/<course>/submissions/<id>/feedback/<notebook>``: the full
  feedback page, served with the exchange's no-script sandbox policy.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from jupyter_server.utils import url_path_join
from nbgrader.exchange.abc.exchange import ExchangeError
from tornado import web

from hub.exchange.plugin import ServiceExchange

NAME = r"([A-Za-z0-9][A-Za-z0-9._-]{0,127})"
FEEDBACK_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"


class ExchangeClient(ServiceExchange):
    """The nbgrader exchange client, used for reads only: same service URL, same token."""

    def __init__(self, **kwargs: Any):
        super().__init__(coursedir=None, authenticator=None, **kwargs)

    def get_json(self, path: str, **params: str) -> Any:
        return self.call("GET", path, params=params or None).json()

    def get_bytes(self, path: str) -> bytes:
        return self.call("GET", path).content


class _ExchangeReader:
    """Runs blocking exchange calls off the server's event loop; a refusal becomes a 502 with its reason."""

    @property
    def exchange(self) -> ExchangeClient:
        return self.settings.setdefault("deepgrade_exchange", ExchangeClient())

    async def off_loop(self, work, *args: Any) -> Any:
        try:
            return await asyncio.to_thread(work, *args)
        except ExchangeError as exc:
            raise web.HTTPError(502, str(exc)) from None


class SubmissionsHandler(_ExchangeReader, APIHandler):
    @web.authenticated
    async def get(self) -> None:
        def listing() -> list[dict[str, Any]]:
            found = []
            for course, role in sorted(self.exchange.get_json("courses").items()):
                if role == "student":
                    found.extend(self.exchange.get_json(f"courses/{course}/submissions"))
            return found

        self.finish(json.dumps(await self.off_loop(listing)))


class ResultHandler(_ExchangeReader, APIHandler):
    @web.authenticated
    async def get(self, course: str, submission_id: str) -> None:
        self.finish(json.dumps(await self.off_loop(
            self.exchange.get_json, f"courses/{course}/submissions/{submission_id}/result")))


class FeedbackPageHandler(_ExchangeReader, JupyterHandler):
    @web.authenticated
    async def get(self, course: str, submission_id: str, notebook: str) -> None:
        page = await self.off_loop(self.exchange.get_bytes,
                                   f"courses/{course}/submissions/{submission_id}/feedback/{notebook}")
        self.set_header("Content-Type", "text/html; charset=utf-8")
        # the page holds the student's own outputs: it runs no script and loads nothing, here too
        self.set_header("Content-Security-Policy", FEEDBACK_POLICY)
        self.finish(page)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hub.exchange.lab_api"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    base = url_path_join(serverapp.web_app.settings["base_url"], "deepgrade")
    submission = rf"/courses/{NAME}/submissions/(\d+)"
    serverapp.web_app.add_handlers(".*$", [
        (url_path_join(base, "submissions"), SubmissionsHandler),
        (url_path_join(base, submission, "result"), ResultHandler),
        (url_path_join(base, submission, "feedback", NAME), FeedbackPageHandler),
    ])
