"""Feedback a student can learn from: each exercise by its title, its checks in plain words, a
learning curve, their submissions and which one counts, and their own notebook as JupyterLab shows it.

Written as ``feedback.json`` (the result itself) and ``feedback.html``. Only the student's
own cells and outputs, the check results and the reference's training band appear: the
result never holds hidden test source or hidden data, so neither can leak from here.

The page is built from hostile material, so its cost is bounded: :func:`write_feedback` runs in
a confined fork with a deadline (see ``runner.WriteFeedback``); only the histories that grade
cells exported are plotted, a few series of at most ``MAX_POINTS`` points each; the notebook is
read through the untrusted reader, stripped of widget state and of markdown past
``MAX_MARKDOWN`` characters. It is rendered through a whitelist (:func:`clean_html`): markdown,
HTML tables and SVG images are kept, scripts, event handlers, styles, frames, forms and anything
that loads from elsewhere are not; of the outputs, only the kinds in ``SHOWN_OUTPUTS`` are kept,
images as inline data only. The template's own scripts (CDN loaders) are dropped too: the page
runs no script at all, so its times are written in the course's zone (``DEEPGRADE_TIMEZONE``).

What the page takes from the exercise's release (titles, solution cells) is trusted; what it
takes from the executed notebook (the student's solution cells, to tell an untouched exercise)
only changes how the student's own result is worded, never a score.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from autograders.assignment import Assignment
from autograders.gradebook import Attempt, counting, policy_reason

RESULT_FILE = "feedback.json"
PAGE_FILE = "feedback.html"
HISTORY_FILE = "history.json"  # the student's submissions so far, written beside the result by the worker
MAX_SERIES = 8         # loss curves on the plot
MAX_POINTS = 1000      # epochs per curve
MAX_MARKDOWN = 10_000  # characters of one markdown cell that are rendered (the rest is cut and noted)
MAX_MARKDOWN_TOTAL = 100_000  # characters of markdown rendered in all (Markdown parsing can be quadratic)
MAX_HISTORY = 100      # submissions listed on the page (the newest)
SHOWN_OUTPUTS = frozenset({"text/plain", "text/html", "text/markdown", "text/latex",
                           "image/png", "image/jpeg", "image/svg+xml"})
RASTER_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif"})
BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
BLANK_GIF = "R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="
HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)

# What the student's HTML and markdown may use: text structure, tables, images from inline data.
ALLOWED_TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img",
    "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strong", "sub",
    "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var"})
ALLOWED_ATTRIBUTES = {"*": ["class", "title", "align"], "a": ["href", "id"], "img": ["src", "alt", "width", "height"],
                      "td": ["colspan", "rowspan"], "th": ["colspan", "rowspan", "scope"], "table": ["border"],
                      **{f"h{n}": ["id"] for n in range(1, 7)}}
DROPPED_WITH_CONTENT = re.compile(r"<(script|style|template|textarea|title|noscript|iframe|object|svg|math)\b"
                                  r".*?</\1\s*>", re.S | re.I)


def clean_html(fragment: Any) -> str:
    """The student's HTML through the whitelist: tags and attributes above, links only to
    ``http(s)``/``mailto`` or within the page, images only as inline raster data. Styles and
    scripts go with their content (a DataFrame's ``<style scoped>`` would otherwise show as text)."""
    import bleach

    text = fragment.decode(errors="replace") if isinstance(fragment, bytes) else str(fragment)
    text = DROPPED_WITH_CONTENT.sub("", text)

    def allowed(tag: str, name: str, value: str) -> bool:
        if name == "src":
            return tag == "img" and re.fullmatch(r"data:image/(png|jpeg|gif);base64,[A-Za-z0-9+/=\s]*", value) is not None
        if name == "href":
            return value.startswith("#") or re.match(r"(https?:|mailto:)", value, re.I) is not None
        return name in ALLOWED_ATTRIBUTES.get(tag, []) or name in ALLOWED_ATTRIBUTES["*"]

    return bleach.clean(text, tags=ALLOWED_TAGS, attributes=allowed, protocols=["http", "https", "mailto", "data"],
                        strip=True, strip_comments=True)


def learning_curve_png(histories: dict[str, dict[str, list[float]]], curves: dict[str, Any]) -> bytes | None:
    """The student's loss per epoch against the reference's band (min..max over calibration seeds)."""
    series = [(f"{cell}: {name}", values) for cell, hist in histories.items()
              for name, values in hist.items() if values][:MAX_SERIES]
    if not series:
        return None
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    for label, values in series:
        ax.plot(range(1, len(values) + 1), values, marker=".", label=f"you ({label[:60]})")
    for label, band in curves.items():
        lo, hi = band.get("min", []), band.get("max", [])
        if lo and hi:
            ax.fill_between(range(1, len(lo) + 1), lo, hi, alpha=0.25, color="grey", label=f"reference ({label})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if all(v > 0 for _, values in series for v in values):
        ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def graded_histories(workdir: Path, grade_ids: list[str]) -> dict[str, dict[str, list[float]]]:
    """The loss series of the histories the grade cells exported, finite values only."""
    from autograders.artifacts import Submission
    from autograders.results import CheckFailure

    submission, out = Submission(workdir / "sandbox"), {}
    for gid in grade_ids:
        try:
            names = [n for n, e in submission.manifest(gid).items() if isinstance(e, dict) and e.get("kind") == "history"]
        except CheckFailure:
            continue
        for name in names[:MAX_SERIES]:
            try:
                history = submission.get(gid, name, expect="history")
            except CheckFailure:
                continue
            for key, values in list(history.items())[:MAX_SERIES]:
                finite = [v for v in values[:MAX_POINTS] if math.isfinite(v)]
                if "loss" in key and finite:
                    out.setdefault(gid if name == "history" else f"{gid}/{name}", {})[key] = finite
    return out


# -- exercises, from the release ----------------------------------------------------------------
@dataclass(frozen=True)
class Exercise:
    """One grade cell as the student knows it: the heading above it, and the solution cells
    (grade id -> released source) the student fills in before it."""

    grade_id: str
    title: str
    solutions: tuple[tuple[str, str], ...] = ()


def _heading(markdown: str) -> str | None:
    found = HEADING.search(markdown)
    return re.sub(r"[*_`]", "", found.group(1)).strip() if found else None


def exercises(assignment: Assignment | None, grade_ids: list[str]) -> list[Exercise]:
    """The assignment's exercises in notebook order, each titled by the nearest markdown heading
    above its grade cell (the grade id when there is none, or when the release is missing), then
    any grade cell of the result the release does not know."""
    found: list[Exercise] = []
    if assignment is not None and assignment.release_notebook.is_file():
        import nbformat

        heading, solutions = None, []
        for cell in nbformat.read(assignment.release_notebook, as_version=4).cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "markdown":
                heading = _heading(cell.source) or heading
            elif meta.get("solution") and meta.get("grade_id"):
                solutions.append((meta["grade_id"], cell.source))
            if meta.get("grade") and meta.get("grade_id"):
                found.append(Exercise(meta["grade_id"], heading or meta["grade_id"], tuple(solutions)))
                solutions = []
    known = {e.grade_id for e in found}
    found += [Exercise(gid, gid) for gid in grade_ids if gid not in known]
    titles = [e.title for e in found]
    return [Exercise(e.grade_id, f"{e.title} ({e.grade_id})" if titles.count(e.title) > 1 else e.title, e.solutions)
            for e in found]


def _same_code(a: str, b: str) -> bool:
    return a.strip() == b.strip()


def not_attempted(exercise: Exercise, checks: list[dict[str, Any]], student_solutions: dict[str, str] | None,
                  cells: dict[str, Any]) -> bool:
    """No check passed, and either every solution cell of the exercise is as released, or the
    export never happened because one of them still raises ``NotImplementedError``."""
    if any(c.get("passed") for c in checks):
        return False
    if exercise.solutions and student_solutions is not None and all(
            sid in student_solutions and _same_code(student_solutions[sid], source)
            for sid, source in exercise.solutions):
        return True
    solution_ids = {sid for sid, _ in exercise.solutions}
    return any(isinstance(record, dict) and str(record.get("error", "")).startswith("NotImplementedError")
               and record.get("error_cell") in solution_ids for record in cells.values())


# -- the summary --------------------------------------------------------------------------------
def course_timezone() -> tuple[tzinfo | None, str]:
    """``DEEPGRADE_TIMEZONE`` (an IANA name such as ``Europe/Berlin``), else the machine's zone."""
    name = os.environ.get("DEEPGRADE_TIMEZONE", "").strip()
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return None, ""


def local_time(when: str | datetime | None) -> str:
    """A time as a student reads it: the course's zone, to the second, with the zone named."""
    if not when:
        return "unknown time"
    try:
        moment = when if isinstance(when, datetime) else datetime.fromisoformat(str(when))
    except ValueError:
        return "unknown time"
    if moment.tzinfo is None:  # every time deepgrade records is UTC; a naive one lost its zone in a database
        moment = moment.replace(tzinfo=UTC)
    zone, name = course_timezone()
    local = moment.astimezone(zone)
    label = local.tzname() or ""
    if name and name != label:
        label = f"{label} ({name})" if label else name
    return f"{local:%a %d %b %Y, %H:%M:%S} {label}".strip()


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError, OverflowError):
        return "?"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)[:2000]


