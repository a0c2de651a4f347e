"""The grading panel in the student's JupyterLab (labextension/, hub/exchange/lab_api.py,
hub/exchange/results_api.py), for real: a hub, a student server, the grader, and chromium.

A student submits a notebook with a planted mistake while her JupyterLab is open. With no
click, the panel opens, shows the submission queued or grading, then graded, with the
failed checks inline (what happened, measured, expected, what to try); one click opens the
full feedback page. The same hub proves that her server and its sandbox hold no hidden test
source and no hidden data.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from autograders.assignment import Assignment
from autograders.validate import apply_mistake
from hub.store import CourseStore
from tests.hubtools import PASSWORD, Hub, Session, checkout_copy

COURSE = "keras-advanced"
ASSIGNMENT = "01-functional-api"
NOTEBOOK = "functional-api"
MISTAKE = "relu-output"
HOSTILE_NAME = '<img src=x onerror="window.dgXss=1">'
DOCS = Path(__file__).resolve().parents[1] / "docs"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
# the panel's states, in the order the page showed them (a MutationObserver writes them down)
RECORD_STATES = """() => {
  window.dgStates = [];
  const note = () => document.querySelectorAll('.dg-submission:first-child .dg-state').forEach(badge => {
    const state = badge.dataset.state;
    if (window.dgStates[window.dgStates.length - 1] !== state) window.dgStates.push(state);
  });
  new MutationObserver(note).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    hub = Hub.create(tmp_path_factory.mktemp("hub"), repo=checkout_copy(tmp_path_factory.mktemp("checkout")))
    hub.cli("users", "add", "ines", "--role", "instructor", "--password", PASSWORD)
    for student in ("dana", "erin"):
        hub.cli("users", "add", student, "--role", "student", "--course", COURSE, "--password", PASSWORD)
    hub.start()
    yield hub
    if hub.process and hub.process.poll() is None:
        hub.stop()


@pytest.fixture(scope="module")
def people(hub: Hub) -> dict[str, Session]:
    return {name: Session(hub, name, hub.token(name)) for name in ("ines", "dana", "erin")}


def _ok(response: requests.Response) -> dict:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}"
    body = response.json()
    assert body.get("success", True), body.get("error") or body.get("value") or body
    return body


@pytest.fixture(scope="module")
def fetched(people: dict[str, Session]) -> Session:
    """Released by the instructor, fetched by dana into her server."""
    ines, dana = people["ines"], people["dana"]
    dana.start_server()
    _ok(ines.post(f"/services/{COURSE}/formgrader/api/assignment/{ASSIGNMENT}/release"))
    _ok(dana.post("/user/dana/assignments/fetch", data={"course_id": COURSE, "assignment_id": ASSIGNMENT}))
    return dana


# first, while no browser runs: the kernel client below runs its own event loop
def test_student_server_and_sandbox_hold_no_hidden_tests_or_data(hub: Hub, fetched: Session) -> None:
    """Searched from a kernel on the student's server, inside its sandbox: her files, the code and
    data it can see, and the environment's shared folders hold neither the source of any check
    that is not public nor the rows of the hidden split."""
    from tests.test_formative import hidden_data_needles, hidden_test_needles

    assignment = Assignment.load(f"{COURSE}/{ASSIGNMENT}")
    needles = hidden_test_needles(assignment) + hidden_data_needles(assignment, hub.env, hub.repo)
    assert len(needles) > 10, needles
    code = f"""
import os, sys, json
needles = [n.encode() for n in {needles!r}]
roots = [os.path.expanduser('~'), '/tmp', os.environ.get('DEEPGRADE_PUBLIC_DATA', ''),
         *os.environ.get('PYTHONPATH', '').split(os.pathsep), os.path.join(sys.prefix, 'share', 'jupyter')]
hits, files = [], 0
for root in filter(None, roots):
    for folder, dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            try:
                if not os.path.isfile(path) or os.path.islink(path) or os.path.getsize(path) > 20_000_000:
                    continue
                data = open(path, 'rb').read()
            except OSError:
                continue
            files += 1
            hits += [(path, n.decode()[:40]) for n in needles if n in data]
print(json.dumps({{"files": files, "hits": hits}}))
"""
    seen = json.loads(fetched.run_code(code, timeout=300).strip().splitlines()[-1])
    assert seen["files"] > 100, seen  # it did look: her fetched assignment, the code, the public data
    assert seen["hits"] == [], seen["hits"]


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: make test installs it with apt-get (scripts/ensure-system-packages.sh)"
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _lab(browser, hub: Hub, username: str):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(120_000)
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", username)
    page.fill("#password_input", PASSWORD)
    page.click("#login_submit")
    page.wait_for_url(f"**/user/{username}/lab**")
    page.wait_for_selector(".jp-LabShell")
    return page


