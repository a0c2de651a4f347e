"""An assignment on disk: ``assignments/<course>/<NN-slug>/`` with its config.

Layout of one assignment folder::

    assignment.yaml        # title, limits, score policy, thresholds (calibrated), planted mistakes
    <name>.ipynb           # nbgrader source notebook: solutions + autograder (export) cells
    release/<name>.ipynb   # student version, made by `deepgrade generate`
    tests/                 # hidden pytest autograders (+ conftest.py with data fixtures)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autograders.checks.base import Threshold

CONFIG = "assignment.yaml"
SCORE_POLICIES = ("latest", "best")  # which of a student's submissions counts (``score:`` in the config)


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def assignments_root() -> Path:
    return Path(os.environ.get("DEEPGRADE_ASSIGNMENTS", repo_root() / "assignments"))


@dataclass
class Limits:
    """Per-assignment resource limits for one grading run."""

    time: int = 300          # seconds for the whole notebook
    cell_timeout: int = 120  # seconds per cell before it is interrupted
    check_time: int = 300    # seconds for the trusted checks
    check_memory: int = 4096 # MiB for the trusted checks (they load the student's model and may retrain it)
    memory: int = 4096       # MiB of memory for everything the notebook starts
    pids: int = 256          # processes and threads at once (TensorFlow alone starts dozens of threads)
    output: int = 2_000_000  # characters of notebook output kept (beyond it, output is cut and noted)
    cpus: float = 1.0        # CPU cores (a cgroup CPU quota; Docker: --cpus) and threads per numeric pool
    gpu: bool = False        # request a GPU (Docker sandbox: --gpus all)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Limits:
        defaults = cls()
        unknown = set(data or {}) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(sorted(unknown))}; "
                             f"known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: type(getattr(defaults, k))(v) for k, v in (data or {}).items()})


@dataclass
class Mistake:
    """A deliberately wrong solution: text edits on the reference, the checks it must lose, and
    the audits it must raise for the instructor (``flags``: what no check can fairly take points for)."""

    id: str
    description: str
    edits: list[dict[str, str]]
    loses: list[str]
    flags: list[str] = field(default_factory=list)


@dataclass
class Assignment:
    path: Path
    config: dict[str, Any] = field(repr=False)

    @classmethod
    def load(cls, ref: str | Path) -> Assignment:
        """Load by folder path or by id (``keras-intro/01-introducing-keras``)."""
        path = Path(ref)
        if not (path / CONFIG).exists():
            path = assignments_root() / str(ref)
        if not (path / CONFIG).exists():
            known = ", ".join(a.id for a in find_all()) or "none"
            raise FileNotFoundError(f"no assignment '{ref}' (known: {known})")
        return cls(path.resolve(), yaml.safe_load((path / CONFIG).read_text()) or {})

    @property
    def course(self) -> str:
        return self.path.parent.name

    @property
    def name(self) -> str:
        """The nbgrader assignment name (unique within its course)."""
        return self.path.name

    @property
    def id(self) -> str:
        return f"{self.course}/{self.name}"

    @property
    def title(self) -> str:
        return self.config.get("title", self.name)

    @property
    def notebook_name(self) -> str:
        return self.config["notebook"]

    @property
    def source_notebook(self) -> Path:
        return self.path / f"{self.notebook_name}.ipynb"

    @property
    def release_notebook(self) -> Path:
        return self.path / "release" / f"{self.notebook_name}.ipynb"

    @property
    def tests_dir(self) -> Path:
        return self.path / "tests"

    @property
    def limits(self) -> Limits:
        return Limits.from_dict(self.config.get("limits"))

    @property
    def datasets(self) -> list[str]:
        return list(self.config.get("datasets", []))

    @property
    def mistakes(self) -> list[Mistake]:
        return [Mistake(m["id"], m.get("description", ""), m.get("edits", []), list(m.get("loses", [])),
                        list(m.get("flags", []))) for m in self.config.get("mistakes", [])]

    def thresholds(self, *, calibrating: bool = False) -> dict[str, Threshold]:
        """Named thresholds; while calibrating they let everything through and only record."""
        out = {}
        for key, spec in self.config.get("thresholds", {}).items():
            direction = spec.get("direction", "below")
            if calibrating:
                value = float("inf") if direction == "below" else float("-inf")
            elif "value" not in spec:
                raise KeyError(f"threshold '{key}' of {self.id} is not calibrated: run deepgrade calibrate {self.id}")
            else:
                value = float(spec["value"])
            out[key] = Threshold(value, key, direction)
        return out

    @property
    def score_policy(self) -> str:
        """``score: latest`` (the default: the newest graded submission counts) or ``score: best``
        (the highest score counts; a later, lower one does not replace it)."""
        policy = str(self.config.get("score", "latest"))
        if policy not in SCORE_POLICIES:
            raise ValueError(f"score: {policy!r} in {self.id}'s {CONFIG} is not one of {', '.join(SCORE_POLICIES)}")
        return policy

    @property
    def reference_curves(self) -> dict[str, Any]:
        return self.config.get("calibration", {}).get("curves", {})

    def save(self) -> None:
        text = yaml.safe_dump(self.config, sort_keys=False, width=100, allow_unicode=True)
        (self.path / CONFIG).write_text(text)


def find_all(root: Path | None = None, drafts: bool = False) -> list[Assignment]:
    """Every assignment, except drafts (``draft: true`` in their config): work in progress that
    is not released by the hub nor proven by ``validate --all`` until the flag is removed."""
    root = root or assignments_root()
    found = [Assignment.load(p.parent) for p in sorted(root.glob(f"*/*/{CONFIG}"))]
    return found if drafts else [a for a in found if not a.config.get("draft")]
