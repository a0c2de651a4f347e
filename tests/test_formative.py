"""Formative checks while working: the release carries the public checks an author marked and
nothing hidden, and a public check may use only the student's own objects. ``check()`` and
``hint()`` run in a student's kernel on a real hub in tests/test_labextension.py."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograders.assignment import Assignment
from autograders.formative import (
    CHECKS_FILE,
    HINTS_FILE,
    RELEASE_FOLDER,
    PublicCheckError,
    collect_public_checks,
    write_public_checks,
)

REPO = Path(__file__).resolve().parents[1]
HIDDEN_ROWS = 20  # hidden rows searched for, per dataset


def hidden_test_needles(assignment: Assignment) -> list[str]:
    """Text that only hidden test source holds: each non-public check's and fixture's definition."""
    needles = []
    for path in sorted(assignment.tests_dir.glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and not _is_public(node):
                needles.append(f"def {node.name}(")
    return needles


def _is_public(function: ast.FunctionDef) -> bool:
    return any(isinstance(d, ast.Call) and any(k.arg == "public" and isinstance(k.value, ast.Constant)
                                               and k.value.value is True for k in d.keywords)
               for d in function.decorator_list)


def hidden_data_needles(assignment: Assignment, env: dict[str, str] | None = None, cwd: Path = REPO) -> list[str]:
    """Rows of the assignment's hidden splits, as the CSV writer prints them, that no public row
    matches. Computed on the trusted side (``env``: the grading side's settings, with its secret)."""
    code = f"""
import json, datasets
from datasets.registry import resolve
lines = []
for name in {assignment.datasets!r}:
    entry = resolve(name)
    if entry.split is None or entry.kind == "array":
        continue
    public = set(datasets.public_split(entry).to_csv(index=False, header=False).splitlines())
    hidden = [row for row in datasets.hidden_split(entry).to_csv(index=False, header=False).splitlines()
              if row not in public and len(row) > 12]
    lines += hidden[:{HIDDEN_ROWS}]
print(json.dumps(lines))
"""
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, **(env or {})}, cwd=cwd,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


ASSIGNMENT = "keras-advanced/01-functional-api"
PUBLIC = {"test_built_with_functional_api", "test_one_number_in_one_number_out", "test_parameter_count",
          "test_compiled_with_adam_and_mae", "test_parameter_answer"}


def _released_text(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()}


def test_the_release_carries_the_public_checks_and_nothing_hidden(tmp_path: Path) -> None:
    assignment = Assignment.load(ASSIGNMENT)
    checks = write_public_checks(assignment.tests_dir, tmp_path, assignment.id)
    assert {c.check for c in checks} == PUBLIC
    committed = assignment.release_notebook.parent
    for name in (CHECKS_FILE, HINTS_FILE):
        shipped = (tmp_path / RELEASE_FOLDER / name).read_text()
        assert (committed / RELEASE_FOLDER / name).read_text() == shipped, "run `deepgrade generate` again"
    declared = json.loads((tmp_path / RELEASE_FOLDER / HINTS_FILE).read_text())
    assert declared["assignment"] == ASSIGNMENT  # what check() and hint() are reported under
    hints = declared["exercises"]
    assert [len(c["hints"]) for c in hints["functional-model"]] == [3, 3, 2]
    needles = hidden_test_needles(assignment)
    assert "def test_hidden_tourney_mae(" in needles and "def hidden_data(" in needles
    for name, text in _released_text(committed).items():
        assert not [n for n in needles if n in text], f"hidden test source in the release's {name}"
        assert "hidden_split" not in text and "thresholds" not in text, name


def test_a_public_check_may_use_only_the_students_own_objects(tmp_path: Path) -> None:
    tests = tmp_path / "tests"
    tests.mkdir()
    leaky = ("from autograders import grades\n\n\n@grades('cell', points=1, public=True)\n"
             "def test_leaks(model, hidden_data):\n    pass\n")
    (tests / "test_leaky.py").write_text(leaky)
    with pytest.raises(PublicCheckError, match="hidden_data"):
        collect_public_checks(tests)
    helper = ("from autograders import grades\nSECRET = 3\n\n\n@grades('cell', points=1, public=True)\n"
              "def test_helper(model):\n    assert SECRET\n")
    (tests / "test_leaky.py").write_text(helper)
    with pytest.raises(PublicCheckError, match="SECRET"):
        collect_public_checks(tests)
    # and the grader's plugin says so too, which fails the course proof (`deepgrade validate`)
    (tests / "test_leaky.py").write_text(leaky)
    results = tmp_path / "results.json"
    subprocess.run([sys.executable, "-m", "pytest", str(tests), "-q", "-p", "autograders.plugin", "--noconftest",
                    "-p", "no:cacheprovider", "--rootdir", str(tmp_path), "-o", "addopts=",
                    "--deepgrade-artifacts", str(tmp_path), "--deepgrade-results", str(results)],
                   cwd=tmp_path, capture_output=True, timeout=120)
    problems = json.loads(results.read_text())["problems"]
    assert any("test_leaks is public but uses hidden_data" in p for p in problems), problems