@pytest.fixture(scope="module")
def graded_in_the_panel(browser, hub: Hub, fetched: Session, tmp_path_factory: pytest.TempPathFactory):
    """dana's JupyterLab, open while she submits a notebook with a mistake and it is graded."""
    dana = fetched
    page = _lab(browser, hub, "dana")
    page.locator(".dg-GradingPanel").wait_for(state="attached")
    page.evaluate(RECORD_STATES)
    assignment = Assignment.load(f"{COURSE}/{ASSIGNMENT}")
    mistake = next(m for m in assignment.mistakes if m.id == MISTAKE)
    notebook = json.loads(apply_mistake(assignment, mistake, tmp_path_factory.mktemp("mistake") / "nb.ipynb").read_text())
    for cell in notebook["cells"]:  # her layer's name is quoted back by the checks: markup, to be shown as text
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = source.replace('name="predicted-score-diff"', f"name={HOSTILE_NAME!r}")
    saved = dana.request("PUT", f"/user/dana/api/contents/{COURSE}/{ASSIGNMENT}/{NOTEBOOK}.ipynb",
                         json={"type": "notebook", "format": "json", "content": notebook})
    assert saved.status_code == 200, saved.text
    _ok(dana.post("/user/dana/assignments/submit", data={"course_id": COURSE, "assignment_id": ASSIGNMENT}))
    newest = page.locator(".dg-submission").first
    try:
        newest.locator(".dg-state[data-state='graded']").wait_for(timeout=400_000)
        newest.locator(".dg-check").first.wait_for()
    finally:
        page.screenshot(path=str(DOCS / "student-grading-panel.png"))
    yield page
    page.close()


def test_the_panel_follows_the_grading_with_no_click(graded_in_the_panel) -> None:
    page = graded_in_the_panel
    states = page.evaluate("window.dgStates")
    assert states[-1] == "graded", states
    assert {"queued", "grading"} & set(states[:-1]), f"no state before graded was shown: {states}"
    assert page.locator(".dg-GradingPanel").is_visible(), "a new submission opens the panel by itself"


def test_failed_checks_are_inline_with_measured_expected_and_hint(graded_in_the_panel) -> None:
    newest = graded_in_the_panel.locator(".dg-submission").first
    assert "Score: " in newest.inner_text()
    failed = newest.locator(".dg-check[data-passed='false']")
    assert failed.count() >= 2, newest.inner_text()  # the relu output loses several checks
    text = "\n".join(failed.all_inner_texts())
    for label in ("measured: ", "expected: ", "what to try: "):
        assert label in text, text
    assert newest.locator(".dg-check[data-passed='true']").count() >= 1
    assert HOSTILE_NAME in text, text  # her text, shown as she wrote it
    assert graded_in_the_panel.locator(".dg-GradingPanel img").count() == 0
    assert graded_in_the_panel.evaluate("window.dgXss") is None, "markup from a submission ran in the panel"
    exercises = newest.locator(".dg-exercise").all_inner_texts()
    assert len(exercises) == 3 and all(" / " in e for e in exercises), exercises
    assert "test_" not in newest.inner_text(), "checks are named in words, as on the feedback page"


def test_one_click_opens_the_full_feedback_page(graded_in_the_panel) -> None:
    page = graded_in_the_panel
    with page.context.expect_page() as opened:
        page.locator(".dg-submission").first.get_by_text("Open the full feedback page").first.click()
    feedback = opened.value
    feedback.wait_for_load_state()
    assert "/deepgrade/courses/keras-advanced/submissions/" in feedback.url
    feedback.get_by_text("what to try").first.wait_for()
    feedback.close()


def test_a_result_is_only_its_students(graded_in_the_panel, people: dict[str, Session]) -> None:
    mine = people["dana"].get(f"/services/exchange/api/courses/{COURSE}/submissions").json()
    submission = mine[-1]["id"]
    path = f"/services/exchange/api/courses/{COURSE}/submissions/{submission}/result"
    result = people["dana"].get(path)
    assert result.status_code == 200 and result.json()["exercises"], result.text
    shown = {"id", "grade_id", "title", "description", "points", "score", "passed", "message", "measured",
             "expected", "hint"}  # what the feedback page shows: never metrics, source or tracebacks
    assert all(set(c) <= shown for e in result.json()["exercises"] for c in e["checks"])
    assert people["erin"].get(path).status_code == 404
    assert requests.get(people["erin"].hub.url + path, timeout=30).status_code in (302, 403)
    # and from her own server, the panel's route answers for her only
    assert people["erin"].get("/user/dana/deepgrade/submissions").status_code in (302, 403, 404)


