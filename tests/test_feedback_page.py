"""The feedback page a student reads, and the score policy, through the real queue.

One student submits a better, then a worse notebook of dl-python's first chapter (NumPy only,
so a grading takes seconds) to two copies of it: one with ``score: latest`` (the default), one
with ``score: best``. The real worker grades them in the sandbox and writes the pages in its
confined fork. The better notebook is the reference with a few cells of the student's own: a
heading, a DataFrame, a plot, an SVG, and outputs that try to run script or load from elsewhere.
The worse one is, for ``latest``, the blank release, and for ``best`` the better one with a
planted mistake. The browser test opens the last page in chromium and takes the screenshot shown
in ``docs/students.md``.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
import yaml

from autograders.assignment import Assignment
from autograders.feedback import local_time
from autograders.validate import apply_mistake
from hub.exchange.service import scores_model
from hub.queue import DatabaseQueue
from hub.store import CourseStore
from tests.test_hub import CHROMIUM_ARGS
from tests.test_queue import NUMPY_CHAPTER, gradebook_row, submit

DOCS = Path(__file__).resolve().parents[1] / "docs"
REMOTE = "deepgrade-remote.invalid"  # any load from here is a leak: nothing on the page may point at it
EXERCISES = {"forward-propagation": "1. Forward propagation", "relu": "2. Activation functions (relu)",
             "relu-network": "2. Activation functions (relu-network)",
             "many-rows": "3. Applying the network to many rows", "deep-network": "4. Deeper networks",
             "representation": "5. Representation learning"}

STUDENT_MARKDOWN = f"""## My own analysis

Some **bold** words, a <b>tag</b> and an image that tries a handler:
<img src="x" onerror="window.deepgradeXss = 'markdown'"> <iframe src="http://{REMOTE}/md-frame"></iframe>
![remote](http://{REMOTE}/md.png)
"""
DATAFRAME = 'import pandas as pd\npd.DataFrame({"epoch": [1, 2, 3], "my_loss": [0.9, 0.5, 0.3]})'
PLOT = """import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(4, 2.5))
ax.plot([1, 2, 3], [0.9, 0.5, 0.3], marker="o", label="my loss")
ax.set_title("My own plot")
ax.legend()
plt.show()
"""
SVG_IMAGE = """from IPython.display import SVG, display
display(SVG('<svg xmlns="http://www.w3.org/2000/svg" width="60" height="60"><circle cx="30" cy="30" r="25" '
            'fill="teal"/><script>window.deepgradeXss = "svg"</script></svg>'))
"""
# Built from pieces, so that the words it tries to smuggle appear on the page only if an output lets them through.
HOSTILE = r"""from IPython.display import HTML, Markdown, display
R, S, ON, JS, ST = "deepgrade-remote" + ".invalid", "scr" + "ipt", "on" + "error", "java" + "script:", "sty" + "le"
display(HTML(f"<{S}>window.deepgradeXss = 'script'</{S}><img src=x {ON}=\"window.deepgradeXss = 'img'\">"
             f"<a href='{JS}window.deepgradeXss=1'>click me</a><{'ifr' + 'ame'} src='http://{R}/frame'></iframe>"
             f"<img src='http://{R}/beacon.png'><{ST}>body {{ display: none }}</{ST}>"
             f"<div {'on' + 'click'}='steal()' {ST}='background: url(http://{R}/bg.png)'>hostile block</div>"))
display(Markdown(f"![md](http://{R}/output.png) <{'s' + 'vg'} {'on' + 'load'}=\"window.deepgradeXss = 'svg'\">"))
display({"text/vnd.mermaid": f"<img src=x {ON}=\"window.deepgradeXss = 'mermaid'\">",
         "application/java" + "script": "window.deepgradeXss = 'js'", "text/plain": "a mermaid diagram"}, raw=True)
display({"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==",
         "text/plain": "pixel"}, raw=True, metadata={"filenames": {"image/png": f"http://{R}/file.png"}})