def check_title(check: dict[str, Any]) -> str:
    """The test's docstring's first line, else its function name in words."""
    description = str(check.get("description") or "").strip()
    if description:
        return description
    words = str(check.get("id", "")).removeprefix("test_").replace("_", " ").strip()
    return words[:1].upper() + words[1:] if words else "check"


def _words(text: str) -> str:
    """Escaped, with the docstrings' `code` spans shown as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _mark(passed: bool) -> str:
    return "<span class='mark passed'>✓</span>" if passed else "<span class='mark failed'>✗</span>"


def _grade_id(check: dict[str, Any]) -> str:
    return str(check.get("grade_id") or "other checks")


def _check_row(check: dict[str, Any]) -> str:
    passed = bool(check.get("passed"))
    cells = [f"{_mark(passed)} {_words(check_title(check))}",
             f"{_number(check.get('score'))} / {_number(check.get('points'))}"]
    if passed:
        return "<tr class='passed'>" + "".join(f"<td>{c}</td>" for c in cells) + "<td colspan='4'>passed</td></tr>"
    cells += [html.escape(str(check.get("message", ""))), html.escape(_fmt(check.get("measured"))),
              html.escape(_fmt(check.get("expected"))), html.escape(str(check.get("hint", "")))]
    return "<tr class='failed'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _exercise_html(exercise: Exercise, cell: dict[str, Any], checks: list[dict[str, Any]], untouched: bool) -> str:
    score = f"{_number(cell.get('score'))} / {_number(cell.get('max_score'))}"
    head = (f"<h3><span class='title'>{html.escape(exercise.title)}</span> "
            f"<span class='points'>{score}</span></h3>")
    if untouched:
        return (f"<section class='exercise not-attempted' data-grade-id='{html.escape(exercise.grade_id)}'>{head}"
                "<p class='not-attempted'>Not attempted: your answer cell is still as it was handed out. "
                "Write your solution in place of <code>raise NotImplementedError()</code>, then run the "
                "notebook from top to bottom before you submit.</p></section>")
    failed = [c for c in checks if not c.get("passed")]
    reasons = {(str(c.get("message", "")), str(c.get("hint", ""))) for c in failed}
    if checks and len(failed) == len(checks) > 1 and len(reasons) == 1:  # one cause stopped them all
        message, hint = reasons.pop()
        body = (f"<p class='cause'>None of its {len(checks)} checks could pass: {html.escape(message)}</p>"
                + (f"<p class='hint'>What to try: {html.escape(hint)}</p>" if hint else "")
                + "<ul class='checks'>" + "".join(f"<li>{_mark(False)} {_words(check_title(c))}</li>" for c in checks)
                + "</ul>")
    elif checks:
        body = ("<table class='checks'><tr><th>check</th><th>points</th><th>what happened</th><th>measured</th>"
                "<th>expected</th><th>what to try</th></tr>" + "".join(_check_row(c) for c in checks) + "</table>")
    else:
        body = "<p>No check ran for this exercise.</p>"
    return f"<section class='exercise' data-grade-id='{html.escape(exercise.grade_id)}'>{head}{body}</section>"


def _history_html(history: dict[str, Any] | None, result: dict[str, Any]) -> str:
    """The student's submissions with score and time, and which one counts under the policy."""
    if not history:
        return ""
    policy = str(history.get("policy", "latest"))
    current = history.get("current")
    rows = [r for r in history.get("submissions", []) if isinstance(r, dict)][-MAX_HISTORY:]
    attempts = []
    for row in rows:
        score = row.get("score")
        if row.get("id") == current:
            score = None if result.get("status") == "platform-error" else result.get("score")
        try:
            when = datetime.fromisoformat(str(row.get("submitted_at")))
        except ValueError:
            continue
        attempts.append((row, Attempt(row.get("id"), when, None if score is None else float(score))))
    counted = counting([a for _, a in attempts], policy)
    lines = []
    for number, (row, attempt) in enumerate(attempts, start=1):
        marks = (["counts"] if counted is not None and attempt.key == counted.key else []) + \
                (["this page"] if attempt.key == current else [])
        score = "not graded" if attempt.score is None else \
            f"{_number(attempt.score)} / {_number(result.get('max_score') if attempt.key == current else row.get('max_score'))}"
        lines.append(f"<tr class='{' '.join(m.replace(' ', '-') for m in marks)}'><td>{number}</td>"
                     f"<td>{html.escape(local_time(attempt.submitted_at))}</td><td>{score}</td>"
                     f"<td>{html.escape(', '.join(marks))}</td></tr>")
    return (f"<h2>Your submissions</h2><p class='policy'>{html.escape(policy_reason(policy))}</p>"
            "<table class='history'><tr><th>#</th><th>submitted</th><th>score</th><th></th></tr>"
            + "".join(lines) + "</table>")


