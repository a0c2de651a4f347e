"""The proof for every assignment of every course: what ``deepgrade validate --all`` runs.

Each assignment is its own test, so a failure names the assignment: the reference earns
full marks on 5 seeds, the blank release earns 0, and every planted mistake loses
exactly the checks it declares.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from autograders.assignment import Assignment, find_all, repo_root

ASSIGNMENTS = find_all()


@pytest.mark.parametrize("assignment", ASSIGNMENTS, ids=[a.id for a in ASSIGNMENTS])
def test_validate(assignment: Assignment) -> None:
    proc = subprocess.run([sys.executable, "-m", "autograders.cli", "validate", assignment.id],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    assert "all proofs hold" in proc.stdout
    assert proc.stdout.count("full marks") == 5


def test_every_assignment_is_in_the_readme() -> None:
    readme = (repo_root() / "README.md").read_text()
    missing = [a.id for a in ASSIGNMENTS if f"`{a.name}`" not in readme]
    assert not missing, f"add these to the README's course table: {missing}"