"""


def with_my_cells(notebook: Path, dest: Path) -> Path:
    nb = nbformat.read(notebook, as_version=4)
    nb.cells += [nbformat.v4.new_markdown_cell(STUDENT_MARKDOWN), nbformat.v4.new_code_cell(DATAFRAME),
                 nbformat.v4.new_code_cell(PLOT), nbformat.v4.new_code_cell(SVG_IMAGE),
                 nbformat.v4.new_code_cell(HOSTILE)]
    nbformat.write(nb, dest)
    return dest


def copy_with_policy(chapter: Assignment, root: Path, name: str, policy: str | None) -> Assignment:
    target = root / chapter.course / name
    shutil.copytree(chapter.path, target, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((target / "assignment.yaml").read_text())
    if policy:
        config["score"] = policy
    (target / "assignment.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return Assignment.load(target)


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Better then worse, to a ``latest`` and a ``best`` copy of the chapter, graded in order by
    one real worker of the database queue."""
    tmp = tmp_path_factory.mktemp("feedback")
    chapter = Assignment.load(NUMPY_CHAPTER)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DEEPGRADE_HOME", str(tmp / "home"))
        mp.setenv("DEEPGRADE_ASSIGNMENTS", str(tmp / "assignments"))
        mp.setenv("DEEPGRADE_TIMEZONE", "Europe/Berlin")
        mp.delenv("DEEPGRADE_DB_URL", raising=False)
        latest = copy_with_policy(chapter, tmp / "assignments", chapter.name, None)
        best = copy_with_policy(chapter, tmp / "assignments", "01-basics-best", "best")
        better = with_my_cells(chapter.source_notebook, tmp / "better.ipynb")
        mistake = next(m for m in chapter.mistakes if m.id == "no-activation")
        worse = with_my_cells(apply_mistake(chapter, mistake, tmp / "mistake.ipynb"), tmp / "worse.ipynb")
        store = CourseStore()
        queue = DatabaseQueue(store=store, per_hour=0)
        # one student per copy: the course's gradebook holds one submission per student and assignment
        order = [(latest, "ada", better), (latest, "ada", latest.release_notebook), (best, "bob", better),
                 (best, "bob", worse)]
        ids = [submit(store, a, student, notebook) for a, student, notebook in order]
        jobs = [queue.submit(i, student) for i, (_, student, _) in zip(ids, order, strict=True)]
        queue.start(1)  # one worker: the better submission of each pair is graded first
        try:
            done = queue.wait([j.id for j in jobs], timeout=600)
        finally:
            queue.stop()
        assert [j.state for j in done] == ["graded"] * 4, [j.describe() for j in done]
        pages = {label: store.feedback(i, chapter.notebook_name).decode()
                 for label, i in zip(("latest-better", "latest-blank", "best-better", "best-worse"), ids, strict=True)}
        yield {"store": store, "tmp": tmp, "home": tmp / "home", "latest": latest, "best": best, "ids": ids,
               "jobs": {j.submission_id: j for j in done}, "pages": pages}


def summary(page: str) -> str:
    """The part of the page above the student's notebook."""
    start = page.index('<section id="deepgrade-feedback">')
    return page[start:page.index("<h2>Your notebook</h2>", start)]


def test_a_blank_notebook_lists_each_exercise_once_as_not_attempted(graded: dict) -> None:
    assert graded["jobs"][graded["ids"][1]].score == 0
    top = summary(graded["pages"]["latest-blank"])
    for grade_id, title in EXERCISES.items():
        assert top.count(f"data-grade-id='{grade_id}'") == 1, grade_id
        assert top.count(f"<span class='title'>{title}</span>") == 1, title
    assert top.count("Not attempted") == len(EXERCISES)
    assert "nothing was exported" not in top and "Restart &amp; Run All" not in top, "no repeated message or hint"
    assert "test_" not in top, "checks are not named by their test functions"
    assert "bubblewrap" not in top.lower()


def test_feedback_names_exercises_and_checks_in_plain_words(graded: dict) -> None:
    top = summary(graded["pages"]["best-worse"])
    for title in EXERCISES.values():
        assert f"<span class='title'>{title}</span>" in top
    assert "Hidden node outputs after ReLU, for the example and 8 generated weight sets." in top  # a docstring
    assert "class='mark failed'" in top and "test_relu_hidden_outputs" not in top
    assert "Not attempted" not in top
    submitted = graded["store"].submissions(graded["best"].course, graded["best"].name, "bob")[-1].submitted_at
    assert local_time(submitted) in top and ("CET (Europe/Berlin)" in top or "CEST (Europe/Berlin)" in top)
    assert re.search(r"\d\d:\d\d:\d\d C", top) and "+00:00" not in top, "local time, to the second"


def test_feedback_renders_the_notebook_as_jupyterlab_does(graded: dict) -> None:
    page = graded["pages"]["best-better"]
    notebook = page[page.index("<h2>Your notebook</h2>"):]
    assert re.search(r"<h2 id=\"My-own-analysis\">My own analysis", notebook), "markdown is rendered"
    assert '<h2 id="1.-Forward-propagation">' in notebook and "&lt;h2" not in page
    assert "<strong>bold</strong>" in notebook and "<b>tag</b>" in notebook
    table = re.search(r'<table border="1" class="dataframe">.*?</table>', notebook, re.S)
    assert table and "<td>0.5</td>" in table.group(0) and "my_loss" in table.group(0), "the DataFrame is a table"
    assert "&lt;style" not in page and "<style scoped" not in page
    plots = re.findall(r"<img [^>]*src=\"data:image/png;base64,([A-Za-z0-9+/=]{2000,})", notebook)
    assert plots, "the student's own plot is kept"
    assert 'src="data:image/svg+xml;base64,' in notebook, "the SVG is kept, as an image"