SUMMARY_STYLE = """
#deepgrade-feedback{font-family:system-ui,sans-serif;margin:1em auto;max-width:1100px;line-height:1.4}
#deepgrade-feedback table{border-collapse:collapse;margin:.5em 0}
#deepgrade-feedback td,#deepgrade-feedback th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
#deepgrade-feedback .exercise{border-left:4px solid #888;padding:.1em 1em;margin:1em 0}
#deepgrade-feedback .exercise h3 .points{float:right;font-weight:normal}
#deepgrade-feedback .not-attempted{border-left-color:#bbb;color:#555}
#deepgrade-feedback .note{background:#fff4ce;padding:.4em .8em}
#deepgrade-feedback tr.counts{font-weight:bold}
#deepgrade-feedback .score{font-size:1.4em}
#deepgrade-feedback .mark{font-weight:bold}
#deepgrade-feedback .mark.passed{color:#1a7f37}
#deepgrade-feedback .mark.failed{color:#cf222e}
#deepgrade-feedback tr.passed td:last-child{color:#1a7f37}
#deepgrade-feedback ul.checks{list-style:none;padding-left:.5em}
"""


def render_summary(result: dict[str, Any], plot: bytes | None, assignment: Assignment | None = None,
                   history: dict[str, Any] | None = None, student_solutions: dict[str, str] | None = None) -> str:
    """The part of the page above the notebook: the score, one section per exercise, the
    learning curve and the submissions."""
    notes = [result.get("message", ""), result.get("isolation_warning", ""), *result.get("integrity", [])]
    note_html = "".join(f"<p class='note'>{html.escape(str(n))}</p>" for n in notes if n)
    grade_cells = result.get("grade_cells") or {}
    checks = [c for c in result.get("checks", []) if isinstance(c, dict)]
    cells = (result.get("execution") or {}).get("cells") or {}
    sections = []
    for exercise in exercises(assignment, [*grade_cells, *(_grade_id(c) for c in checks)]):
        mine = [c for c in checks if _grade_id(c) == exercise.grade_id]
        untouched = not_attempted(exercise, mine, student_solutions, cells)
        sections.append(_exercise_html(exercise, grade_cells.get(exercise.grade_id, {}), mine, untouched))
    title = assignment.title if assignment is not None else str(result.get("assignment", ""))
    img = (f"<h2>Your training</h2><img alt='learning curve' src='data:image/png;base64,"
           f"{base64.b64encode(plot).decode()}'/>") if plot else ""
    stopped = "" if result.get("status", "graded") == "graded" else " (grading stopped early: see the note below)"
    return f"""
<style>{SUMMARY_STYLE}</style>
<section id="deepgrade-feedback">
<h1>{html.escape(title)}</h1>
<p class="score">Score: <b>{_number(result.get('score'))} / {_number(result.get('max_score'))}</b>{stopped}</p>
<p class="submitted">Submitted {html.escape(local_time(result.get('submitted_at')))}</p>
{note_html}
{_history_html(history, result)}
<h2>Exercises</h2>
{''.join(sections)}
{img}
<h2>Your notebook</h2>
</section>"""


