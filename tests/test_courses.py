"""The proof for every assignment of every course: what ``deepgrade validate --all`` runs.

One ``validate --all`` (started beside the rest of the suite by ``tests/course_proof.py``)
grades every assignment's proofs as a single queue; each assignment is still its own test, so
a failure names it: the reference earns full marks on every seed, the blank release earns 0,
and every planted mistake loses exactly the checks it declares.

CI grades the reference on 3 seeds (``deepgrade validate`` defaults to 5) to keep ``make test``
under 35 minutes; the calibration record, measured on 20 seeds, must show all of them inside every
threshold with a false-fail bound of at most 1 %, so the thresholds' margin over seed-to-seed
noise is still proven.
"""

from __future__ import annotations

import json

import pytest

from autograders.assignment import Assignment, find_all, repo_root
from autograders.calibrate import MAX_FALSE_FAIL, false_fail_bound
from tests.course_proof import SEEDS

ASSIGNMENTS = find_all()


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.id for a in ASSIGNMENTS])
def test_validate(assignment: Assignment, course_proof: dict) -> None:
    proof = course_proof["assignments"][assignment.id]
    failed = [v for v in proof["verdicts"] if not v["ok"]]
    assert not failed, f"{assignment.id}: " + json.dumps(failed, indent=1)
    assert [v["detail"] for v in proof["verdicts"] if v["label"].startswith("reference")] == ["full marks"] * SEEDS
    assert any(v["label"] == "blank" for v in proof["verdicts"])
    assert sum(v["label"].startswith("mistake") for v in proof["verdicts"]) == len(assignment.mistakes) >= 3


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.id for a in ASSIGNMENTS])
def test_thresholds_hold_on_every_calibration_seed(assignment: Assignment) -> None:
    """Every threshold was calibrated on 20 seeds or more, holds every correct run it saw, and fails a
    correct solution at most 1 % of the time: the 95 % bound is recomputed here from the record."""
    for key, spec in assignment.config.get("thresholds", {}).items():
        values = spec.get("reference", {}).get("values", [])
        assert len(values) >= 20 and "false_fail" in spec["reference"], \
            f"{key}: calibrate on 20 seeds (deepgrade calibrate {assignment.id})"
        inside = [v <= spec["value"] if spec["direction"] == "below" else v >= spec["value"] for v in values]
        assert all(inside), f"{key}: threshold {spec['value']} excludes reference values {values}"
        bound = false_fail_bound(values, spec["value"], spec["direction"])
        assert bound <= MAX_FALSE_FAIL * 1.01, f"{key}: a correct solution fails it up to {bound:.1%} of the time"
        assert spec["reference"]["false_fail"]["bound"] == pytest.approx(bound, rel=0.05, abs=1e-6)


EXACT_ANSWERS_ONLY = {"dl-python/01-basics-with-numpy"}  # every answer is a fixed computation's exact value


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.id for a in ASSIGNMENTS])
def test_every_chapter_plants_a_forgery(assignment: Assignment) -> None:
    """A chapter whose points rest on results its notebook reports proves (in test_validate) that
    typing those results in loses exactly their points (docs/integrity.md)."""
    forged = [m.id for m in assignment.mistakes if m.id.startswith("forged-")]
    assert bool(forged) != (assignment.id in EXACT_ANSWERS_ONLY), forged


def test_validate_all_reports_the_total_and_the_slowest(course_proof: dict) -> None:
    assert f"validated {len(ASSIGNMENTS)} assignment(s) in" in course_proof["stdout"]
    assert "slowest: " in course_proof["stdout"] and "all proofs hold" in course_proof["stdout"]
    assert set(course_proof["assignments"]) == {a.id for a in ASSIGNMENTS}


def test_every_assignment_is_in_the_course_list() -> None:
    courses = (repo_root() / "docs" / "courses.md").read_text()
    missing = [a.id for a in ASSIGNMENTS if f"`{a.name}`" not in courses]
    assert not missing, f"add these to the course table of docs/courses.md: {missing}"