def test_hostile_cells_leave_no_script_handler_or_remote_load(graded: dict) -> None:
    for label, page in graded["pages"].items():
        lowered = page.lower()
        assert "<script" not in lowered and "javascript:" not in lowered, label
        assert not re.search(r"<[^>]*\son[a-z]+\s*=", lowered), f"{label}: an event handler survived"
        assert REMOTE not in page, f"{label}: something loads from elsewhere"
        assert "<iframe" not in lowered and "<svg" not in lowered, label
        assert not re.search(r"style=[^>]*url\(", lowered), f"{label}: a style loads from elsewhere"
    assert ">hostile block</div>" in graded["pages"]["best-better"], "the harmless part of the hostile output stays"


def test_score_policy_latest_counts_the_worse_later_submission(graded: dict) -> None:
    latest, ids = graded["latest"], graded["ids"]
    assert [graded["jobs"][i].score for i in ids[:2]] == [12, 0]
    assert gradebook_row(graded["home"], latest, "ada")[0] == 0, "the gradebook holds the latest"
    model = scores_model(latest.course, latest.name, "ada",
                         graded["store"].score_history(latest.course, latest.name, "ada"), latest.score_policy)
    assert model["policy"] == "latest" and model["counted"] == ids[1]
    assert [s["counts"] for s in model["submissions"]] == [False, True]
    top = summary(graded["pages"]["latest-blank"])
    assert "Your latest graded submission counts" in top
    rows = re.findall(r"<tr class='([^']*)'><td>(\d)</td>", top)
    assert rows == [("", "1"), ("counts this-page", "2")], rows


def test_score_policy_best_keeps_the_better_earlier_submission(graded: dict) -> None:
    best, ids = graded["best"], graded["ids"]
    worse = graded["jobs"][ids[3]]
    assert graded["jobs"][ids[2]].score == 12 and 0 < worse.score < 12
    score, _ = gradebook_row(graded["home"], best, "bob")
    assert score == 12, "a worse later submission does not replace the better score in the gradebook"
    history = graded["store"].score_history(best.course, best.name, "bob")
    model = scores_model(best.course, best.name, "bob", history, best.score_policy)
    assert model["policy"] == "best" and model["counted"] == ids[2]
    assert [(s["score"], s["counts"]) for s in model["submissions"]] == [(12, True), (worse.score, False)]
    top = summary(graded["pages"]["best-worse"])
    assert "Your best score counts" in top
    rows = re.findall(r"<tr class='([^']*)'><td>(\d)</td>", top)
    assert rows == [("counts", "1"), ("this-page", "2")], rows
    result = json.loads(graded["store"].job_result(worse.id))
    assert any("score policy: best" in note for note in result["integrity"])


def test_the_feedback_page_in_a_browser(graded: dict) -> None:
    """chromium shows the page as the exchange serves it: rendered, with the student's plot, and
    with nothing run and nothing loaded from elsewhere."""
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium")
    assert executable, "chromium is missing: make test installs it with apt-get (scripts/ensure-system-packages.sh)"
    page_file = graded["tmp"] / "feedback.html"
    page_file.write_text(graded["pages"]["best-worse"])
    requests: list[str] = []
    dialogs: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            page.on("request", lambda request: requests.append(request.url))
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            heading = page.locator("#deepgrade-feedback h1")
            assert heading.inner_text() == "Basics of deep learning, with NumPy"
            assert page.locator("h2#My-own-analysis").is_visible()
            assert page.locator("table.dataframe td", has_text="0.5").first.is_visible()
            plot_width = page.evaluate("""() => Math.max(...[...document.querySelectorAll('.jp-RenderedImage img')]
                                                          .map(img => img.naturalWidth))""")
            assert plot_width >= 300, "the student's plot loads"
            assert page.locator(".exercise").count() == len(EXERCISES)
            assert page.locator("tr.counts").inner_text().startswith("1")
            assert page.evaluate("() => window.deepgradeXss") is None, "no student script ran"
            page.screenshot(path=str(DOCS / "student-feedback.png"))
            page.get_by_text("hostile block", exact=True).click()  # its handler is gone
            assert not dialogs
        finally:
            browser.close()
    assert all(url.startswith(("file:", "data:")) for url in requests), [u for u in requests if "data:" not in u[:5]]
