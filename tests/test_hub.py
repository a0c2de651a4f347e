"""The hub, for real: JupyterHub, configurable-http-proxy, student servers, the formgrader
service, the exchange service, kernels running TensorFlow, and a browser.

One hub is started for the module. The tests run in file order: the course flow first,
then the security refusals, the browser, and a restart that must lose nothing.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import requests

from autograders.assignment import Assignment
from tests.hubtools import PASSWORD, Hub, Session, checkout_copy

COURSE = "keras-intro"
ASSIGNMENT = "01-introducing-keras"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
NOTEBOOK = "introducing-keras"
FORMGRADER = f"/services/{COURSE}/formgrader"
EXCHANGE = "/services/exchange/api"
XSS = "/xss/"  # what hostile content fetches when its script runs: the browser tests watch for it

TINY_FIT = """
import numpy as np, tensorflow as tf, keras
x = np.linspace(-1, 1, 64).reshape(-1, 1).astype("float32")
model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(4, activation="relu"), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
history = model.fit(x, 2 * x, epochs=3, verbose=0)
print("fitted", tf.__version__, len(history.history["loss"]))
"""


def _ran(vector: str) -> str:
    return f"fetch('{XSS}{vector}')"


def _hostile(notebook: dict) -> dict:
    """The released notebook with script in every form a staff page shows: markdown HTML and SVG,
    HTML, SVG, markdown and JavaScript outputs (made by running the cell), an SVG attachment,
    notebook metadata, cell tags and an nbgrader grade id that break out of their attributes."""
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" onload="{_ran("attachment")}"><rect width="4" height="4"/></svg>'
    html, markdown = (f'<img src=x onerror="{_ran(vector)}">' for vector in ("html-output", "markdown-output"))
    outputs = ("from IPython.display import HTML, SVG, Markdown, Javascript, display\n"
               f"display(HTML({html!r}))\ndisplay(SVG({svg.replace('attachment', 'svg-output')!r}))\n"
               f"display(Markdown({markdown!r}))\ndisplay(Javascript({_ran('javascript-output')!r}))\n")
    notebook["cells"][1:1] = [
        {"cell_type": "markdown", "metadata": {"tags": [f'"><img src=x onerror="{_ran("tags")}">']},
         "attachments": {"evil.svg": {"image/svg+xml": base64.b64encode(svg.encode()).decode()}},
         "source": f'<img src=x onerror="{_ran("markdown")}"> <svg onload="{_ran("markdown-svg")}"></svg>\n\n'
                   "![a](attachment:evil.svg)"},
        {"cell_type": "markdown", "source": "my answer",
         "metadata": {"nbgrader": {"solution": True, "grade": False, "locked": False, "schema_version": 3,
                                   "grade_id": f'x"><img src=x onerror="{_ran("metadata")}">'}}},
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": outputs},
    ]
    notebook["metadata"]["title"] = f'</title><img src=x onerror="{_ran("notebook-metadata")}">'
    return notebook


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    # run from a copy of the checkout under /tmp: every sandbox must see the code wherever it lies
    hub = Hub.create(tmp_path_factory.mktemp("hub"), repo=checkout_copy(tmp_path_factory.mktemp("checkout")))
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
    assert "Score: <b>15 / 15</b>" in page.text


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
    """bob submits once: the released notebook with hostile content added (see _hostile)."""
    bob = people["bob"]
    bob.start_server()
    _action(bob, "fetch")
    path = f"/user/bob/api/contents/{COURSE}/{ASSIGNMENT}/{NOTEBOOK}.ipynb"
    hostile = _hostile(bob.get(path).json()["content"])
    saved = bob.request("PUT", path, json={"type": "notebook", "format": "json", "content": hostile})
    assert saved.status_code == 200, saved.text
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


# -- the course service serves the formgrader and nothing else ----------------------------------

SERVICE = f"/services/{COURSE}"


def test_course_service_is_not_a_shell(hub: Hub, people: dict[str, Session]) -> None:
    ines = people["ines"]
    answers = {}
    for method, path in [("GET", "/lab"), ("GET", "/tree"), ("GET", "/api/terminals"), ("POST", "/api/terminals"),
                         ("GET", "/terminals/websocket/1"), ("GET", "/api/kernels"), ("POST", "/api/kernels"),
                         ("GET", "/api/sessions"), ("GET", "/api/contents"), ("PUT", "/api/contents/planted.py"),
                         ("GET", "/files/nbgrader_config.py"), ("GET", "/api/nbconvert"),
                         # nbgrader writes path parts into its pages unescaped
                         ("GET", "/formgrader/manage_submissions/%22%3E%3Cimg%20src=x%20onerror=alert(1)%3E")]:
        body = {"type": "file", "format": "text", "content": "import os"} if method == "PUT" else {}
        response = ines.request(method, SERVICE + path, json=body)
        answers[f"{method} {path}"] = response.status_code
        if method == "POST" and response.status_code == 201:  # a kernel or terminal was started: end it
            ines.request("DELETE", f"{SERVICE}{path}/{response.json().get('id') or response.json().get('name')}")
    assert {call: code for call, code in answers.items() if code not in (403, 404)} == {}, answers
    assert ines.get(f"{FORMGRADER}/api/assignments").status_code == 200, "the formgrader itself still answers"


def _process_tree(root: int) -> set[int]:
    """``root`` and every process below it, however detached (sessions, sandboxes)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, frontier = set(), {root}
    while frontier:
        tree |= frontier
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - tree
    return tree


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _command(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def test_course_service_runs_unprivileged_and_writes_only_its_course_folder(hub: Hub) -> None:
    root = hub.data / "courses" / COURSE
    [server] = [pid for pid in _process_tree(hub.process.pid)
                if f"--ServerApp.root_dir={root}" in _command(pid)
                and Path(_command(pid)[0]).name not in ("bwrap", "setpriv")]
    uid = int(next(line for line in Path(f"/proc/{server}/status").read_text().splitlines()
                   if line.startswith("Uid:")).split()[1])
    if os.geteuid() == 0:
        assert uid != 0, "the formgrader service runs as root"
    writable = set()
    for line in Path(f"/proc/{server}/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[5].split(",")[0] == "rw":
            writable.add(fields[4])
    # "/" is the sandbox's own empty tmpfs root (root-owned folders); /tmp, /dev, /proc are its own
    scratch = {point for point in writable
               if point in ("/", "/tmp") or point.startswith(("/dev", "/proc", "/sys"))}
    assert writable - scratch == {str(root)}, sorted(writable)


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


@pytest.fixture(scope="module")
def bob_graded(bob_submitted: dict, people: dict[str, Session]) -> str:
    """bob's hostile submission once deepgrade has graded it: its id in the formgrader."""
    _wait_for_grading(people["bob"])
    listed = people["ines"].get(f"{FORMGRADER}/api/submitted_notebooks/{ASSIGNMENT}/{NOTEBOOK}")
    assert listed.status_code == 200, listed.text
    [bob] = [entry["id"] for entry in listed.json() if entry["student"] == "bob"]
    return bob


def _signed_in_instructor(browser, hub: Hub):
    """ines, signed in and through the formgrader's OAuth, on its first page (her own server is
    not started: nothing else loads beside the page under test)."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(f"{hub.url}/hub/login?next={FORMGRADER}/manage_assignments")
    page.fill("#username_input", "ines")
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(f"**{FORMGRADER}/manage_assignments")
    return page


def _watch_for_scripts(page) -> list[str]:
    ran: list[str] = []
    page.context.on("request", lambda request: ran.append(request.url) if XSS in request.url else None)
    return ran


def test_browser_student_content_never_runs_in_a_staff_page(bob_graded: str, people: dict[str, Session],
                                                            hub: Hub, browser) -> None:
    """Each formgrader view of bob's hostile submission, as ines sees it: nothing of his runs, the
    formgrader's own scripts do, and the page says so in its policy."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = _signed_in_instructor(browser, hub)
    ran = _watch_for_scripts(page)
    own_script_worked = {  # page -> what the formgrader's own JavaScript (inline and files) leaves there
        f"submissions/{bob_graded}/": "() => typeof submission_id === 'string' && window.formgrader instanceof FormGrader",
        f"manage_submissions/{ASSIGNMENT}": "() => document.body.innerText.includes('bob')",
        f"gradebook/{ASSIGNMENT}/{NOTEBOOK}": "() => document.body.innerText.includes('Submission #')",
        "manage_students/bob": f"() => document.body.innerText.includes('{ASSIGNMENT}')",
        f"manage_students/bob/{ASSIGNMENT}": f"() => document.body.innerText.includes('{NOTEBOOK}')",
    }
    policies, broken, shown = {}, [], ""
    try:
        for view, evidence in own_script_worked.items():
            response = page.goto(f"{hub.url}{FORMGRADER}/{view}")
            assert response and response.status == 200, (view, response and response.status)
            policies[view] = response.headers.get("content-security-policy", "")
            try:
                page.wait_for_function(evidence, timeout=30_000)
            except PlaywrightTimeout:
                broken.append(view)
            page.wait_for_load_state("networkidle")
            if view.startswith("submissions/"):
                shown = page.inner_text("#notebook-container")
                page.screenshot(path=str(ARTIFACTS / "instructor-hostile-submission.png"), full_page=True)
    finally:
        page.close()
    assert ran == [], f"student script ran in a staff page: {ran}"
    assert broken == [], f"the formgrader's own scripts did not run in {broken}"
    assert "onerror" in shown, "the hostile markup is shown as text"
    raw = people["ines"].get(f"{FORMGRADER}/submissions/{bob_graded}/{NOTEBOOK}.ipynb")
    assert raw.status_code == 200, raw.status_code
    policies["the submitted file"] = raw.headers.get("Content-Security-Policy", "")
    for view, policy in policies.items():
        directives = {name: value for name, _, value in (d.strip().partition(" ") for d in policy.split(";"))}
        assert directives.get("frame-ancestors") == "'self'", (view, policy)
        if view == "the submitted file":
            assert "sandbox" in directives and directives.get("default-src") == "'none'", policy
        else:
            assert "'unsafe-inline'" not in directives.get("script-src", "'unsafe-inline'"), (view, policy)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_formgrader_never_runs_student_code_in_its_own_kernel(course_flow: dict, people: dict[str, Session],
                                                               hub: Hub) -> None:
    graded = hub.data / "courses" / COURSE / "autograded" / "alice" / ASSIGNMENT
    before = _tree(graded)
    response = people["ines"].post(f"{FORMGRADER}/api/submission/{ASSIGNMENT}/alice/autograde")
    assert response.status_code == 200, response.text
    refused = response.json()
    assert refused["success"] is False and "in-kernel autograde is disabled" in json.dumps(refused), refused
    assert f"deepgrade grade --all {COURSE}/{ASSIGNMENT}" in refused["log"], refused
    assert before and _tree(graded) == before, "the Autograde button must leave every file as it was"
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.data / 'courses' / COURSE / 'gradebook.db'}", course_id=COURSE) as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").score == 15, "deepgrade's score is untouched"


