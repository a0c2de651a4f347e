"""Accounts a course operator can trust, and an exchange that keeps only what its limits allow.

One hub for the module (no grading workers, tighter exchange limits). People are imported before
it starts, and one of them is removed while it is down. The tests run in file order: sign-up,
instructor powers, the exchange's limits, then removal and demotion, which change who is who.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import tarfile
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from hub.store import CourseStore, ExchangeLimits, TooLarge, pack, unpack
from tests.hubtools import PASSWORD, Hub, Session

COURSE = "keras-intro"
OTHER_COURSE = "dl-python"
ASSIGNMENT = "01-introducing-keras"
EXCHANGE = "/services/exchange/api"
MiB = 1024 * 1024
ARCHIVE_LIMIT_MB = 256  # large enough that reading a bomb up to it takes a while
ROSTER = f"""username,role,course,password
ines,instructor,{COURSE},{PASSWORD}
kim,instructor,{OTHER_COURSE},{PASSWORD}
alice,student,{COURSE},{PASSWORD}
bob,student,{COURSE},{PASSWORD}
dora,student,{OTHER_COURSE},{PASSWORD}
zed,student,{COURSE},{PASSWORD}
bea,instructor,{COURSE},
"""


def bomb(members: int, member_bytes: int) -> bytes:
    """A tar.gz of zero-filled files, about 1 KiB per MiB: gzip members of 1 MiB of zeros, repeated."""
    zeros = gzip.compress(bytes(MiB), compresslevel=9)
    out = io.BytesIO()
    for index in range(members):
        header = tarfile.TarInfo(f"notebook-{index:04d}.ipynb")
        header.size = member_bytes
        out.write(gzip.compress(header.tobuf(format=tarfile.GNU_FORMAT)))
        out.write(zeros * (member_bytes // MiB))
    out.write(gzip.compress(bytes(2 * tarfile.BLOCKSIZE)))
    return out.getvalue()


def small_archive(folder: Path) -> bytes:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "introducing-keras.ipynb").write_text(json.dumps({"cells": [], "nbformat": 4, "nbformat_minor": 5}))
    return pack(folder)


def signup(hub: Hub, username: str, password: str, invitation: str | None = None) -> str:
    """Fill in /hub/signup as a browser does (with the invitation link's query, if any); returns the page."""
    browser = requests.Session()
    page = f"{hub.url}/hub/signup" + (f"?invitation={invitation}" if invitation else "")
    browser.get(page, timeout=30)
    response = browser.post(page, timeout=60, data={
        "username": username, "signup_password": password, "signup_password_confirmation": password,
        "_xsrf": browser.cookies.get("_xsrf", "")})
    assert response.status_code == 200, response.text[:500]
    return response.text


def can_sign_in(hub: Hub, username: str, password: str = PASSWORD) -> bool:
    try:
        hub.login(username, password)
    except PermissionError:
        return False
    return True


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Hub, str]]:
    """The hub, and what `users import` printed (bea's invitation: hers is the row without a password)."""
    data = tmp_path_factory.mktemp("accounts-hub")
    hub = Hub.create(data)
    hub.env.update({"DEEPGRADE_WORKERS": "0", "DEEPGRADE_ARCHIVE_MAX_MB": str(ARCHIVE_LIMIT_MB),
                    "DEEPGRADE_ARCHIVE_MAX_FILES": "1000", "DEEPGRADE_SUBMISSIONS_PER_ASSIGNMENT": "2"})
    (data / "roster.csv").write_text(ROSTER)
    imported = hub.cli("users", "import", str(data / "roster.csv")).stdout
    hub.cli("users", "remove", "zed")  # while the hub is down: it applies when the hub starts
    hub.start()
    yield hub, imported
    if hub.process and hub.process.poll() is None:
        hub.stop()


@pytest.fixture(scope="module")
def hub(started: tuple[Hub, str]) -> Hub:
    return started[0]


@pytest.fixture(scope="module")
def people(hub: Hub) -> dict[str, Session]:
    """Signed-in people (kim and dora sign in only so that they exist on the hub)."""
    return {name: Session(hub, name, hub.token(name)) for name in ("ines", "kim", "alice", "bob", "dora")}


# -- accounts ------------------------------------------------------------------------------------

def test_a_roster_name_without_password_is_claimed_only_with_its_invitation(started: tuple[Hub, str]) -> None:
    """`users add NAME` without a password used to approve whoever signed up as NAME first."""
    hub, imported = started
    signup(hub, "bea", "a-strangers-password")
    assert not can_sign_in(hub, "bea", "a-strangers-password"), "a stranger claimed bea's roster name"
    signup(hub, "mallory", "a-strangers-password")
    assert not can_sign_in(hub, "mallory", "a-strangers-password"), "a stranger approved by nobody got in"

    assert "/hub/signup?invitation=" in imported, imported
    invitation = imported.split("/hub/signup?invitation=")[1].split()[0]
    assert "You are invited as bea" in requests.get(f"{hub.url}/hub/signup?invitation={invitation}", timeout=30).text
    assert "is ready" in signup(hub, "bea", PASSWORD, invitation)
    bea = Session(hub, "bea", hub.token("bea"))
    assert bea.get("/hub/api/user").json()["groups"] == [f"formgrade-{COURSE}"]
    assert "is ready" not in signup(hub, "bea", "another-password-2", invitation), "an invitation works once"


