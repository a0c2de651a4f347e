"""A student's own grading result, check by check, for the JupyterLab panel (``labextension/``).

``GET /api/courses/<course>/submissions/<id>/result`` answers the submission's state and,
once a grading ended, its score and each check's outcome: what happened, what was measured,
what was expected and what to try, grouped by exercise (grade cell). The caller is whoever
the hub token names: a student reads only their own submissions (another's is a 404, as
elsewhere in the exchange), an instructor of the course any of the course's.

Only the fields the feedback page shows leave the service. A check that compares with hidden
data reports ``expected: "hidden"`` already (``hide_expected=True`` in the checks); the
metrics a check recorded (calibration material, possibly computed on the hidden split), test
source and tracebacks are never part of the answer.
"""

from __future__ import annotations

import json
from typing import Any

from tornado import web

from autograders import feedback
from autograders.assignment import Assignment
from hub.exchange.service import SubmissionHandler, job_model
from hub.store import SubmissionInfo

CHECK_FIELDS = ("id", "grade_id", "description", "points", "score", "passed", "message", "measured", "expected",
                "hint")
MAX_CHECKS = 200  # a result is ours, but bounded all the same: the panel lists them all


def public_checks(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The checks of a stored result, reduced to what a student may read."""
    checks = result.get("checks")
    if not isinstance(checks, list):
        return []
    return [{key: check.get(key) for key in CHECK_FIELDS} for check in checks[:MAX_CHECKS] if isinstance(check, dict)]


def exercises(checks: list[dict[str, Any]], assignment: Assignment | None) -> list[dict[str, Any]]:
    """Checks grouped by exercise in notebook order, each exercise and check titled as on the
    feedback page, with each exercise's points."""
    grade_ids = list(dict.fromkeys(str(c.get("grade_id") or "") for c in checks))
    grouped = {e.grade_id: {"exercise": e.grade_id, "title": e.title, "score": 0.0, "points": 0.0, "checks": []}
               for e in feedback.exercises(assignment, grade_ids) if e.grade_id in grade_ids}
    for check in checks:
        entry = grouped[str(check.get("grade_id") or "")]
        entry["checks"].append({**check, "title": feedback.check_title(check)})
        entry["score"] += _number(check.get("score"))
        entry["points"] += _number(check.get("points"))
    return list(grouped.values())


def result_model(info: SubmissionInfo, raw: str | None, assignment: Assignment | None = None) -> dict[str, Any]:
    """The submission's state and, when a grading finished, its result."""
    finished = info.finished
    try:
        result = json.loads(raw) if raw else {}
    except ValueError:
        result = {}
    result = result if isinstance(result, dict) else {}
    checks = public_checks(result)
    return {
        "id": info.id, "course_id": info.course, "assignment_id": info.assignment,
        "timestamp": info.submitted_at.isoformat(), "status": info.status(),
        "grading": job_model(info.grading), "finished": job_model(finished),
        "score": finished.score if finished else None, "max_score": finished.max_score if finished else None,
        "message": finished.message if finished else "",
        "exercises": exercises(checks, assignment),
        "feedback": list(info.feedback),
    }


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


class ResultHandler(SubmissionHandler):
    """The result of one submission of the caller's (instructors: of anyone in their course)."""

    @web.authenticated
    def get(self, course: str, submission_id: str) -> None:
        row = self.owned(course, submission_id)  # 404 unless it is the caller's to read
        info = next((s for s in self.store.submissions(course, row.assignment, row.student) if s.id == row.id), None)
        if info is None:
            raise web.HTTPError(404, f"no submission {submission_id} of yours in {course}")
        raw = self.store.job_result(info.finished.id) if info.finished else None
        try:
            assignment = Assignment.load(f"{course}/{row.assignment}")  # for the exercises' titles
        except FileNotFoundError:
            assignment = None
        self.send_json(result_model(info, raw, assignment))


ROUTE = (r"/courses/([A-Za-z0-9][A-Za-z0-9._-]{0,127})/submissions/(\d+)/result", ResultHandler)
