"""Sign-in and accounts: NativeAuthenticator passwords, with every account and group from the roster.

- A name gets an account only through the roster. ``deepgrade users add NAME --password P``
  makes it at once. ``deepgrade users add NAME`` prints an invitation instead: a single-use,
  expiring link (``/hub/signup?invitation=CODE``), and sign-up needs it. Nobody claims a roster
  name by signing up first, and a stranger gets no account at all.
- At every sign-in, and again every ``auth_refresh_age`` seconds, the roster decides the user's
  groups in nbgrader's pattern (``formgrade-<course>`` for instructors, ``nbgrader-<course>`` for
  students). Roles hang off those groups (see ``hub.policy``). Only hub admins sign in while on
  no course.
- ``deepgrade users remove NAME`` records the removal. A removed person is a blocked user
  (JupyterHub's ``blocked_users``: no sign-in, and their servers stop and their roles go when the
  hub starts), is never enrolled again on their own, and comes back only by ``users add``.
- NativeAuthenticator's account pages (approvals, other people's passwords) are for hub admins.
  Instructors hold no account powers.
- :class:`HubAccounts` is how ``deepgrade users`` ends someone's sessions: through the hub's REST
  API, with the token of the ``deepgrade-accounts`` service, while the hub runs; in the hub's
  database when it does not, and JupyterHub does the rest when it starts.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import bcrypt
import requests
from jupyterhub import orm
from jupyterhub.orm import new_session_factory
from jupyterhub.utils import new_token
from nativeauthenticator import NativeAuthenticator, handlers
from nativeauthenticator.orm import UserInfo
from sqlalchemy.orm import Session
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat
from traitlets import Unicode, default

from hub.store import CourseStore

ACCOUNTS_SERVICE = "deepgrade-accounts"
# what ``deepgrade users`` does on a running hub: read a user, delete one, revoke tokens, move groups
ACCOUNTS_SCOPES = ["read:users", "delete:users", "tokens", "groups"]
ACCOUNTS_TOKEN_FILE = "accounts-api-token"
COURSE_GROUP_PREFIXES = ("formgrade-", "nbgrader-")
SERVER_TOKEN_NOTE = "Server at "  # JupyterHub's note on the token a user's own server runs with
ADMIN_PAGES = ("/authorize", "/discard/", "/change-password/")  # not "/change-password": one's own


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


class SignUpHandler(handlers.SignUpHandler):
    """Sign-up against an invitation. The link carries the code in its query string, and the
    form posts back to the same address, so the code comes along without a field of its own."""

    async def get(self) -> None:
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        invited = self.authenticator.store.invited_name(self.get_argument("invitation", ""))
        if invited:
            await self._show(f"You are invited as {invited}: sign up with that username.", "alert-info")
        else:
            await self._show("Sign-up needs the invitation link from your course staff, and each link "
                             "works once, before it expires.", "alert-warning")

    async def post(self) -> None:
        if not self.authenticator.enable_signup:
            raise web.HTTPError(404)
        auth = self.authenticator
        username = auth.normalize_username(self.get_body_argument("username", "", strip=True))
        password = self.get_body_argument("signup_password", "", strip=False)
        if password != self.get_body_argument("signup_password_confirmation", "", strip=False):
            problem = "The password and its confirmation differ."
        else:
            problem = auth.sign_up_problem(username, password)
        if problem is None and auth.create_user(username, password, invitation=self.get_argument("invitation", "")) is None:
            problem = (f"This invitation is not for {username}, or it was used already, or it expired: "
                       "ask your course staff for a new one.")
        if problem:
            await self._show(problem, "alert-danger")
        else:
            await self._show(f"Your account {username} is ready: sign in.", "alert-success")

    async def _show(self, message: str, alert: str) -> None:
        self.finish(await self.render_template("signup.html", ask_email=False, two_factor_auth=False,
                                               recaptcha_key=None, tos=None, result_message=message, alert=alert))


def admin_only(handler: type[handlers.LocalBase]) -> type[handlers.LocalBase]:
    """NativeAuthenticator guards its account pages with the ``admin:users`` scope, which a filtered
    role (``admin:users!group=...``) would also pass: these pages need a hub admin."""

    class AdminOnly(handler):
        async def prepare(self) -> None:
            await super().prepare()
            if not getattr(self.current_user, "admin", False):
                raise web.HTTPError(403, "only hub admins manage accounts")

    AdminOnly.__name__ = AdminOnly.__qualname__ = f"AdminOnly{handler.__name__}"
    return AdminOnly


class RosterAuthenticator(NativeAuthenticator):
    """NativeAuthenticator whose accounts, groups and removals follow the course roster."""

    db_url = Unicode("", help="deepgrade database with the roster (default DEEPGRADE_DB_URL)").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.store = CourseStore(self.db_url or None)
        self.manage_groups = True

    @default("auth_refresh_age")
    def _refresh_every_minute(self) -> int:
        """Roster changes (a new role, a removal) reach sessions within this many seconds."""
        return 60

    @default("blocked_users")
    def _removed_users(self) -> set[str]:
        """Read as the hub starts: JupyterHub then stops these people's servers and takes their roles,
        so a removal made while the hub was down is complete once it is up."""
        return self.store.removed()

    def check_blocked_users(self, username: str, authentication: Any = None) -> bool:
        """Removals and re-admissions count at once, not only from the next start."""
        return not self.store.is_removed(username)

    def get_handlers(self, app: Any) -> list[tuple[str, Any]]:
        ours = {r"/login": LoginHandler, r"/signup": SignUpHandler}
        return [(url, ours.get(url) or (admin_only(handler) if url.startswith(ADMIN_PAGES) else handler))
                for url, handler in super().get_handlers(app)]

    def sign_up_problem(self, username: str, password: str) -> str | None:
        """Why ``username`` cannot sign up with ``password`` (the invitation aside), or None."""
        if not self.validate_username(username):
            return "A username has no spaces, commas or slashes."
        existing = self.get_user(username)
        if existing is not None and existing.is_authorized:
            return f"{username} already has an account: sign in, or ask your course staff to reset it."
        if not self.is_password_strong(password):
            return f"Choose a password of at least {self.minimum_password_length} characters that is not a common one."
        return None

    def create_user(self, username: str, password: str, invitation: str = "", **kwargs: Any) -> UserInfo | None:
        """An approved account, made only against ``username``'s own unused, unexpired invitation."""
        username = self.normalize_username(username)
        if (not self.enable_signup or self.sign_up_problem(username, password)
                or not self.store.redeem_invitation(username, invitation)):
            return None
        unapproved = self.get_user(username)  # a sign-up from before invitations, which nobody approved
        if unapproved is not None:
            self.db.delete(unapproved)
        info = UserInfo(username=username, password=bcrypt.hashpw(password.encode(), bcrypt.gensalt()),
                        is_authorized=True)
        self.db.add(info)
        self.db.commit()
        return info

    async def authenticate(self, handler: Any, data: dict[str, str]) -> dict[str, Any] | None:
        username = await super().authenticate(handler, data)
        return self.roster_auth(username) if username else None

    async def refresh_user(self, user: Any, handler: Any = None) -> dict[str, Any] | bool:
        """Groups follow the roster between sign-ins; someone taken off it must sign in again (and cannot)."""
        return self.roster_auth(user.name) or False

    def roster_auth(self, username: str) -> dict[str, Any] | None:
        """The user's groups from the roster, or None for someone removed or on no course (admins aside)."""
        if self.store.is_removed(username):
            return None
        memberships = self.store.memberships(username)
        if not memberships and username not in self.admin_users:
            return None
        return {"name": username, "groups": course_groups(memberships)}