def test_browser_autograde_button_changes_nothing_and_says_what_to_run(course_flow: dict, people: dict[str, Session],
                                                                        hub: Hub, browser) -> None:
    graded = hub.data / "courses" / COURSE / "autograded" / "alice" / ASSIGNMENT
    before = _tree(graded)
    assert before, "alice's graded copy is there to begin with"
    page = _signed_in_instructor(browser, hub)
    page.goto(f"{hub.url}{FORMGRADER}/manage_submissions/{ASSIGNMENT}")
    page.locator("tr", has_text="alice").locator(".autograde a").click()
    dialog = page.locator(".modal", has_text="Nothing was changed")
    try:
        dialog.wait_for(timeout=30_000)
        assert f"deepgrade grade --all {COURSE}/{ASSIGNMENT}" in dialog.inner_text()
    finally:
        page.screenshot(path=str(ARTIFACTS / "instructor-autograde-refused.png"))
        page.close()
    assert _tree(graded) == before
    submission = _ok(people["ines"].get(f"{FORMGRADER}/api/submission/{ASSIGNMENT}/alice"))
    assert submission["autograded"], "the submission must not turn into 'file missing'"


# -- restart: users, files, submissions and grades survive ------------------------------------

def test_ctrl_c_stops_hub_proxy_services_and_servers_within_10_s(hub: Hub, course_flow: dict,
                                                                  bob_submitted: dict) -> None:
    started = _process_tree(hub.process.pid)
    commands = " ".join(" ".join(_command(pid)) for pid in started)
    for part in ("jupyterhub", "configurable-http-proxy", "hub.exchange.service", "jupyterhub-singleuser"):
        assert part in commands, f"{part} is not running before Ctrl-C"
    clock = time.monotonic()
    assert hub.stop() == 0, "Ctrl-C must stop the hub cleanly"
    while any(_running(pid) for pid in started) and time.monotonic() - clock < 10:
        time.sleep(0.1)
    left = {pid: " ".join(_command(pid))[:120] for pid in started if _running(pid)}
    assert not left, f"still running 10 s after Ctrl-C: {left}"


