"""``deepgrade replay``: a stored grading graded again reproduces check by check, and a check changed
since then is named, with the assignment's digest that moved."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from autograders.assignment import Assignment
from tests.conftest import copy_assignment

ASSIGNMENT = "dl-python/01-basics-with-numpy"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograders.cli", *args], capture_output=True, text=True,
                          timeout=600)


def test_replay_reproduces_and_names_a_changed_check(tmp_path: Path) -> None:
    copy = copy_assignment(Assignment.load(ASSIGNMENT), tmp_path / "course")
    out = tmp_path / "graded"
    graded = _cli("grade", str(copy.source_notebook), "--assignment", str(copy.path), "--no-gradebook",
                  "--output", str(out), "--seed", "4")
    result = json.loads((out / "result.json").read_text())
    assert result["score"] == result["max_score"] > 0, graded.stdout[-2000:]
    record = result["reproduce"]
    assert record["seed"] == 4 and len(record["notebook_sha256"]) == 64 and record["assignment_path"] == str(copy.path)
    assert (out / "submitted.ipynb").is_file()

    same = _cli("replay", str(out / "result.json"), "--json", str(tmp_path / "same.json"))
    report = json.loads((tmp_path / "same.json").read_text())
    assert same.returncode == 0 and report["exact"] and not report["inputs_changed"], same.stdout[-2000:]
    assert len(report["reproduced"]) == len(result["checks"])

    # the instructor changes one check's expectation: replay names the check and the moved digest
    tests = next((copy.path / "tests").glob("test_*.py"))
    source = tests.read_text()
    changed = source.replace('.equals("b", hide_expected=True)', '.equals("a", hide_expected=True)', 1)
    assert changed != source, "the test file no longer holds answer_1's expected letter"
    tests.write_text(changed)
    moved = _cli("replay", str(out / "result.json"), "--json", str(tmp_path / "moved.json"))
    report = json.loads((tmp_path / "moved.json").read_text())
    assert moved.returncode == 1 and not report["exact"], moved.stdout[-2000:]
    assert "assignment_sha256" in report["inputs_changed"]
    assert [d["check"] for d in report["differed"]] == ["test_answer_1"], report