@contextmanager
def hub_db(hub_db_url: str) -> Iterator[Session]:
    """A session on JupyterHub's database; its own factory creates (and version-stamps) a fresh one."""
    db = new_session_factory(hub_db_url)()
    try:
        yield db
    finally:
        db.close()
        db.get_bind().dispose()


def set_password(hub_db_url: str, username: str, password: str) -> None:
    """Create or reset an approved NativeAuthenticator account directly in the hub database.

    This is the bootstrap path: it works before the hub has ever started.
    """
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt())
    with hub_db(hub_db_url) as db:
        info = UserInfo.find(db, username)
        if info is None:
            db.add(UserInfo(username=username, password=hashed, is_authorized=True))
        else:
            info.password, info.is_authorized = hashed, True
        db.commit()


def accounts_token(state: Path) -> str:
    """The API token of the ``deepgrade-accounts`` service, made on first use, readable by its owner only."""
    path = state / ACCOUNTS_TOKEN_FILE
    if not path.exists():
        state.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # made by another process just now
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
    return path.read_text().strip()


class HubAccounts:
    """Ends sessions and moves groups, so that roster changes act at once.

    While the hub runs (its API answers), through the REST API as the ``deepgrade-accounts``
    service. Otherwise in the hub's database: tokens revoked and the login cookie voided now, and
    JupyterHub stops a removed person's servers and takes their roles when it next starts.
    """

    def __init__(self, api_url: str, hub_db_url: str, state: Path):
        self.api_url, self.hub_db_url, self.state = api_url.rstrip("/"), hub_db_url, state

    def running(self) -> bool:
        try:
            requests.get(f"{self.api_url}/", timeout=5)
        except requests.ConnectionError:
            return False
        return True

    def has_account(self, username: str) -> bool:
        if not self._hub_db_exists():
            return False
        with hub_db(self.hub_db_url) as db:
            info = UserInfo.find(db, username)
            return info is not None and bool(info.is_authorized)

    def remove(self, username: str) -> str:
        """Sign ``username`` out everywhere, stop their servers, revoke their tokens, delete their password."""
        if self.running():
            found = self._delete_hub_user(username)
            self._end_in_db(username, delete_account=True)  # an account that never signed in has no hub user
            return ("signed out, servers stopped, tokens revoked, account deleted" if found
                    else "had never signed in; account deleted")
        self._end_in_db(username, delete_account=True)
        return ("hub not running: tokens revoked, login cookie void and account deleted now; "
                "JupyterHub stops their servers when it starts")

    def regroup(self, username: str, groups: list[str], revoke: bool) -> str:
        """Give ``username`` exactly the course ``groups``; with ``revoke`` (access was lost), also end
        the sessions that carry the old access (their own server keeps its token)."""
        if self.running():
            model = self._api("GET", f"/users/{username}", missing_ok=True)
            if model is None:
                return ""
            current = {g for g in model.json().get("groups", []) if g.startswith(COURSE_GROUP_PREFIXES)}
            for group in current - set(groups):
                self._api("DELETE", f"/groups/{group}/users", json={"users": [username]}, missing_ok=True)
            for group in set(groups) - current:  # a group nobody has joined yet comes at the next sign-in
                self._api("POST", f"/groups/{group}/users", json={"users": [username]}, missing_ok=True)
            if not revoke:
                return "groups updated"
            tokens = self._api("GET", f"/users/{username}/tokens").json()["api_tokens"]
            for token in tokens:
                if not (token.get("note") or "").startswith(SERVER_TOKEN_NOTE):
                    self._api("DELETE", f"/users/{username}/tokens/{token['id']}", missing_ok=True)
            return "groups updated and tokens revoked: they sign in again"
        if not revoke:
            return ""
        self._end_in_db(username, delete_account=False)
        return "hub not running: tokens revoked and login cookie void, so they sign in again"

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.api_url + path, timeout=120, **kwargs,
                                headers={"Authorization": f"token {accounts_token(self.state)}"})

    def _api(self, method: str, path: str, missing_ok: bool = False, **kwargs: Any) -> requests.Response | None:
        response = self._request(method, path, **kwargs)
        if response.status_code == 404 and missing_ok:
            return None
        response.raise_for_status()
        return response

    def _delete_hub_user(self, username: str, timeout: float = 120) -> bool:
        """JupyterHub's own removal: stops the servers, then drops the user with tokens and cookie."""
        deadline = time.monotonic() + timeout
        while True:
            response = self._request("DELETE", f"/users/{username}")
            if response.status_code == 404:
                return False
            if response.status_code == 400 and "stopping" in response.text and time.monotonic() < deadline:
                time.sleep(1)  # a server still stopping: JupyterHub asks to wait
                continue
            response.raise_for_status()
            return True

    def _end_in_db(self, username: str, delete_account: bool) -> None:
        if not self._hub_db_exists():
            return
        with hub_db(self.hub_db_url) as db:
            user = orm.User.find(db, username)
            if user is not None:
                for token in db.query(orm.APIToken).filter(orm.APIToken.user_id == user.id):
                    if delete_account or not (token.note or "").startswith(SERVER_TOKEN_NOTE):
                        db.delete(token)
                user.cookie_id = new_token()  # the login cookie names the old id: it signs no one in
            info = UserInfo.find(db, username) if delete_account else None
            if info is not None:
                db.delete(info)
            db.commit()

    def _hub_db_exists(self) -> bool:
        """False for a hub that never started (SQLite file not there): then there is nothing to end."""
        return not self.hub_db_url.startswith("sqlite:///") or Path(self.hub_db_url.removeprefix("sqlite:///")).exists()