def _health_when_url_printed(hub: Hub, offset: int, seen: list) -> None:
    """Waits for the launcher's URL line in the hub's log, then asks the hub at once whether it answers."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with open(hub.log, "rb") as log:
            log.seek(offset)
            if b"deepgrade hub: http" in log.read():
                try:
                    seen.append(requests.get(f"{hub.url}/hub/health", timeout=5).status_code)
                except requests.RequestException as exc:
                    seen.append(repr(exc))
                return
        time.sleep(0.05)


def test_restart_keeps_users_files_submissions_and_grades(hub: Hub, course_flow: dict) -> None:
    if hub.process.poll() is None:  # run on its own, without the Ctrl-C test before it
        assert hub.stop() == 0, "Ctrl-C must stop the hub cleanly"
    answers: list = []
    watcher = threading.Thread(target=_health_when_url_printed, args=(hub, hub.log.stat().st_size, answers))
    watcher.start()
    hub.start()
    watcher.join()
    assert answers == [200], f"the URL was printed before the hub answered: {answers}"
    alice = Session(hub, "alice", hub.token("alice"))
    alice.start_server()
    assert alice.get(f"/user/alice/api/contents/{COURSE}/{ASSIGNMENT}/introducing-keras.ipynb").status_code == 200
    assert len(alice.get(f"{EXCHANGE}/courses/{COURSE}/submissions").json()) == 2
    exported = hub.cli("users", "list")
    assert "alice" in exported.stdout
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{hub.data / 'courses' / COURSE / 'gradebook.db'}", course_id=COURSE) as gb:
        assert gb.find_submission(ASSIGNMENT, "alice").score == 15