def _cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source}


TRY_IT = [
    _cell("import keras\nfrom keras import layers\nfrom autograders import check, export, hint\n"
          "input_tensor = keras.Input(shape=(1,))\n"
          "output_layer = layers.Dense(1, activation='relu', name='predicted-score-diff')\n"
          "model = keras.Model(input_tensor, output_layer(input_tensor))\n"
          "export('functional-model', model=model)"),
    _cell('check("functional-model")'),
    _cell('hint("functional-model")\nhint("functional-model")'),
    _cell("model = keras.Model(input_tensor, layers.Dense(1, name='predicted-score-diff')(input_tensor))\n"
          "export('functional-model', model=model)\ncheck('functional-model')"),
]


def test_check_and_hint_in_the_students_notebook(graded_in_the_panel, fetched: Session, hub: Hub) -> None:
    """In her own server's kernel, beside the fetched notebook: check() runs the exercise's public
    checks on what she exported, hint() gets more specific at each call."""
    page, dana = graded_in_the_panel, fetched
    notebook = {"cells": TRY_IT, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    path = f"{COURSE}/{ASSIGNMENT}/try-it.ipynb"
    saved = dana.request("PUT", f"/user/dana/api/contents/{path}", json={"type": "notebook", "content": notebook})
    assert saved.status_code in (200, 201), saved.text
    page.goto(f"{hub.url}/user/dana/lab/tree/{path}")
    page.wait_for_selector(".jp-NotebookPanel .jp-Cell")
    page.wait_for_function("document.body.innerText.includes('| Idle')")  # the status bar: the kernel is ready
    page.locator(".jp-NotebookPanel .jp-Cell .jp-InputArea-prompt").first.click()
    for _ in TRY_IT:  # run each cell and move on, as a student does
        page.keyboard.press("Shift+Enter")
    outputs = page.locator(".jp-NotebookPanel .jp-OutputArea")
    try:
        page.wait_for_function("document.querySelector('.jp-NotebookPanel').innerText"
                               ".includes('3 of 3 public checks pass')", timeout=240_000)
    finally:
        page.screenshot(path=str(DOCS / "student-check-hint.png"))
    text = "\n".join(outputs.all_inner_texts())
    assert "functional-model: 2 of 3 public checks pass (practice: it does not count toward your grade)" in text, text
    assert "measured: relu" in text and "expected: linear" in text, text
    assert "hint 1 of 3" in text and "hint 2 of 3" in text, text
    # her kernel reported each check() and hint() to the exchange, for the course dashboard
    events = CourseStore(f"sqlite:///{hub.data / 'deepgrade.sqlite'}").practice(COURSE, ASSIGNMENT)
    assert [(e.student, e.exercise, e.kind, e.passed, e.total) for e in events] == [
        ("dana", "functional-model", "check", 2, 3), ("dana", "functional-model", "hint", None, None),
        ("dana", "functional-model", "hint", None, None), ("dana", "functional-model", "check", 3, 3)]


def test_practice_reports_are_the_callers_own_and_bounded(fetched: Session, people: dict[str, Session],
                                                          hub: Hub) -> None:
    """What a kernel reports is a claim about its own caller only: no name in the body, no course
    the caller does not take, small well-formed fields; an instructor's tries are not the class's."""
    path = f"/services/exchange/api/courses/{COURSE}/assignments/{ASSIGNMENT}/practice"
    event = {"exercise": "functional-model", "kind": "check", "passed": 1, "total": 3}
    assert requests.post(hub.url + path, json=event, timeout=30).status_code == 403  # no token
    for bad in ({**event, "kind": "grade"}, {**event, "exercise": "../x"}, {**event, "passed": 10**9},
                {**event, "passed": "3"}, {"kind": "check"}, ["not", "an", "object"]):
        assert people["erin"].post(path, json=bad).status_code == 400, bad
    assert people["erin"].post(path, data="x" * 5000).status_code == 413
    assert people["erin"].post(path.replace(COURSE, "dl-python"), json=event).status_code == 403
    assert people["ines"].post(path, json=event).json() == {"kept": False}
    assert people["erin"].post(path, json={**event, "student": "dana"}).status_code == 201
    students = {e.student for e in CourseStore(f"sqlite:///{hub.data / 'deepgrade.sqlite'}").practice(COURSE)}
    assert "ines" not in students and "erin" in students