def _page(body: str) -> str:
    return f"<html><head><meta charset='utf-8'><title>Feedback</title></head><body>{body}</body></html>"


def _assignment_of(result: dict[str, Any], assignment: str | Path | None = None) -> Assignment | None:
    try:
        return Assignment.load(assignment or str(result.get("assignment", "")))
    except (FileNotFoundError, OSError, ValueError):
        return None


def _history(workdir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((workdir / HISTORY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_plain_feedback(workdir: Path, note: str) -> Path:
    """The checks alone, with ``note`` saying why the rest is missing (never fails on our data)."""
    workdir = Path(workdir)
    result = json.loads((workdir / RESULT_FILE).read_text())
    summary = render_summary(result, None, _assignment_of(result), _history(workdir))
    target = workdir / PAGE_FILE
    target.write_text(_page(summary + f"<p class='note'>{html.escape(note)}</p>"))
    return target


# -- the student's notebook ---------------------------------------------------------------------
def read_executed(workdir: Path) -> Any:
    """The executed notebook, read as untrusted input (size and depth bounded)."""
    import nbformat

    from autograders.execute import EXECUTED
    from autograders.untrusted import (
        MAX_JSON_DEPTH,
        MAX_NOTEBOOK_BYTES,
        UntrustedFileError,
        json_depth,
        read_text,
    )

    text = read_text(Path(workdir) / "sandbox", EXECUTED, MAX_NOTEBOOK_BYTES)
    if json_depth(text) > MAX_JSON_DEPTH:
        raise UntrustedFileError(f"the executed notebook is nested more than {MAX_JSON_DEPTH} levels deep")
    return nbformat.reads(text, as_version=4)


def solution_sources(nb: Any) -> dict[str, str]:
    """grade id -> source of the student's solution cells (by their nbgrader metadata)."""
    found = {}
    for cell in nb.get("cells", []):
        meta = (cell.get("metadata") or {}).get("nbgrader") or {}
        if isinstance(meta, dict) and meta.get("solution") and isinstance(meta.get("grade_id"), str) \
                and isinstance(cell.get("source"), str):
            found.setdefault(meta["grade_id"], cell["source"])
    return found


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _image_data(value: Any) -> str | None:
    text = "".join(value) if isinstance(value, list) else value
    return text if isinstance(text, str) and BASE64.fullmatch(text) else None


def trim_notebook(nb: Any) -> Any:
    """What the page can afford and may show: metadata gone (the template writes some of it into
    attributes), cell ids and counts as plain values, raster attachments only, only the output
    kinds in ``SHOWN_OUTPUTS`` with images as base64, and markdown within its budget."""
    import nbformat

    nb.metadata = nbformat.from_dict({k: v for k, v in nb.get("metadata", {}).items()
                                      if k in ("kernelspec", "language_info") and isinstance(v, dict)})
    markdown_left = MAX_MARKDOWN_TOTAL
    for index, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict({})
        cell.id = f"cell-{index}"
        if cell.get("cell_type") == "markdown":
            keep = max(0, min(MAX_MARKDOWN, markdown_left))
            if len(cell.source) > keep:
                cell.source = cell.source[:keep] + "\n\n*[deepgrade: the rest of this cell is not shown]*"
            markdown_left -= len(cell.source)
            attachments = {}
            for name, bundle in (cell.get("attachments") or {}).items():
                images = {mime: data for mime, data in (bundle or {}).items()
                          if mime in RASTER_IMAGES and _image_data(data) is not None}
                if images:
                    attachments[name] = images
            for name in re.findall(r"attachment:([^\s)\"'>]+)", cell.source):
                attachments.setdefault(name, {"image/gif": BLANK_GIF})  # nbconvert fails on a missing one
            cell.attachments = nbformat.from_dict(attachments)
        if cell.get("cell_type") != "code":
            continue
        cell.execution_count = _count(cell.get("execution_count"))
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output.execution_count = _count(output.execution_count)
            if "metadata" in output:
                output.metadata = nbformat.from_dict({})  # no image file names of the student's choosing
            if isinstance(output.get("data"), dict):
                data = {mime: value for mime, value in output.data.items() if mime in SHOWN_OUTPUTS}
                for mime in ("image/png", "image/jpeg"):
                    if mime in data and _image_data(data[mime]) is None:
                        del data[mime]
                output.data = nbformat.from_dict(data)
    return nb


def bounded_notebook(workdir: Path) -> Any:
    """The executed notebook, read as untrusted input and trimmed to what a page can afford."""
    return trim_notebook(read_executed(workdir))


def render_notebook(nb: Any) -> str:
    """The notebook as JupyterLab shows it, through :func:`clean_html`, with no script."""
    from nbconvert import HTMLExporter

    # sanitize_html: every fragment of the student's HTML, Markdown and inline SVG goes through our
    # whitelist; an SVG output becomes an <img> of data, where it can neither run nor load anything.
    exporter = HTMLExporter(template_name="lab", sanitize_html=True, filters={"clean_html": clean_html})
    body, _ = exporter.from_notebook_node(nb)
    # The template's own scripts load require.js, MathJax and mermaid from a CDN: the page needs
    # none of them, and must not load remote code (the student's content is sanitised already).
    return re.sub(r"<script\b[^>]*>.*?</script>", "", body, flags=re.S | re.I)


def write_feedback(workdir: str | Path, assignment: str | Path) -> Path:
    """The full page: summary, learning curve, submissions and the student's notebook (run in a
    confined fork)."""
    workdir = Path(workdir)
    result = json.loads((workdir / RESULT_FILE).read_text())
    loaded = Assignment.load(assignment)
    plot = learning_curve_png(graded_histories(workdir, list(result.get("grade_cells", {}))), loaded.reference_curves)
    history = _history(workdir)
    try:
        nb = read_executed(workdir)
        solutions = solution_sources(nb)
        body = render_notebook(trim_notebook(nb))
        summary = render_summary(result, plot, loaded, history, solutions)
        page = body.replace("<body", "<body data-deepgrade", 1)
        start = page.index(">", page.index("<body")) + 1
        page = page[:start] + summary + page[start:]
    except Exception as exc:  # feedback must exist even if the notebook cannot be shown
        reason = html.escape(str(exc)[:300])
        page = _page(render_summary(result, plot, loaded, history)).replace(
            "</body>", f"<p class='note'>Your notebook is not shown here: {reason}</p></body>")
    target = workdir / PAGE_FILE
    target.write_text(page)
    return target
