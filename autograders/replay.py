"""Record what a grading depended on, and grade it again (``deepgrade replay``).

Every result carries a ``reproduce`` record: the seed, the sha256 of the submitted notebook, of
the assignment (its config, tests and notebooks) and of the grading library (``autograders/`` and
``datasets/``), the library versions, the platform and the determinism settings. The runner keeps
the submitted notebook beside ``result.json`` as ``submitted.ipynb``. ``replay`` grades that
notebook again with the same seed and says, check by check, whether the verdict, the points and
the measured value came out the same, and which of the recorded inputs differ now, so a changed
check or a changed library is named rather than guessed at.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograders.assignment import Assignment, repo_root

SUBMITTED = "submitted.ipynb"
VERSIONED = ("tensorflow-cpu", "tensorflow", "keras", "numpy", "pandas", "scikit-learn", "nbclient", "nbformat")


def tree_sha256(root: Path, patterns: tuple[str, ...] = ("**/*.py", "**/*.yaml", "**/*.ipynb")) -> str:
    """One digest over the named files of a folder (paths and bytes), in a stable order."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.glob(pattern)
                    if p.is_file() and "__pycache__" not in p.parts and ".ipynb_checkpoints" not in p.parts})
    for path in files:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def record(assignment: Assignment, notebook_sha256: str, seed: int) -> dict[str, Any]:
    """What this grading depends on (the ``reproduce`` field of a result)."""
    root = repo_root()
    return {
        "seed": seed,
        "notebook_sha256": notebook_sha256,
        "assignment": assignment.id,
        "assignment_path": str(assignment.path),
        "assignment_sha256": tree_sha256(assignment.path),
        "library_sha256": tree_sha256(root / "autograders", ("**/*.py",)) + ":" + tree_sha256(
            root / "datasets", ("**/*.py", "**/*.yaml")),
        "versions": {"python": platform.python_version(), **_versions()},
        "platform": f"{platform.system()} {platform.machine()}",
        "determinism": {"keras.utils.set_random_seed": seed, "tf_op_determinism": True},
    }


@dataclass
class ReplayReport:
    reproduced: list[str] = field(default_factory=list)
    differed: list[dict[str, Any]] = field(default_factory=list)
    inputs_changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def exact(self) -> bool:
        return not self.differed

    def to_dict(self) -> dict[str, Any]:
        return {"exact": self.exact, "reproduced": self.reproduced, "differed": self.differed,
                "inputs_changed": {k: {"recorded": a, "now": b} for k, (a, b) in self.inputs_changed.items()}}


def _verdicts(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["id"]: {"passed": c.get("passed"), "score": c.get("score"), "measured": c.get("measured")}
            for c in result.get("checks", [])}


def replay(result_path: Path, notebook: Path | None = None, workdir: Path | None = None) -> ReplayReport:
    """Grade the recorded submission again and compare it with the recorded result."""
    from autograders.runner import grade

    recorded = json.loads(Path(result_path).read_text())
    reproduce = recorded.get("reproduce")
    if not isinstance(reproduce, dict):
        raise ValueError(f"{result_path} has no 'reproduce' record: it was graded before replay existed")
    notebook = Path(notebook) if notebook else Path(result_path).with_name(SUBMITTED)
    if hashlib.sha256(notebook.read_bytes()).hexdigest() != reproduce["notebook_sha256"]:
        raise ValueError(f"{notebook} is not the notebook that was graded (its sha256 differs from the record)")
    path = Path(reproduce["assignment_path"])
    assignment = Assignment.load(path if path.is_dir() else reproduce["assignment"])
    with tempfile.TemporaryDirectory(prefix="deepgrade-replay-") as scratch:
        again = grade(notebook, assignment, workdir=Path(workdir or scratch), seed=int(reproduce["seed"]),
                      student=recorded.get("student", "student"))
    report = ReplayReport(result=again)
    now = again.get("reproduce", {})
    for key in ("assignment_sha256", "library_sha256", "versions", "platform"):
        if reproduce.get(key) != now.get(key):
            report.inputs_changed[key] = (reproduce.get(key), now.get(key))
    before, after = _verdicts(recorded), _verdicts(again)
    if recorded.get("status") != again.get("status"):
        report.differed.append({"check": "(status)", "recorded": recorded.get("status"), "now": again.get("status")})
    for check in sorted(set(before) | set(after)):
        if before.get(check) == after.get(check):
            report.reproduced.append(check)
        else:
            report.differed.append({"check": check, "recorded": before.get(check), "now": after.get(check)})
    return report