def test_invitations_expire_and_work_once(tmp_path: Path) -> None:
    store = CourseStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    expired = store.invite("cleo", timedelta(seconds=-1))
    assert not store.redeem_invitation("cleo", expired.code)
    fresh = store.invite("cleo", timedelta(days=1))
    assert store.invited_name(fresh.code) == "cleo"
    assert not store.redeem_invitation("dan", fresh.code), "an invitation is for one name"
    assert store.redeem_invitation("cleo", fresh.code)
    assert not store.redeem_invitation("cleo", fresh.code)


def test_an_instructor_has_no_power_over_accounts(hub: Hub, people: dict[str, Session]) -> None:
    """An instructor could rename or delete anyone, reset their password and sign in as them."""
    ines = people["ines"]
    assert ines.request("PATCH", "/hub/api/users/kim", json={"name": "kim2"}).status_code == 403
    assert ines.request("DELETE", "/hub/api/users/dora").status_code == 403
    browser = hub.login("ines")
    assert browser.get(f"{hub.url}/hub/authorize", allow_redirects=False, timeout=30).status_code == 403
    assert browser.get(f"{hub.url}/hub/change-password/kim", allow_redirects=False, timeout=30).status_code == 403
    reset = browser.post(f"{hub.url}/hub/change-password/kim", allow_redirects=False, timeout=30, data={
        "new_password": "taken-over-1", "new_password_confirmation": "taken-over-1",
        "_xsrf": browser.headers["X-XSRFToken"]})
    assert reset.status_code == 403
    assert can_sign_in(hub, "kim") and not can_sign_in(hub, "kim", "taken-over-1")
    # what an instructor still sees: the students of their own course, nobody else
    listed = ines.get("/hub/api/users")
    assert listed.status_code == 200, listed.text
    assert {u["name"] for u in listed.json()} <= {"alice", "bob"}
    assert ines.get("/hub/api/users/alice").status_code == 200
    assert ines.get("/hub/api/users/dora").status_code in (403, 404)


# -- the exchange's limits ------------------------------------------------------------------------

@pytest.mark.parametrize("members, member_bytes", [(1, 1024 * MiB), (150, MiB)],
                         ids=["one-entry-declaring-1GiB", "150-entries-of-1MiB"])
