"""The course dashboard and the formgrader, on a real hub, in a real browser.

One hub for the module, with no grading workers: the class's submissions are put in the course
store the way the exchange and a worker put them there (``submit``, ``enqueue``, ``claim``,
``finish`` or ``retry``), and the graded ones are written into nbgrader's gradebook and course
folders by the functions the worker calls (``record``, ``lay_out``). A regrade stays queued, so the
test sees exactly what it asked for. Each figure on the page is checked against the database.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, select

from autograders.assignment import Assignment
from autograders.gradebook import lay_out, record
from hub.store import CourseStore, Job, Member, Submission, pack
from tests.hubtools import PASSWORD, Hub, Session

COURSE = "keras-intro"
OTHER_COURSE = "dl-python"
ASSIGNMENT = "01-introducing-keras"
NOTEBOOK = "introducing-keras"
DASHBOARD = f"/services/{COURSE}-dashboard/"
FORMGRADER = f"/services/{COURSE}/formgrader"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
HOSTILE = "<img src=x onerror=alert(1)>"  # a roster name as a hostile import could make it
HOSTILE_MESSAGE = "measured <script>alert(2)</script><b>bold</b>"  # a check message quoting student text
FLAG = "suspicious: trained on held-out data?"
ROSTER = f"""username,role,course,password
ines,instructor,{COURSE},{PASSWORD}
kim,instructor,{OTHER_COURSE},{PASSWORD}
alice,student,{COURSE},{PASSWORD}
bob,student,{COURSE},{PASSWORD}
carol,student,{COURSE},{PASSWORD}
dave,student,{COURSE},{PASSWORD}
erin,student,{COURSE},{PASSWORD}
dora,student,{OTHER_COURSE},{PASSWORD}
"""
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def _grade_cells() -> dict[str, float]:
    notebook = json.loads(Assignment.load(f"{COURSE}/{ASSIGNMENT}").release_notebook.read_text())
    return {cell["metadata"]["nbgrader"]["grade_id"]: float(cell["metadata"]["nbgrader"]["points"])
            for cell in notebook["cells"] if cell["metadata"].get("nbgrader", {}).get("grade")}


def _result(student: str, cells: dict[str, float], failing: dict[str, str], flags: list[str]) -> dict:
    """A result as the runner writes it: one check per grade cell here, with its outcome and message."""
    checks = [{"id": f"test_{cell.replace('-', '_')}", "grade_id": cell, "points": points, "passed": cell not in failing,
               "message": failing.get(cell, "ok"), "score": 0.0 if cell in failing else points, "hint": ""}
              for cell, points in cells.items()]
    score = sum(check["score"] for check in checks)
    return {"assignment": f"{COURSE}/{ASSIGNMENT}", "student": student, "status": "graded", "score": score,
            "max_score": sum(cells.values()), "checks": checks, "integrity": flags, "message": ""}


class Class:
    """The simulated class, and what each student's submissions became."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.store = CourseStore(f"sqlite:///{hub.data / 'deepgrade.sqlite'}")
        self.assignment = Assignment.load(f"{COURSE}/{ASSIGNMENT}")
        self.cells = _grade_cells()
        self.files = Path(tempfile.mkdtemp(prefix="dashboard-submission-"))
        shutil.copy2(self.assignment.release_notebook, self.files / f"{NOTEBOOK}.ipynb")
        self.archive = pack(self.files)
        self.submissions: dict[str, list[int]] = {}

    def submit(self, student: str, course: str = COURSE) -> int:
        info = self.store.submit(course, ASSIGNMENT, student, self.archive)
        self.submissions.setdefault(student, []).append(info.id)
        return info.id

    def graded(self, student: str, failing: dict[str, str], flags: tuple[str, ...] = ()) -> int:
        """Submitted, queued and graded, as a worker does it; the gradebook and folders laid out too."""
        submission = self.submit(student)
        job = self.store.claim("test-worker", 60, self.store.enqueue(submission, student).id)
        result = _result(student, self.cells, failing, list(flags))
        page = f"<html><body><h1>feedback of #{submission}</h1></body></html>".encode()
        assert self.store.finish(job, "graded", score=result["score"], max_score=result["max_score"], message="",
                                 result=json.dumps(result), feedback={NOTEBOOK: page})
        row = self.store.submission(submission)
        scores = {cell: 0.0 if cell in failing else points for cell, points in self.cells.items()}
        root = self.hub.data / "courses" / COURSE
        record(self.assignment, student, scores, root=root, timestamp=row.submitted_at)
        with tempfile.TemporaryDirectory() as work:
            lay_out(root, student, self.assignment, self.files, Path(work), row.submitted_at,
                    extra={".deepgrade-submission": str(submission)})
        return submission

    def failed_on_the_platform(self, student: str) -> int:
        """Every try hit a platform error: the job ends failed, with no score (``CourseStore.retry``)."""
        submission = self.submit(student)
        job = self.store.enqueue(submission, student)
        while (claimed := self.store.claim("test-worker", 60, job.id)) is not None:
            self.store.retry(claimed, "platform error: the sandbox could not start", "{}", delay=0)
        return submission


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("dashboard-hub")
    hub = Hub.create(data)
    hub.env["DEEPGRADE_WORKERS"] = "0"  # nothing is graded behind the test's back: regrades stay queued
    (data / "roster.csv").write_text(ROSTER)
    hub.cli("users", "import", str(data / "roster.csv"))
    hub.start(timeout=300)  # seven services start one after another: slow on a busy machine
    yield hub
    if hub.process and hub.process.poll() is None:
        hub.stop()


