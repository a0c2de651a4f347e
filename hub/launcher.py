"""``deepgrade hub`` and ``deepgrade users``: start the course hub and manage its roster."""

from __future__ import annotations

import contextlib
import csv
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import datasets
from autograders.assignment import find_all, repo_root
from hub.auth import HubAccounts, course_groups, set_password
from hub.local import PROXY
from hub.policy import HubSettings, prepare_courses
from hub.store import CourseStore, Invitation

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


@dataclass(frozen=True)
class Added:
    """What ``add_user`` did beyond the roster: an invitation to hand over, or sessions it ended."""

    username: str
    role: str
    invitation: Invitation | None = None
    sessions: str = ""  # what happened to their sessions and groups ("" when untouched)


def hub_accounts(settings: HubSettings) -> HubAccounts:
    return HubAccounts(f"http://127.0.0.1:{settings.hub_api_port}/hub/api", settings.hub_db_url, settings.state)


def invitation_lifetime() -> timedelta:
    return timedelta(days=float(os.environ.get("DEEPGRADE_INVITATION_DAYS", "7")))


def add_user(settings: HubSettings, username: str, role: str, courses: list[str] | None = None,
             password: str | None = None, store: CourseStore | None = None) -> Added:
    """Put ``username`` on the roster (lifting a removal). With a password the account is ready; without
    one, someone with no account yet gets an invitation, never a name open to whoever signs up first.
    A changed role reaches the hub at once: groups move, and a lost role ends the sessions carrying it."""
    store = store or CourseStore()
    before = course_groups(store.memberships(username))
    store.add_member(username, role, courses or settings.courses)
    after = course_groups(store.memberships(username))
    accounts = hub_accounts(settings)
    sessions = accounts.regroup(username, after, revoke=bool(set(before) - set(after))) if before != after else ""
    if password:
        settings.state.mkdir(parents=True, exist_ok=True)
        set_password(settings.hub_db_url, username, password)
        store.withdraw_invitation(username)
        return Added(username, role, sessions=sessions)
    if accounts.has_account(username):
        return Added(username, role, sessions=sessions)
    return Added(username, role, store.invite(username, invitation_lifetime()), sessions)


def remove_user(settings: HubSettings, username: str, store: CourseStore | None = None) -> tuple[int, str]:
    """Take ``username`` off every course and out of the hub: (memberships removed, what the hub did)."""
    memberships = (store or CourseStore()).remove_member(username)
    return memberships, hub_accounts(settings).remove(username)


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


STOP_GRACE = 8.0  # seconds JupyterHub gets to stop servers, services (one after another) and proxy, then it is killed
PR_SET_CHILD_SUBREAPER = 36


def run_hub(settings: HubSettings | None = None) -> int:
    """Start JupyterHub and print its URL once it answers. Ctrl-C (or SIGTERM) stops the hub, and
    within seconds whatever it started and did not stop: every server, service and the proxy."""
    settings = settings or HubSettings()
    prepare(settings)
    password = bootstrap_instructor(settings)
    print(f"deepgrade hub: starting (mode {settings.mode}, data in {settings.data}) ...", flush=True)
    # Ctrl-C and SIGTERM stop the hub even when started with SIGINT ignored (``cmd &`` in a script,
    # ``nohup``): Python leaves an inherited SIG_IGN in place, and the hub would never hear them
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    _adopt_orphans()
    config = repo_root() / "jupyterhub_config.py"
    # a session of its own: the terminal's Ctrl-C reaches this process, which passes it on once
    hub = subprocess.Popen([str(Path(sys.executable).parent / "jupyterhub"), "-f", str(config)],
                           cwd=settings.state, env={**os.environ, "DEEPGRADE_HOME": str(settings.data)},
                           start_new_session=True)
    try:
        if _wait_until_answering(settings, hub):
            _print_welcome(settings, password)
        return hub.wait()
    except KeyboardInterrupt:
        hub.send_signal(signal.SIGINT)
        try:
            return hub.wait(timeout=STOP_GRACE)
        except subprocess.TimeoutExpired:  # asked to stop, and stopped: the rest is killed below
            hub.kill()
            hub.wait()
            print(f"deepgrade hub: JupyterHub took over {STOP_GRACE:g} s to stop; it was killed, with everything "
                  "it started", flush=True)
            return 0
    finally:
        _end_leftovers()


def _wait_until_answering(settings: HubSettings, hub: subprocess.Popen) -> bool:
    """Polls the hub's health check through the proxy, as a browser would reach it; False if the
    hub exits first."""
    host = "127.0.0.1" if settings.ip in ("", "0.0.0.0") else settings.ip
    health = f"http://{host}:{settings.port}/hub/health"
    while hub.poll() is None:
        try:
            with urllib.request.urlopen(health, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def _print_welcome(settings: HubSettings, password: str | None) -> None:
    print(f"deepgrade hub: {settings.url}  (mode {settings.mode}, data in {settings.data})")
    if password:
        print(f"  first instructor: sign in as '{FIRST_INSTRUCTOR}' with password '{password}'")
        print(f"  (saved in {settings.state / 'first-instructor.txt'}; change it at /hub/change-password)")
    else:
        print(f"  sign in as an instructor from the roster; the first one is in "
              f"{settings.state / 'first-instructor.txt'}")
    print("  add people with: deepgrade users add NAME --role student|instructor [--password P]")
    print("  stop with Ctrl-C", flush=True)


def _adopt_orphans() -> None:
    """Linux: processes the hub starts and then loses (its services and servers run in sessions of
    their own) become this process's children instead of init's, so that none outlives the hub."""
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _end_leftovers() -> None:
    """Kill every process still below this one, and reap them."""
    for _ in range(20):
        left = _descendants(os.getpid())
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not left:
            return
        time.sleep(0.1)


def _descendants(root: int) -> set[int]:
    """Live processes below ``root`` (zombies excluded), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                if state != "Z":
                    parents[int(entry.name)] = int(parent)
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def import_users(settings: HubSettings, path: Path) -> list[Added]:
    """CSV with ``username,role[,course][,password]``; a row without a course joins every course,
    and a row without a password gets an invitation (unless that person has an account)."""
    store, added = CourseStore(), []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            username, role = row["username"].strip(), (row.get("role") or "student").strip()
            course = (row.get("course") or "").strip()
            added.append(add_user(settings, username, role, [course] if course else None,
                                  (row.get("password") or "").strip() or None, store=store))
    return added