def test_unpack_stops_a_bomb_at_the_limit_and_keeps_nothing(members: int, member_bytes: int, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 MiB archive expanding to 1 GiB (or to 150 MiB in plain-looking files) was written out whole."""
    monkeypatch.setenv("DEEPGRADE_ARCHIVE_MAX_MB", "8")
    archive = bomb(members, member_bytes)
    assert len(archive) < 2 * MiB
    with pytest.raises(ValueError, match=r"expands to more than 8\.0 MiB") as refused:
        unpack(archive, tmp_path / "submission")
    assert getattr(refused.value, "status", None) == 413
    assert list(tmp_path.iterdir()) == [], "an extraction that stops leaves nothing behind"


def test_storage_quota_counts_what_submissions_expand_to(tmp_path: Path) -> None:
    store = CourseStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    limits = ExchangeLimits(student_bytes=3 * MiB)
    two_mib = bomb(2, MiB)  # about 2 KiB sent, 2 MiB kept
    store.submit(COURSE, ASSIGNMENT, "alice", two_mib, limits)
    with pytest.raises(TooLarge, match=r"over the 3\.0 MiB quota"):
        store.submit(COURSE, ASSIGNMENT, "alice", two_mib, limits)
    assert len(store.submissions(COURSE, student="alice")) == 1
    store.submit(COURSE, ASSIGNMENT, "bob", two_mib, limits)  # the quota is each student's own


def test_a_bomb_is_refused_with_413_while_other_requests_are_answered(
        hub: Hub, people: dict[str, Session], tmp_path: Path) -> None:
    """The bomb was kept, and reading it stalled every other request of the exchange for seconds."""
    released = people["ines"].request("PUT", f"{EXCHANGE}/courses/{COURSE}/assignments/{ASSIGNMENT}",
                                      data=small_archive(tmp_path / "release"))
    assert released.status_code == 200, released.text
    alice, bob = people["alice"], people["bob"]
    assert bob.get(f"{EXCHANGE}/courses").status_code == 200  # hub auth cached, as in a busy course
    outcome: dict[str, object] = {}

    def send_bomb() -> None:
        outcome["sent"] = time.monotonic()
        outcome["response"] = alice.post(f"{EXCHANGE}/courses/{COURSE}/submissions",
                                         params={"assignment": ASSIGNMENT}, data=archive)
        outcome["done"] = time.monotonic()

    archive = bomb(1024, MiB)  # 1 MiB sent, 1 GiB inside, in entries of 1 MiB (none declares it all)
    uploader = threading.Thread(target=send_bomb)
    uploader.start()
    answered: list[tuple[float, float]] = []
    while uploader.is_alive():
        start = time.monotonic()
        assert bob.get(f"{EXCHANGE}/courses", timeout=60).status_code == 200
        answered.append((start, time.monotonic()))
    uploader.join()
    response = outcome["response"]
    assert response.status_code == 413, response.text
    assert f"expands to more than {ARCHIVE_LIMIT_MB:.1f} MiB" in response.json()["message"]
    assert alice.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json() == [], "nothing of the bomb is kept"
    during = [(s, e) for s, e in answered if outcome["sent"] < s and e < outcome["done"]]
    assert during, (f"no request was answered during the {outcome['done'] - outcome['sent']:.1f} s "
                    f"the exchange read the bomb: {answered}")


def test_submissions_per_assignment_are_limited_with_429(hub: Hub, people: dict[str, Session],
                                                         tmp_path: Path) -> None:
    alice, path = people["alice"], f"{EXCHANGE}/courses/{COURSE}/submissions"
    archive = small_archive(tmp_path / "mine")
    for _ in range(2):
        assert alice.post(path, params={"assignment": ASSIGNMENT}, data=archive).status_code == 201
    third = alice.post(path, params={"assignment": ASSIGNMENT}, data=archive)
    assert third.status_code == 429, third.text
    assert "already submitted keras-intro/01-introducing-keras 2 times" in third.json()["message"]
    assert len(alice.get(path).json()) == 2
    [listed] = alice.get(f"{EXCHANGE}/courses/{COURSE}/assignments").json()
    assert listed["notebooks"] == ["introducing-keras"]


# -- removal and role changes ---------------------------------------------------------------------

def _server_pid(hub: Hub, username: str) -> int:
    with sqlite3.connect(hub.data / "hub" / "jupyterhub.sqlite") as db:
        (state,) = db.execute("SELECT spawners.state FROM spawners JOIN users ON users.id = spawners.user_id "
                              "WHERE users.name = ? AND spawners.name = ''", (username,)).fetchone()
    return json.loads(state)["pid"]


def _gone(pid: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    return False


def test_removal_signs_out_stops_the_server_revokes_tokens_and_keeps_out(
        hub: Hub, people: dict[str, Session]) -> None:
    """`users remove` only dropped the roster rows: the person kept every session, and signing in
    again re-enrolled them as a student in every course."""
    bob = people["bob"]
    browser = hub.login("bob")
    bob.start_server()
    pid = _server_pid(hub, "bob")
    removed = hub.cli("users", "remove", "bob")
    assert bob.get("/hub/api/user").status_code == 403, "the token still works"
    assert browser.get(f"{hub.url}/hub/api/user", timeout=30).status_code == 403, "the login cookie still works"
    assert _gone(pid), "the server still runs"
    assert "signed out, servers stopped, tokens revoked" in removed.stdout, removed.stdout
    assert not can_sign_in(hub, "bob")
    assert CourseStore(f"sqlite:///{hub.data / 'deepgrade.sqlite'}").memberships("bob") == {}


def test_a_removal_made_while_the_hub_was_down_holds_after_it_starts(hub: Hub) -> None:
    assert not can_sign_in(hub, "zed"), "removed while the hub was down, and signed in after"
    assert CourseStore(f"sqlite:///{hub.data / 'deepgrade.sqlite'}").memberships("zed") == {}


def test_a_demoted_instructor_loses_the_formgrader_at_once(hub: Hub, people: dict[str, Session]) -> None:
    """A role change reached nobody's sessions: the old instructor kept the formgrader's groups."""
    ines = people["ines"]
    browser = hub.login("ines")
    assert ines.get("/hub/api/user").json()["groups"] == [f"formgrade-{COURSE}"]
    changed = hub.cli("users", "add", "ines", "--role", "student", "--course", COURSE)
    assert ines.get("/hub/api/user").status_code == 403, "the old token still works"
    assert "tokens revoked" in changed.stdout, changed.stdout
    assert browser.get(f"{hub.url}/hub/api/user", timeout=30).json()["groups"] == [f"nbgrader-{COURSE}"]
    again = Session(hub, "ines", hub.token("ines"))
    assert again.get("/hub/api/user").json()["groups"] == [f"nbgrader-{COURSE}"]
    bea = Session(hub, "bea", hub.token("bea"))  # still an instructor of the course
    assert bea.get(f"/services/{COURSE}/formgrader/api/assignments").status_code == 200
    assert again.get(f"/services/{COURSE}/formgrader/api/assignments").status_code in (302, 403, 404)