@pytest.fixture(scope="module")
def klass(hub: Hub) -> Class:
    """alice: 15 then 12 (latest counts); bob: 3, flagged; carol: queued; dave: failed on the platform;
    erin: nothing; the hostile name: 0 with a hostile message; dora (another course): 15. alice and
    erin practised with check() and hint() (dora too, in her course)."""
    klass = Class(hub)
    klass.store.add_member(HOSTILE, "student", [COURSE])
    for passed in (1, 2):  # practice before submitting: alice checks twice, asks one hint; erin never submits
        klass.store.record_practice(COURSE, ASSIGNMENT, "alice", "meteor-model", "check", passed, 3)
    klass.store.record_practice(COURSE, ASSIGNMENT, "alice", "meteor-model", "hint")
    klass.store.record_practice(COURSE, ASSIGNMENT, "erin", "meteor-model", "check", 3, 3)
    klass.store.record_practice(OTHER_COURSE, ASSIGNMENT, "dora", "meteor-model", "check", 3, 3)
    klass.graded("alice", {})
    klass.graded("alice", {"meteor-predictions": "the predictions' mse 4.1 is above 0.5", "build-as-shown":
                           "the model has 2 layers; expected 3"})
    klass.graded("bob", {"meteor-model": "the last layer uses activation 'relu'", "meteor-predictions":
                         "the predictions' mse 4.1 is above 0.5", "counting": "counted 9, expected 10"}, (FLAG,))
    klass.graded(HOSTILE, {cell: HOSTILE_MESSAGE for cell in klass.cells})
    klass.store.record_practice(COURSE, ASSIGNMENT, "alice", "meteor-model", "check", 3, 3)  # after submitting
    klass.store.enqueue(klass.submit("carol"), "carol")
    klass.failed_on_the_platform("dave")
    klass.store.enqueue(klass.submit("dora", OTHER_COURSE), "dora")
    return klass


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


def _signed_in(browser, hub: Hub, username: str, next_path: str):
    """A fresh browser context signed in as ``username``, sent on to ``next_path``; returns (page, response
    of the last navigation)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(f"{hub.url}/hub/login?next={next_path}")
    page.fill("#username_input", username)
    page.fill("#password_input", PASSWORD)
    with page.expect_navigation(url=f"**{next_path}**") as navigation:
        page.click("#login_submit")
    return page, navigation.value


@pytest.fixture(scope="module")
def instructor(browser, hub: Hub, klass: Class):
    page, response = _signed_in(browser, hub, "ines", DASHBOARD)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    page.first_response = response
    yield page
    page.context.close()


def _figures(scope) -> dict[str, str]:
    return {element.get_attribute("data-figure"): element.inner_text().strip()
            for element in scope.locator("[data-figure]").all()}


def _bars(scope, title: str) -> dict[str, float]:
    """The bars of one chart: label -> value, read from each bar's tooltip."""
    chart = scope.locator(f"svg[aria-label='{title}']")
    bars = {}
    for tip in chart.locator("rect.bar title").all_text_contents():
        label, _, value = tip.rpartition(": ")
        bars[label] = float(value)
    return bars


