"""Feedback a student can learn from: one line per check, a learning curve, their own notebook.

Written as ``feedback.json`` (the result itself) and ``feedback.html``. Only the student's
own cells and outputs, the check results and the reference's training band appear: the
result never holds hidden test source or hidden data, so neither can leak from here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import threading
from pathlib import Path
from typing import Any

from autograders.assignment import Assignment

_PLOT_LOCK = threading.Lock()


def learning_curve_png(histories: dict[str, dict[str, list[float]]], curves: dict[str, Any]) -> bytes | None:
    """The student's loss per epoch against the reference's band (min..max over calibration seeds)."""
    series = [(f"{cell}: {name}", values) for cell, hist in histories.items()
              for name, values in hist.items() if values]
    if not series:
        return None
    with _PLOT_LOCK:  # matplotlib's text layout is not thread-safe; validate grades in threads
        return _plot(series, curves)


def _plot(series: list[tuple[str, list[float]]], curves: dict[str, Any]) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    ax = fig.add_subplot()
    for label, values in series:
        ax.plot(range(1, len(values) + 1), values, marker=".", label=f"you ({label})")
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


def _histories(workdir: Path) -> dict[str, dict[str, list[float]]]:
    """Training histories the submission exported (only 'loss'-like keys are plotted)."""
    out: dict[str, dict[str, list[float]]] = {}
    for path in sorted((workdir / "sandbox" / "artifacts").glob("*/*.history.json")):
        if path.is_symlink():
            continue
        try:
            data = json.loads(path.read_text()).get("history", {})
            out[path.parent.name] = {k: [float(x) for x in v][:1000] for k, v in data.items() if "loss" in k}
        except (ValueError, AttributeError, TypeError):
            continue
    return out


def _row(check: dict[str, Any]) -> str:
    mark = "✅" if check["passed"] else "❌"
    cells = [f"{mark} {html.escape(check['id'])}", f"{check['score']:g} / {check['points']:g}",
             html.escape(str(check.get("message", ""))), html.escape(_fmt(check.get("measured"))),
             html.escape(_fmt(check.get("expected"))), html.escape(str(check.get("hint", "")))]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _fmt(value: Any) -> str:
    return "" if value is None else (value if isinstance(value, str) else json.dumps(value))


def render_summary(result: dict[str, Any], plot: bytes | None) -> str:
    notes = [result.get("message", ""), result.get("isolation_warning", ""), *result.get("integrity", [])]
    note_html = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes if n)
    rows = "".join(_row(c) for c in result.get("checks", []))
    img = f"<img alt='learning curve' src='data:image/png;base64,{base64.b64encode(plot).decode()}'/>" if plot else ""
    return f"""
<section id="deepgrade-feedback" style="font-family:sans-serif;margin:1em">
<h1>{html.escape(result['assignment'])}: {result['score']:g} / {result['max_score']:g}</h1>
<p>status: <b>{html.escape(result['status'])}</b> · graded in {html.escape(result['isolation'])}</p>
{note_html}
<table border="1" cellpadding="4" style="border-collapse:collapse">
<tr><th>check</th><th>points</th><th>what happened</th><th>measured</th><th>expected</th><th>what to try</th></tr>
{rows}</table>
{img}
</section>"""


def write_feedback(result: dict[str, Any], executed: Path, assignment: Assignment, workdir: Path) -> Path:
    plot = learning_curve_png(_histories(workdir), assignment.reference_curves)
    (workdir / "feedback.json").write_text(json.dumps(result, indent=1))
    summary = render_summary(result, plot)
    page = f"<html><head><meta charset='utf-8'><title>Feedback</title></head><body>{summary}</body></html>"
    if executed.exists():
        try:
            import nbformat
            from nbconvert import HTMLExporter

            # sanitize_html: the student's HTML, Markdown and SVG must not run scripts in a reader's browser
            exporter = HTMLExporter(template_name="lab", sanitize_html=True)
            body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
            page = body.replace("<body", "<body data-deepgrade", 1)
            start = page.index(">", page.index("<body")) + 1
            page = page[:start] + summary + page[start:]
        except Exception as exc:  # feedback must exist even if nbconvert chokes on the notebook
            page = page.replace("</body>", f"<p>(the notebook could not be rendered: {html.escape(str(exc))})</p></body>")
    target = workdir / "feedback.html"
    target.write_text(page)
    return target
