"""The hub, for real: JupyterHub, configurable-http-proxy, student servers, the formgrader
service, the exchange service, kernels running TensorFlow, and a browser.

One hub is started for the module. The tests run in file order: the course flow first,
then the security refusals, the browser, and a restart that must lose nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from autograders.assignment import Assignment
from tests.hubtools import PASSWORD, Hub, Session

COURSE = "keras-intro"
ASSIGNMENT = "01-introducing-keras"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
FORMGRADER = f"/services/{COURSE}/formgrader"
EXCHANGE = "/services/exchange/api"

TINY_FIT = """
import numpy as np, tensorflow as tf, keras
x = np.linspace(-1, 1, 64).reshape(-1, 1).astype("float32")
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
history = model.fit(x, 2 * x, epochs=3, verbose=0)
print("fitted", tf.__version__, len(history.history["loss"]))
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    hub = Hub.create(tmp_path_factory.mktemp("hub"))
    hub.cli("users", "add", "ines", "--role", "instructor", "--password", PASSWORD)
    for student in ("alice", "bob", "carol"):
        hub.cli("users", "add", student, "--role", "student", "--course", COURSE, "--password", PASSWORD)
    hub.start()
    yield hub
    if hub.process and hub.process.poll() is None:
        hub.stop()


@pytest.fixture(scope="module")
def people(hub: Hub) -> dict[str, Session]:
    return {name: Session(hub, name, hub.token(name)) for name in ("ines", "alice", "bob")}


def _ok(response: requests.Response) -> dict:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    body = response.json()
    assert body.get("success", True), body.get("error") or body.get("value") or body
    return body


def _action(student: Session, action: str) -> dict:
    return _ok(student.post(f"/user/{student.username}/assignments/{action}",
                            data={"course_id": COURSE, "assignment_id": ASSIGNMENT}))


@pytest.fixture(scope="module")
def course_flow(hub: Hub, people: dict[str, Session]) -> dict:
    """Release, fetch, solve, submit, collect, grade with deepgrade, return feedback."""
    ines, alice = people["ines"], people["alice"]
    seen: dict = {}

    alice.start_server()
    seen["tiny_fit"] = alice.run_code(TINY_FIT)

    seen["release"] = _ok(ines.post(f"{FORMGRADER}/api/assignment/{ASSIGNMENT}/release"))

    listing = _ok(alice.get("/user/alice/assignments", params={"course_id": COURSE}))["value"]
    seen["listed"] = [(a["assignment_id"], a["status"]) for a in listing]
    _action(alice, "fetch")

    # alice solves it with the reference solution, through the contents API
    reference = json.loads(Assignment.load(f"{COURSE}/{ASSIGNMENT}").source_notebook.read_text())
    path = f"/user/alice/api/contents/{COURSE}/{ASSIGNMENT}/introducing-keras.ipynb"
    seen["fetched"] = alice.get(path).status_code
    saved = alice.request("PUT", path, json={"type": "notebook", "format": "json", "content": reference})
    assert saved.status_code == 200, saved.text
    _action(alice, "submit")
    # graded on submit by the exchange's worker: no instructor acts
    seen["statuses"] = _wait_for_grading(alice)
    after = _action(alice, "fetch_feedback")["value"]
    seen["submitted"] = [s for a in after if a["status"] == "submitted" for s in a["submissions"]]

    # the instructor's own path still works: collect, regrade from the command line, release
    seen["collect"] = _ok(ines.post(f"{FORMGRADER}/api/assignment/{ASSIGNMENT}/collect"))
    seen["autograde"] = hub.cli("autograde", f"{COURSE}/{ASSIGNMENT}", check=False)
    seen["release_feedback"] = _ok(ines.post(f"{FORMGRADER}/api/assignment/{ASSIGNMENT}/release_feedback"))
    return seen