def test_dashboard_shows_the_class_as_the_database_has_it(instructor, klass: Class, hub: Hub) -> None:
    page = instructor
    assert page.first_response.status == 200
    card = page.locator(f"#assignment-{ASSIGNMENT}")
    shown = _figures(card.locator("dl.stats"))
    with klass.store.session() as db:
        enrolled = set(db.scalars(select(Member.username).where(Member.course == COURSE, Member.role == "student")))
        submitters = set(db.scalars(select(Submission.student).where(Submission.course == COURSE,
                                                                     Submission.assignment == ASSIGNMENT)))
        states = dict(db.execute(select(Job.state, func.count()).where(Job.course == COURSE,
                                                                        Job.assignment == ASSIGNMENT)
                                 .group_by(Job.state)).all())
        submissions = db.scalar(select(func.count()).select_from(Submission).where(
            Submission.course == COURSE, Submission.assignment == ASSIGNMENT))
    assert enrolled == {"alice", "bob", "carol", "dave", "erin", HOSTILE}
    assert shown["enrolled"] == str(len(enrolled))
    assert shown["not-submitted"] == str(len(enrolled - submitters)) == "1"
    assert shown["submitted"] == str(len(enrolled & submitters))
    assert {state: shown[state] for state in ("queued", "grading", "graded", "failed")} == \
        {state: str(states.get(state, 0)) for state in ("queued", "grading", "graded", "failed")}
    # counted by the latest policy: alice's second submission (12 of 15), bob 3, the hostile name 0
    assert (shown["counted"], shown["mean"], shown["median"], shown["policy"]) == ("3", "5", "3", "latest")
    assert shown["wait-p50"] != "–", "carol's job is waiting"
    histogram = _bars(card, "students by counted score")
    assert sum(histogram.values()) == 3 and histogram["0"] == 1 and histogram["3"] == 1 and histogram["12"] == 1
    assert sum(_bars(card, "submissions per day").values()) == submissions == 6  # not dora's: another course
    assert page.locator("script").count() == 0, "the dashboard runs no script"
    policy = page.first_response.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "frame-ancestors 'self'" in policy
    page.screenshot(path=str(ARTIFACTS / "instructor-dashboard.png"), full_page=False)


def test_assignment_page_shows_checks_failures_and_flags(instructor, hub: Hub, klass: Class) -> None:
    page = instructor
    page.goto(f"{hub.url}{DASHBOARD}assignments/{ASSIGNMENT}")
    checks = {row.get_attribute("data-check"): _figures(row) for row in page.locator("#checks tr[data-check]").all()}
    # over each student's newest graded submission: alice (2nd), bob and the hostile name
    assert checks["test_meteor_predictions"] == {"check-failed": "3 / 3", "check-rate": "100%"}
    assert checks["test_meteor_model"] == {"check-failed": "2 / 3", "check-rate": "67%"}
    assert checks["test_hello_nets"] == {"check-failed": "1 / 3", "check-rate": "33%"}
    predictions = page.locator("#checks tr[data-check='test_meteor_predictions']").inner_text()
    assert "the predictions' mse 4.1 is above 0.5 (×2)" in predictions
    assert "platform error: the sandbox could not start (tried 3 times" in page.locator("#failures").inner_text()
    rows = {row.get_attribute("data-student"): (_figures(row), row.inner_text())
            for row in page.locator("#assignment-students tr[data-student]").all()}
    assert rows["alice"][0] == {"attempts": "2", "latest": "12", "counted": "12"}
    assert rows["bob"][0]["counted"] == "3" and FLAG in rows["bob"][1]
    assert rows["carol"][0] == {"attempts": "1", "latest": "", "counted": ""} and "queued" in rows["carol"][1]
    assert "failed: platform error" in rows["dave"][1]
    assert rows["erin"][0]["attempts"] == "0" and "not submitted" in rows["erin"][1]
    page.locator("#checks").screenshot(path=str(ARTIFACTS / "instructor-dashboard-checks.png"))
    events = klass.store.practice(COURSE, ASSIGNMENT)
    practice = {row.get_attribute("data-exercise"): _figures(row) for row in page.locator("#practice tr[data-exercise]").all()}
    assert practice == {"meteor-model": {
        "practice-students": str(len({e.student for e in events})), "practice-checks": "4",
        "practice-checks-before": "3", "practice-all-passing": "2", "practice-hints": "1",
        "practice-hints-before": "1"}}, practice
    assert len({e.student for e in events}) == 2 and sum(e.kind == "check" for e in events) == 4


