"""``deepgrade hub`` and ``deepgrade users``: start the course hub and manage its roster."""

from __future__ import annotations

import csv
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import datasets
from autograders.assignment import find_all, repo_root
from hub.auth import set_password
from hub.local import PROXY
from hub.policy import HubSettings, prepare_courses
from hub.store import CourseStore

FIRST_INSTRUCTOR = "instructor"


def ensure_proxy() -> None:
    """configurable-http-proxy is pinned in package.json and installed into node_modules."""
    if not PROXY.exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=repo_root(), check=True)


def prepare(settings: HubSettings) -> None:
    """Everything the hub needs on disk: state folder, public data, nbgrader course folders."""
    settings.state.mkdir(parents=True, exist_ok=True)
    (settings.data / "home").mkdir(parents=True, exist_ok=True)
    names = sorted({name for a in find_all() for name in a.datasets})
    datasets.materialize(datasets.public_root(), names)
    prepare_courses(settings)
    ensure_proxy()


def add_user(settings: HubSettings, username: str, role: str, courses: list[str] | None = None,
             password: str | None = None, store: CourseStore | None = None) -> None:
    (store or CourseStore()).add_member(username, role, courses or settings.courses)
    if password:
        settings.state.mkdir(parents=True, exist_ok=True)
        set_password(settings.hub_db_url, username, password)


def bootstrap_instructor(settings: HubSettings) -> str | None:
    """On the very first start, create an instructor with a random password and return it."""
    store = CourseStore()
    if any(m.role == "instructor" for m in store.roster()):
        return None
    password = secrets.token_urlsafe(12)
    add_user(settings, FIRST_INSTRUCTOR, "instructor", password=password, store=store)
    secret = settings.state / "first-instructor.txt"
    secret.write_text(f"{FIRST_INSTRUCTOR}\n{password}\n")
    secret.chmod(0o600)
    return password


def run_hub(settings: HubSettings | None = None) -> int:
    settings = settings or HubSettings()
    prepare(settings)
    password = bootstrap_instructor(settings)
    print(f"deepgrade hub: {settings.url}  (mode {settings.mode}, data in {settings.data})")
    if password:
        print(f"  first instructor: sign in as '{FIRST_INSTRUCTOR}' with password '{password}'")
        print(f"  (saved in {settings.state / 'first-instructor.txt'}; change it at /hub/change-password)")
    else:
        print(f"  sign in as an instructor from the roster; the first one is in "
              f"{settings.state / 'first-instructor.txt'}")
    print("  add people with: deepgrade users add NAME --role student|instructor [--password P]")
    print("  stop with Ctrl-C")
    sys.stdout.flush()
    config = repo_root() / "jupyterhub_config.py"
    hub = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                           cwd=settings.state, env={**os.environ, "DEEPGRADE_HOME": str(settings.data)})
    try:
        return hub.wait()
    except KeyboardInterrupt:
        hub.send_signal(signal.SIGINT)
        try:
            return hub.wait(timeout=30)
        except subprocess.TimeoutExpired:
            hub.terminate()
            return hub.wait()


def import_users(settings: HubSettings, path: Path) -> list[tuple[str, str]]:
    """CSV with ``username,role[,course][,password]``; a row without a course joins every course."""
    store, added = CourseStore(), []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            username, role = row["username"].strip(), (row.get("role") or "student").strip()
            course = (row.get("course") or "").strip()
            add_user(settings, username, role, [course] if course else None,
                     (row.get("password") or "").strip() or None, store=store)
            added.append((username, role))
    return added