def _wait_for_grading(student: Session, timeout: float = 400) -> list[str]:
    """What the student's assignment list shows for the submission, until grading ends."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = _ok(student.get(f"/user/{student.username}/assignments", params={"course_id": COURSE}))["value"]
        labels = [s["timestamp"] for a in listing if a["status"] == "submitted" for s in a["submissions"]]
        if labels and labels[-1] not in seen:
            seen.append(labels[-1])
        if labels and any(word in labels[-1] for word in ("graded:", "failed:")):
            return seen
        time.sleep(2)
    raise AssertionError(f"not graded within {timeout} s: {seen}")


def test_student_server_runs_tensorflow(course_flow: dict) -> None:
    assert "fitted 2.21.0 3" in course_flow["tiny_fit"], course_flow["tiny_fit"]


def test_instructor_releases_and_student_fetches(course_flow: dict) -> None:
    assert (ASSIGNMENT, "released") in course_flow["listed"]
    assert course_flow["fetched"] == 200


def test_graded_on_submit_and_the_student_sees_status_and_score(course_flow: dict) -> None:
    statuses = course_flow["statuses"]
    assert statuses[-1].endswith("· graded: 15 / 15"), statuses
    assert all(any(state in label for state in ("queued", "grading", "graded")) for label in statuses), statuses


def test_instructor_regrades_but_students_cannot(course_flow: dict, people: dict[str, Session]) -> None:
    path = f"{EXCHANGE}/courses/{COURSE}/assignments/{ASSIGNMENT}/grade"
    assert people["alice"].post(path).status_code == 403
    regrade = people["ines"].post(path)
    assert regrade.status_code == 202, regrade.text
    assert [job["state"] for job in regrade.json()] == ["queued"]


def test_collected_and_graded_with_deepgrade(course_flow: dict, hub: Hub) -> None:
    graded = course_flow["autograde"]
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert "alice: 15 / 15 (graded)" in graded.stdout
    timestamp = hub.data / "courses" / COURSE / "submitted" / "alice" / ASSIGNMENT / "timestamp.txt"
    assert timestamp.read_text().endswith("UTC")


def test_student_fetches_feedback_with_full_score(course_flow: dict, people: dict[str, Session]) -> None:
    [submission] = course_flow["submitted"]
    assert submission["has_local_feedback"], submission
    feedback = Path(submission["local_feedback_path"]) / "introducing-keras.html"
    rel = feedback.relative_to(feedback.parents[4])  # path inside alice's home
    page = people["alice"].get(f"/user/alice/files/{rel}")
    assert page.status_code == 200
    assert f"{COURSE}/{ASSIGNMENT}: 15 / 15" in page.text


def test_every_submission_is_kept_with_server_time(course_flow: dict, people: dict[str, Session]) -> None:
    alice = people["alice"]
    _action(alice, "submit")
    mine = alice.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json()
    assert len(mine) == 2 and mine[0]["id"] != mine[1]["id"]
    assert mine[0]["timestamp"] < mine[1]["timestamp"]
    assert {s["student_id"] for s in mine} == {"alice"}


# -- security: each of these must be refused ----------------------------------------------

@pytest.fixture(scope="module")
def bob_submitted(course_flow: dict, people: dict[str, Session]) -> dict:
    bob = people["bob"]
    bob.start_server()
    _action(bob, "fetch")
    _action(bob, "submit")
    [mine] = bob.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json()
    return mine


def test_student_cannot_open_another_students_server(people: dict[str, Session], bob_submitted: dict) -> None:
    alice = people["alice"]
    for path in ("/user/bob/api/contents", "/user/bob/lab", "/hub/api/users/bob"):
        assert alice.get(path).status_code in (403, 404), path
    assert alice.post("/user/bob/api/kernels", json={"name": "python3"}).status_code in (403, 404)


def test_student_cannot_read_another_students_files_from_a_kernel(people: dict[str, Session], hub: Hub,
                                                                   bob_submitted: dict) -> None:
    out = people["alice"].run_code(
        "import os\n"
        f"print(sorted(os.listdir({str(hub.data / 'home')!r})), os.path.exists({str(hub.data / 'hub')!r}),"
        f" os.path.exists({str(hub.data / 'deepgrade.sqlite')!r}))")
    assert out.strip() == "['alice'] False False", out


def test_student_cannot_read_another_students_submission_or_feedback(people: dict[str, Session],
                                                                    bob_submitted: dict) -> None:
    alice, sid = people["alice"], bob_submitted["id"]
    base = f"{EXCHANGE}/courses/{COURSE}/submissions"
    assert alice.get(base, params={"student": "bob"}).status_code == 403
    assert alice.get(f"{base}/{sid}").status_code == 404
    assert alice.get(f"{base}/{sid}/feedback/introducing-keras").status_code == 404
    assert "bob" not in {s["student_id"] for s in alice.get(base).json()}


def test_student_cannot_submit_as_someone_else(people: dict[str, Session], bob_submitted: dict) -> None:
    alice, bob = people["alice"], people["bob"]
    before = len(bob.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json())
    forged = alice.post(f"{EXCHANGE}/courses/{COURSE}/submissions",
                        params={"assignment": ASSIGNMENT, "student": "bob"}, data=b"")
    assert forged.status_code == 403 and "may only submit as alice" in forged.text
    assert len(bob.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json()) == before


def test_student_cannot_release_or_reach_the_formgrader_or_admin_api(people: dict[str, Session]) -> None:
    alice = people["alice"]
    assert alice.get(f"{FORMGRADER}/api/assignments").status_code in (302, 403)
    assert alice.request("PUT", f"{EXCHANGE}/courses/{COURSE}/assignments/{ASSIGNMENT}", data=b"").status_code == 403
    assert alice.get("/hub/api/users").status_code == 403
    assert alice.post("/hub/api/users/mallory").status_code == 403
    assert alice.get("/hub/authorize").status_code == 403
    assert alice.request("PATCH", "/hub/api/users/alice", json={"admin": True}).status_code == 403


def test_requests_without_a_token_are_refused(hub: Hub) -> None:
    for path in (f"{EXCHANGE}/courses", f"{EXCHANGE}/courses/{COURSE}/submissions", "/hub/api/users",
                 "/user/alice/api/contents", f"{FORMGRADER}/api/assignments"):
        r = requests.get(hub.url + path, allow_redirects=False, timeout=30)
        assert r.status_code in (302, 403), (path, r.status_code)
        if r.status_code == 302:
            assert "/hub/login" in r.headers["Location"] or "oauth" in r.headers["Location"], path


# -- browser: Playwright drives Debian's chromium ---------------------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: make test installs it with apt-get (scripts/ensure-system-packages.sh)"
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _sign_in(browser, hub: Hub, username: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    return page


def _assignment_list(browser, hub: Hub, student: str):
    """A student's JupyterLab with nbgrader's Assignment List open."""
    page = _sign_in(browser, hub, student)
    page.wait_for_url(f"**/user/{student}/lab**")
    page.wait_for_selector(".jp-LabShell")
    page.get_by_text("Nbgrader", exact=True).click()
    page.get_by_text("Assignment List", exact=True).click()
    return page


def test_browser_student_fetches_and_opens_the_assignment(browser, hub: Hub, course_flow: dict) -> None:
    page = _assignment_list(browser, hub, "carol")
    released = page.locator("#released_assignments_list")
    released.get_by_text(ASSIGNMENT).wait_for()
    page.screenshot(path=str(ARTIFACTS / "student-assignment-list.png"))
    released.get_by_role("button", name="Fetch").click()
    fetched = page.locator("#fetched_assignments_list")
    fetched.get_by_text(ASSIGNMENT).wait_for()
    fetched.get_by_text(ASSIGNMENT).click()  # expands the assignment to its notebooks
    fetched.get_by_text("introducing-keras", exact=True).click()
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    page.get_by_role("heading", name="Introducing Keras").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "student-notebook.png"))
    page.close()


def test_browser_student_sees_the_score_of_her_submission(browser, hub: Hub, course_flow: dict) -> None:
    page = _assignment_list(browser, hub, "alice")
    submitted = page.locator("#submitted_assignments_list")
    try:
        submitted.get_by_text(ASSIGNMENT).first.wait_for()
        page.wait_for_function("document.querySelector('#submitted_assignments_list').textContent"
                               ".includes('graded: 15 / 15')")
    finally:
        page.screenshot(path=str(ARTIFACTS / "student-graded.png"))
    page.close()


def test_browser_instructor_sees_the_submission_in_the_formgrader(browser, hub: Hub, course_flow: dict) -> None:
    page = _sign_in(browser, hub, "ines")
    page.wait_for_url("**/hub/**")
    page.goto(f"{hub.url}{FORMGRADER}/manage_submissions/{ASSIGNMENT}")
    row = page.locator("tr", has_text="alice")
    row.wait_for()
    page.screenshot(path=str(ARTIFACTS / "instructor-formgrader.png"))
    assert "needs autograding" not in row.inner_text(), "deepgrade's score is what the formgrader shows"
    assert "15" in row.inner_text()
    page.close()


def test_formgrader_never_runs_student_code_in_its_own_kernel(course_flow: dict, people: dict[str, Session],
                                                               hub: Hub) -> None:
    response = people["ines"].post(f"{FORMGRADER}/api/submission/{ASSIGNMENT}/alice/autograde")
    assert response.status_code == 200, response.text
    refused = response.json()
    assert refused["success"] is False and "in-kernel autograde is disabled" in json.dumps(refused), refused
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.data / 'courses' / COURSE / 'gradebook.db'}", course_id=COURSE) as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").score == 15, "deepgrade's score is untouched"
    # (nbgrader clears its autograded/ copy before any preprocessor runs; the next grading lays it out again)


# -- restart: users, files, submissions and grades survive ------------------------------------

def test_restart_keeps_users_files_submissions_and_grades(hub: Hub, course_flow: dict) -> None:
    assert hub.stop() == 0, "Ctrl-C must stop the hub cleanly"
    hub.start()
    alice = Session(hub, "alice", hub.token("alice"))
    alice.start_server()
    assert alice.get(f"/user/alice/api/contents/{COURSE}/{ASSIGNMENT}/introducing-keras.ipynb").status_code == 200
    assert len(alice.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json()) == 2
    exported = hub.cli("users", "list")
    assert "alice" in exported.stdout
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.data / 'courses' / COURSE / 'gradebook.db'}", course_id=COURSE) as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").score == 15