def test_student_text_is_shown_as_text(instructor, hub: Hub, klass: Class) -> None:
    page = instructor
    from urllib.parse import quote

    shown = {}
    for path in ("", f"assignments/{ASSIGNMENT}", f"students/{quote(HOSTILE, safe='')}"):
        response = page.goto(f"{hub.url}{DASHBOARD}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("load")
        assert page.locator("main img, main script, main b").count() == 0, f"student markup became elements in {path}"
        shown[path] = page.inner_text("main")
        assert HOSTILE in shown[path], path
    assert HOSTILE_MESSAGE in shown[f"assignments/{ASSIGNMENT}"], "the check message is shown, as text"
    assert page.dialogs == [], f"student script ran: {page.dialogs}"


def test_student_page_links_feedback_and_regrades_through_the_queue(instructor, hub: Hub, klass: Class) -> None:
    page = instructor
    page.goto(f"{hub.url}{DASHBOARD}students/alice")
    first, second = klass.submissions["alice"]
    assert _figures(page.locator(f"[data-assignment='{ASSIGNMENT}']").first) == \
        {"attempts": "2", "latest": "12", "counted": "12"}
    feedback = page.request.get(f"{hub.url}{DASHBOARD}submissions/{first}/feedback/{NOTEBOOK}")
    assert feedback.status == 200 and f"feedback of #{first}" in feedback.text()
    assert "sandbox" in feedback.headers["content-security-policy"]
    assert page.locator(f"a[href$='submissions/{second}/feedback/{NOTEBOOK}']").count() == 1
    before = {job.id for job in klass.store.jobs()}
    page.locator(f"tr[data-submission='{first}'] button", has_text="Regrade").click()
    page.locator("#queued").wait_for()
    new = [job for job in klass.store.jobs() if job.id not in before]
    assert [(job.submission_id, job.state) for job in new] == [(first, "queued")]
    with klass.store.session() as db:
        assert db.get(Job, new[0].id).requested_by == "ines"

    page.goto(f"{hub.url}{DASHBOARD}assignments/{ASSIGNMENT}")
    page.click("#regrade-assignment")
    page.locator("#queued").wait_for()
    newest = {job.submission_id for job in klass.store.jobs() if job.id not in before and job.id != new[0].id}
    latest = {ids[-1] for student, ids in klass.submissions.items() if student != "dora"}
    assert newest == latest, "each student's newest submission is queued once"


def test_csv_export_lists_every_enrolled_student(instructor, hub: Hub, klass: Class) -> None:
    page = instructor
    page.goto(f"{hub.url}{DASHBOARD}")
    with page.expect_download() as download:
        page.click("text=Export grades (CSV)")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    grades = {row["username"]: row[ASSIGNMENT] for row in rows}
    assert grades == {"alice": "12", "bob": "3", "carol": "", "dave": "", "erin": "", HOSTILE: "0"}
    assert {"02-going-deeper", "03-improving-your-model"} <= set(rows[0]), "one column per assignment"
    long = page.request.get(f"{hub.url}{DASHBOARD}grades.csv?layout=long")
    assert long.status == 200 and "attachment" in long.headers["content-disposition"]
    erin = [row for row in csv.DictReader(io.StringIO(long.text())) if row["username"] == "erin"]
    assert len(erin) == len(rows[0]) - 1 and all(row["score"] == "" for row in erin)
    # the command line gives the same table
    assert hub.cli("export", COURSE).stdout == Path(download.value.path()).read_text()


def test_dashboard_refuses_students_and_other_courses_instructors(browser, hub: Hub, klass: Class) -> None:
    for username in ("alice", "kim"):
        page, response = _signed_in(browser, hub, username, "/hub/home")
        try:
            refused = page.goto(f"{hub.url}{DASHBOARD}")
            assert refused.status == 403, (username, refused.status, page.url)
            assert page.locator("#students").count() == 0
            token = Session(hub, username, hub.token(username))
            assert token.get(DASHBOARD).status_code == 403, username
            assert token.get(f"{DASHBOARD}grades.csv").status_code == 403, username
            assert token.post(f"{DASHBOARD}submissions/{klass.submissions['alice'][0]}/regrade").status_code == 403
        finally:
            page.context.close()
    page, response = _signed_in(browser, hub, "kim", f"/services/{OTHER_COURSE}-dashboard/")
    assert response.status == 200 and "dora" in page.inner_text("main"), "kim sees her own course"
    assert "alice" not in page.inner_text("main")
    page.context.close()


def test_services_menu_links_the_dashboard(instructor, hub: Hub) -> None:
    page = instructor
    page.goto(f"{hub.url}/hub/home")
    assert page.locator(f"a[href*='{DASHBOARD.rstrip('/')}']").count() >= 1


def test_formgrader_names_the_course_students_and_needs_no_manual_grading(instructor, hub: Hub,
                                                                          klass: Class) -> None:
    """Each untruth the browser trial found, checked on every page where it showed."""
    page = instructor
    untrue: list[str] = []
    page.goto(f"{hub.url}{FORMGRADER}/manage_submissions/{ASSIGNMENT}")
    page.locator("tr", has_text="bob").wait_for()
    page.screenshot(path=str(ARTIFACTS / "instructor-formgrader-truthful.png"))
    submissions = page.locator("table").inner_text()
    views = {"submissions": (page.title(), page.locator("#course-name").all_inner_texts(), submissions)}
    if "needs manual grading" in submissions:
        untrue.append("deepgrade graded every cell, yet a submission 'needs manual grading'")
    page.goto(f"{hub.url}{FORMGRADER}/manage_students")
    page.locator("tr", has_text="alice").first.wait_for()
    views["students"] = (page.title(), page.locator("#course-name").all_inner_texts(), page.locator("table").inner_text())
    listed = page.request.get(f"{hub.url}{FORMGRADER}/api/submitted_notebooks/{ASSIGNMENT}/{NOTEBOOK}").json()
    [bob] = [entry["id"] for entry in listed if entry["student"] == "bob"]
    page.goto(f"{hub.url}{FORMGRADER}/submissions/{bob}/")
    page.locator("#notebook-container").first.wait_for()
    views["bob's notebook"] = (page.title(), page.locator("#course-name").all_inner_texts(), "")
    for view, (title, heading, table) in views.items():
        if COURSE not in title or heading != [COURSE]:
            untrue.append(f"{view}: the course is not named (title {title!r}, heading {heading})")
        if "None, None" in table or (table and "alice" not in table):
            untrue.append(f"{view}: students are not named from the roster")
    assert untrue == []


def test_export_never_hands_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    """A username is the student's to choose: in a CSV cell it stays text, whatever it starts with."""
    from hub.dashboard.grades import grades_csv
    from hub.dashboard.report import load_course, percentile

    store = CourseStore(f"sqlite:///{tmp_path / 'store.sqlite'}")
    for name in ("=HYPERLINK(\"http://x\")", "+1", "@sum", "plain"):
        store.add_member(name, "student", [COURSE])
    rows = list(csv.reader(io.StringIO(grades_csv(load_course(store, COURSE)))))
    assert [row[0] for row in rows[1:]] == ["'+1", "'=HYPERLINK(\"http://x\")", "'@sum", "plain"]
    assert all(cell == "" for row in rows[1:] for cell in row[1:]), "nobody submitted: every score is blank"
    assert (percentile([], 50), percentile([4.0], 95), percentile([1.0, 2.0, 3.0, 4.0], 50)) == (None, 4.0, 2.5)
