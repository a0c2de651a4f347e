"""The course policy every deployment mode shares: settings, groups, roles, services, limits.

``jupyterhub_config.py`` calls :func:`apply_course_policy` and then one mode module
(``hub.local`` now; Docker and Kubernetes modes reuse this policy unchanged).
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograders.assignment import find_all, repo_root
from hub.auth import ACCOUNTS_SCOPES, ACCOUNTS_SERVICE, accounts_token
from hub.store import LIMIT_SETTINGS, data_root

CONFIG_DIR = Path(__file__).parent / "config"
EXCHANGE = "exchange"


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class HubSettings:
    """Everything a mode needs to know, read from the environment in one place."""

    mode: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_HUB_MODE", "local"))
    ip: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_HUB_IP", "127.0.0.1"))
    port: int = field(default_factory=lambda: _port("DEEPGRADE_HUB_PORT", 8000))
    hub_api_port: int = field(default_factory=lambda: _port("DEEPGRADE_HUB_API_PORT", 8081))
    proxy_api_port: int = field(default_factory=lambda: _port("DEEPGRADE_PROXY_API_PORT", 8001))
    service_port: int = field(default_factory=lambda: _port("DEEPGRADE_SERVICE_PORT", 10100))
    # where hub services (exchange, formgraders) listen: other pods must reach them on a cluster
    service_host: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_SERVICE_HOST", "127.0.0.1"))
    signup: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_SIGNUP", "approval"))
    data: Path = field(default_factory=data_root)

    @property
    def state(self) -> Path:
        return self.data / "hub"

    @property
    def hub_db_url(self) -> str:
        return os.environ.get("DEEPGRADE_HUB_DB_URL") or f"sqlite:///{self.state / 'jupyterhub.sqlite'}"

    @property
    def courses(self) -> list[str]:
        return sorted({a.course for a in find_all()})

    def course_root(self, course: str) -> Path:
        return self.data / "courses" / course

    def service_url(self, index: int) -> str:
        return f"http://{self.service_host}:{self.service_port + index}"

    @property
    def exchange_url(self) -> str:
        """Where servers reach the exchange service directly (not through the public proxy)."""
        return os.environ.get("DEEPGRADE_EXCHANGE_URL") or f"{self.service_url(0)}/services/{EXCHANGE}/"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{self.port}/"


def apply_course_policy(c: Any, settings: HubSettings) -> None:
    courses = settings.courses
    exchange_access = f"access:services!service={EXCHANGE}"

    # Sign-in and the roster
    c.JupyterHub.authenticator_class = "hub.auth.RosterAuthenticator"
    c.Authenticator.allow_all = True  # NativeAuthenticator approves; unapproved users cannot sign in
    c.NativeAuthenticator.enable_signup = settings.signup != "closed"
    c.NativeAuthenticator.open_signup = False
    c.NativeAuthenticator.minimum_password_length = 8
    c.NativeAuthenticator.allowed_failed_logins = 10
    c.NativeAuthenticator.seconds_before_next_try = 60

    # Roles: students get their own server and the exchange; instructors get their course's
    # formgrader and dashboard and may see its students, and hold no power over accounts (the operator does,
    # with `deepgrade users`, through the deepgrade-accounts service). Services get only what they call.
    roles = [
        {"name": "user", "scopes": ["self", exchange_access]},
        {"name": "server", "scopes": ["users:activity!user", "access:servers!server", exchange_access]},
        {"name": "deepgrade-exchange", "services": [EXCHANGE], "scopes": []},
        {"name": ACCOUNTS_SERVICE, "services": [ACCOUNTS_SERVICE], "scopes": ACCOUNTS_SCOPES},
    ]
    services = [{
        "name": EXCHANGE, "url": settings.service_url(0), "display": False,
        "command": [sys.executable, "-m", "hub.exchange.service"],
        # the exchange also hosts the embedded grading workers (DEEPGRADE_QUEUE=database)
        "environment": {**_passthrough("DEEPGRADE_HOME", "DEEPGRADE_DB_URL", "DEEPGRADE_ASSIGNMENTS", "PATH",
                                       *GRADING_SETTINGS, *LIMIT_SETTINGS), "TF_CPP_MIN_LOG_LEVEL": "3"},
    }, {
        # no server: the token `deepgrade users` acts with on a running hub (see hub.auth.HubAccounts)
        "name": ACCOUNTS_SERVICE, "api_token": accounts_token(settings.state), "display": False,
    }]
    for index, course in enumerate(courses, start=1):
        students = f"group=nbgrader-{course}"
        roles.append({"name": f"instructor-{course}", "groups": [f"formgrade-{course}"],
                      "scopes": [f"access:services!service={course}",
                                 f"access:services!service={dashboard_name(course)}", f"list:users!{students}",
                                 f"read:users!{students}", f"read:groups!{students}"]})
        roles.append({"name": f"student-{course}", "groups": [f"nbgrader-{course}"], "scopes": []})
        roles.append({"name": f"formgrader-{course}", "services": [course], "scopes": [exchange_access]})
        services.append(formgrader_service(settings, course, index))
        services.append(dashboard_service(settings, course, len(courses) + index))
    # added to what the deployment configured before (z2jh's idle culler and its role)
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles]
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), *services]

    # Limits that every spawner honours where it can
    c.Spawner.default_url = "/lab"
    c.Spawner.mem_limit = os.environ.get("DEEPGRADE_SERVER_MEMORY", "4G")
    c.Spawner.cpu_limit = float(os.environ.get("DEEPGRADE_SERVER_CPUS", "2"))
    c.Spawner.start_timeout = 120
    c.Spawner.http_timeout = 90
    c.JupyterHub.concurrent_spawn_limit = 20


def formgrader_service(settings: HubSettings, course: str, index: int) -> dict[str, Any]:
    """nbgrader's formgrader for one course, as a hub-managed service named after the course.

    It shows students' work to staff, so it is kept from doing anything else (see
    hub/config/formgrader) and confined: in a bubblewrap sandbox it sees the code read-only and
    writes only its course folder; started by root, it runs as an unprivileged uid that owns that
    folder (where bubblewrap cannot run, in a container say, it still drops to that uid)."""
    root = settings.course_root(course)
    root.mkdir(parents=True, exist_ok=True)
    server = [shutil.which("jupyterhub-singleuser") or "jupyterhub-singleuser", f"--ServerApp.root_dir={root}"]
    env = _passthrough("DEEPGRADE_HOME", "DEEPGRADE_DB_URL", "DEEPGRADE_GRADEBOOK_URL", "DEEPGRADE_ASSIGNMENTS", "PATH")
    env.update({"JUPYTER_CONFIG_PATH": os.pathsep.join([str(CONFIG_DIR / "formgrader"),
                                                         str(CONFIG_DIR / "common")]),
                "JUPYTERHUB_DEFAULT_URL": "/formgrader", "TF_CPP_MIN_LOG_LEVEL": "3",
                "DEEPGRADE_EXCHANGE_URL": settings.exchange_url})
    command = _confined_course_service(server, root, env)
    return {"name": course, "url": settings.service_url(index), "command": command, "cwd": str(root),
            "environment": env, "oauth_no_confirm": True, "display": True}


def dashboard_name(course: str) -> str:
    return f"{course}-dashboard"


def dashboard_service(settings: HubSettings, course: str, index: int) -> dict[str, Any]:
    """The course dashboard (``hub.dashboard``): the class at a glance for the course's instructors,
    who alone hold its access scope; it reads the course database and may queue regrades."""
    from hub.dashboard import COURSE_ENV

    # what the queue needs to take a regrade, and no grading secret
    env = _passthrough("DEEPGRADE_HOME", "DEEPGRADE_DB_URL", "DEEPGRADE_ASSIGNMENTS", "PATH", "DEEPGRADE_QUEUE",
                       "DEEPGRADE_BROKER_URL")
    env[COURSE_ENV] = course
    return {"name": dashboard_name(course), "url": settings.service_url(index), "display": True,
            "oauth_no_confirm": True, "command": [sys.executable, "-m", "hub.dashboard.service"], "environment": env}


def _confined_course_service(server: list[str], root: Path, env: dict[str, str]) -> list[str]:
    """``server`` wrapped so that it can write only ``root`` and, started by root, is not root.
    Sets HOME (nothing of the host's is needed) where the command gets a private /tmp."""
    from autograders.sandbox import BubblewrapSandbox, hand_over

    sandbox = BubblewrapSandbox(network=True)  # the service listens for the proxy and calls the hub
    if os.geteuid() == 0 and not sandbox.drops_privileges:  # run_as = 0: for debugging only
        server = [*server, "--allow-root"]
    if BubblewrapSandbox.available():
        sandbox.prepare(root)
        env["HOME"] = "/tmp"
        code = [repo_root() / package for package in ("hub", "autograders")]  # not the data beside it
        return sandbox.wrap(server, workdir=root, readonly=code, env=env)
    if sandbox.drops_privileges:
        hand_over(root, sandbox.run_as, sandbox.run_as_group)
        env["HOME"] = str(root)
        return ["setpriv", f"--reuid={sandbox.run_as}", f"--regid={sandbox.run_as_group}", "--clear-groups",
                "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--", *server]
    return server


def prepare_courses(settings: HubSettings) -> None:
    """Lay out each course directory the way nbgrader expects (source/, release/, config)."""
    from autograders.formative import RELEASE_FOLDER as PUBLIC_CHECKS

    for assignment in find_all():
        root = settings.course_root(assignment.course)
        for kind, notebook in (("source", assignment.source_notebook), ("release", assignment.release_notebook)):
            dest = root / kind / assignment.name
            dest.mkdir(parents=True, exist_ok=True)
            if notebook.exists():
                shutil.copy2(notebook, dest / notebook.name)
        public = assignment.release_notebook.parent / PUBLIC_CHECKS  # shipped with the release: see autograders.formative
        if public.is_dir():
            shutil.copytree(public, root / "release" / assignment.name / public.name, dirs_exist_ok=True)
    from autograders.gradebook import gradebook_url

    for course in settings.courses:
        root = settings.course_root(course)
        config = ("c = get_config()  # noqa: F821 -- written by deepgrade\n"
                  f"c.CourseDirectory.course_id = {course!r}\n"
                  f"c.CourseDirectory.root = {str(root)!r}\n")
        if os.environ.get("DEEPGRADE_GRADEBOOK_URL"):  # the formgrader reads the workers' shared gradebook
            config += f"c.CourseDirectory.db_url = {gradebook_url(course, root)!r}\n"
        (root / "nbgrader_config.py").write_text(config)


GRADING_SETTINGS = ("DEEPGRADE_QUEUE", "DEEPGRADE_WORKERS", "DEEPGRADE_GRADINGS_PER_HOUR", "DEEPGRADE_JOB_LEASE",
                    "DEEPGRADE_BROKER_URL", "DEEPGRADE_SANDBOX", "DEEPGRADE_GRADEBOOK_URL", "DEEPGRADE_WARM_SANDBOXES",
                    "DEEPGRADE_CHECK_SERVER", "DEEPGRADE_DATA_MIRROR", "DEEPGRADE_SPLIT_SECRET")


def _passthrough(*names: str) -> dict[str, str]:
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.setdefault("DEEPGRADE_HOME", str(data_root()))
    env.setdefault("PYTHONPATH", str(repo_root()))
    return env
