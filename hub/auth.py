"""Sign-in: NativeAuthenticator passwords, with course membership from the deepgrade roster.

- Sign-up is either closed (``enable_signup = False``) or needs approval: a person on the
  roster is approved when they sign up, anyone else waits for an instructor at
  ``/hub/authorize``.
- At every sign-in the roster decides the user's groups, in nbgrader's pattern:
  ``formgrade-<course>`` for instructors and ``nbgrader-<course>`` for students.
  Roles hang off those groups (see ``hub.policy``).
"""

from __future__ import annotations

from typing import Any

import bcrypt
from jupyterhub.orm import new_session_factory
from nativeauthenticator import NativeAuthenticator, handlers
from nativeauthenticator.orm import UserInfo
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import List, Unicode

from hub.store import CourseStore


def course_groups(memberships: dict[str, str]) -> list[str]:
    return sorted(f"{'formgrade' if role == 'instructor' else 'nbgrader'}-{course}"
                  for course, role in memberships.items())


class _NoTimer:
    def start(self) -> _NoTimer:
        return self

    def stop(self, send: bool = True) -> None:
        pass


class LoginHandler(handlers.LoginHandler):
    """nativeauthenticator 1.3.0 predates JupyterHub 6: it still times logins with the removed
    ``statsd`` client, and its ``_render`` does not take the ``sync`` flag JupyterHub now passes."""

    class statsd:  # stands in for the attribute JupyterHub 6 removed
        @staticmethod
        def timer(name: str) -> _NoTimer:
            return _NoTimer()

    def _render(self, login_error: str | None = None, username: str | None = None, sync: bool = False):
        return self.render_template(
            "native-login.html", sync=sync, next=url_escape(self.get_argument("next", default="")),
            username=username, login_error=login_error, custom_html=self.authenticator.custom_html,
            login_url=self.settings["login_url"], enable_signup=self.authenticator.enable_signup,
            two_factor_auth=self.authenticator.allow_2fa,
            authenticator_login_url=url_concat(self.authenticator.login_url(self.hub.base_url),
                                               {"next": self.get_argument("next", "")}))


class RosterAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose approvals and groups follow the course roster."""

    courses = List(Unicode(), help="Courses an approved newcomer joins as a student").tag(config=True)
    db_url = Unicode("", help="deepgrade database with the roster (default DEEPGRADE_DB_URL)").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = CourseStore(self.db_url or None)
        self.manage_groups = True

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        return [(url, LoginHandler if url == r"/login" else handler)
                for url, handler in super().get_handlers(app)]

    def get_authed_users(self) -> set[str]:
        return super().get_authed_users() | {m.username for m in self.store.roster()}

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        username = await super().authenticate(handler, data)
        if not username:
            return None
        memberships = self.store.memberships(username)
        if not memberships:  # approved by an instructor at /hub/authorize
            self.store.add_member(username, "student", self.courses)
            memberships = self.store.memberships(username)
        return {"name": username, "groups": course_groups(memberships)}


def set_password(hub_db_url: str, username: str, password: str) -> None:
    """Create or reset an approved NativeAuthenticator account directly in the hub database.

    This is the bootstrap path: it works before the hub has ever started.
    """
    # JupyterHub's own factory creates (and version-stamps) its schema on a fresh database
    db = new_session_factory(hub_db_url)()
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    try:
        info = UserInfo.find(db, username)
        if info is None:
            db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        else:
            info.password, info.is_authorized = hashed, True
        db.commit()
    finally:
        db.close()
        db.get_bind().dispose()
