"""Grades as CSV, with every enrolled student: what ``deepgrade export`` and the dashboard hand out.

``nbgrader export`` leaves out whoever never submitted; an LMS gradebook import wants them, blank.

- ``wide`` (for an LMS gradebook import): one row per enrolled student, a ``username`` column, then
  one column per assignment holding the counted score, blank where nothing was graded;
- ``long`` (for analysis): one row per enrolled student and assignment, with the maximum score,
  the counted submission and when it was made, the attempts and the counting policy.

A cell that a spreadsheet would read as a formula (``=``, ``+``, ``-``, ``@`` first) is quoted
with a leading apostrophe: usernames are chosen by students.
"""

from __future__ import annotations

import csv
import io

from hub.dashboard.report import CourseReport

FORMATS = ("wide", "long")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def grades_csv(report: CourseReport, layout: str = "wide") -> str:
    if layout not in FORMATS:
        raise ValueError(f"layout must be one of {', '.join(FORMATS)}, not {layout!r}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = list(report.assignments)
    if layout == "wide":
        writer.writerow(["username", *map(_text, names)])
        for student in report.students:
            rows = report.student_rows(student)
            writer.writerow([_text(student), *(_number(rows[name].counted.score if rows[name].counted else None)
                                               for name in names)])
        return out.getvalue()
    writer.writerow(["username", "assignment", "score", "max_score", "submission_id", "submitted_at", "attempts",
                     "policy"])
    for student in report.students:
        for name, row in report.student_rows(student).items():
            assignment = report.assignments[name]
            counted = row.counted
            writer.writerow([_text(student), _text(name), _number(counted.score if counted else None),
                             _number(counted.max_score if counted else assignment.max_score),
                             counted.submission_id if counted else "",
                             counted.submitted_at.isoformat() if counted else "", len(row.attempts), assignment.policy])
    return out.getvalue()
