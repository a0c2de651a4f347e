"""Feedback a student can learn from: one line per check, a learning curve, their own notebook.

Written as ``feedback.json`` (the result itself) and ``feedback.html``. Only the student's
own cells and outputs, the check results and the reference's training band appear: the
result never holds hidden test source or hidden data, so neither can leak from here.

The page is built from hostile material, so its cost is bounded: :func:`write_feedback` runs in
a confined fork with a deadline (see ``runner.WriteFeedback``); only the histories that grade
cells exported are plotted, a few series of at most ``MAX_POINTS`` points each; the notebook is
read through the untrusted reader, stripped of widget state and of markdown past
``MAX_MARKDOWN`` characters, and rendered sanitised with no script at all (the template's
own load code from a CDN); any value in any artifact gives a page.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from autograders.assignment import Assignment

RESULT_FILE = "feedback.json"
PAGE_FILE = "feedback.html"
MAX_SERIES = 8         # loss curves on the plot
MAX_POINTS = 1000      # epochs per curve
MAX_MARKDOWN = 10_000  # characters of one markdown cell that are rendered (the rest is cut and noted)
MAX_MARKDOWN_TOTAL = 100_000  # characters of markdown rendered in all (Markdown parsing can be quadratic)
REMOTE_CODE = ("application/vnd.jupyter.widget-view+json", "application/vnd.jupyter.widget-state+json",
               "application/javascript", "text/javascript")


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


def _row(check: dict[str, Any]) -> str:
    mark = "✅" if check.get("passed") else "❌"
    cells = [f"{mark} {html.escape(str(check.get('id', '')))}",
             f"{_number(check.get('score'))} / {_number(check.get('points'))}",
             html.escape(str(check.get("message", ""))), html.escape(_fmt(check.get("measured"))),
             html.escape(_fmt(check.get("expected"))), html.escape(str(check.get("hint", "")))]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _number(value: Any) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError, OverflowError):
        return "?"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, default=str)[:2000]


def render_summary(result: dict[str, Any], plot: bytes | None) -> str:
    notes = [result.get("message", ""), result.get("isolation_warning", ""), *result.get("integrity", [])]
    note_html = "".join(f"<p class='note'>{html.escape(str(n))}</p>" for n in notes if n)
    rows = "".join(_row(c) for c in result.get("checks", []))
    img = f"<img alt='learning curve' src='data:image/png;base64,{base64.b64encode(plot).decode()}'/>" if plot else ""
    return f"""
<section id="deepgrade-feedback" style="font-family:sans-serif;margin:1em">
<h1>{html.escape(str(result.get('assignment', '')))}: {_number(result.get('score'))} / {_number(result.get('max_score'))}</h1>
<p>status: <b>{html.escape(str(result.get('status', '')))}</b> · graded in {html.escape(str(result.get('isolation', '')))}</p>
{note_html}
<table border="1" cellpadding="4" style="border-collapse:collapse">
<tr><th>check</th><th>points</th><th>what happened</th><th>measured</th><th>expected</th><th>what to try</th></tr>
{rows}</table>
{img}
</section>"""


def _page(body: str) -> str:
    return f"<html><head><meta charset='utf-8'><title>Feedback</title></head><body>{body}</body></html>"


def write_plain_feedback(workdir: Path, note: str) -> Path:
    """The checks alone, with ``note`` saying why the rest is missing (never fails on our data)."""
    result = json.loads((Path(workdir) / RESULT_FILE).read_text())
    target = Path(workdir) / PAGE_FILE
    target.write_text(_page(render_summary(result, None) + f"<p class='note'>{html.escape(note)}</p>"))
    return target


def bounded_notebook(workdir: Path) -> Any:
    """The executed notebook, read as untrusted input and trimmed to what a page can afford."""
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
    nb = nbformat.reads(text, as_version=4)
    nb.metadata = {k: v for k, v in nb.get("metadata", {}).items() if k in ("kernelspec", "language_info")}
    markdown_left = MAX_MARKDOWN_TOTAL
    for cell in nb.cells:
        cell.metadata = {}
        if cell.get("cell_type") == "markdown":
            keep = max(0, min(MAX_MARKDOWN, markdown_left))
            if len(cell.source) > keep:
                cell.source = cell.source[:keep] + "\n\n*[deepgrade: the rest of this cell is not shown]*"
            markdown_left -= len(cell.source)
        for output in cell.get("outputs", []):
            for mime in REMOTE_CODE:
                (output.get("data") or {}).pop(mime, None)
    return nb


def write_feedback(workdir: str | Path, assignment: str | Path) -> Path:
    """The full page: summary, learning curve and the student's notebook (run in a confined fork)."""
    workdir = Path(workdir)
    result = json.loads((workdir / RESULT_FILE).read_text())
    curves = Assignment.load(assignment).reference_curves
    plot = learning_curve_png(graded_histories(workdir, list(result.get("grade_cells", {}))), curves)
    summary = render_summary(result, plot)
    page = _page(summary)
    try:
        from nbconvert import HTMLExporter

        # sanitize_html: the student's HTML, Markdown and SVG must not run scripts in a reader's browser
        exporter = HTMLExporter(template_name="lab", sanitize_html=True)
        body, _ = exporter.from_notebook_node(bounded_notebook(workdir))
        # The template's own scripts load require.js, MathJax and mermaid from a CDN: the page needs
        # none of them, and must not load remote code (the student's content is sanitised already).
        body = re.sub(r"<script\b[^>]*>.*?</script>", "", body, flags=re.S | re.I)
        page = body.replace("<body", "<body data-deepgrade", 1)
        start = page.index(">", page.index("<body")) + 1
        page = page[:start] + summary + page[start:]
    except Exception as exc:  # feedback must exist even if the notebook cannot be shown
        reason = html.escape(str(exc)[:300])
        page = page.replace("</body>", f"<p class='note'>Your notebook is not shown here: {reason}</p></body>")
    target = workdir / PAGE_FILE
    target.write_text(page)
    return target
