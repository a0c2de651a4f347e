"""Starting the sandboxed notebook runner, cold or warm ahead of its submission.

A grading's fixed costs (the sandbox, Python, nbclient, the kernel and ``import tensorflow``:
10 s or more cold) do not depend on the submission, so a :class:`WarmPool` pays them before
the submission arrives. Isolation is unchanged: every warm sandbox is a fresh sandbox with
its own work directory, cgroup and kernel, started for exactly one submission and then
discarded; nothing is ever reused across submissions. What it preloads are the modules the
assignment's *released* notebook imports (the instructor's choice, not the student's).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import nbformat

from autograders.assignment import Assignment, Limits, repo_root
from autograders.execute import READY, notebook_imports
from autograders.sandbox import Sandbox, Started, remove_tree, thread_env


def warm_enabled() -> bool:
    """Warm pools are on unless ``DEEPGRADE_WARM_SANDBOXES=0`` (for measuring cold starts)."""
    return os.environ.get("DEEPGRADE_WARM_SANDBOXES", "1") != "0"


def runner_command(assignment: Assignment, work: Path, argv_tail: list[str]) -> dict:
    """How the notebook runner is started in a sandbox: argv, read-only paths, environment, limits.
    The public dataset splits are the only data a sandbox can see."""
    from datasets import materialize, public_root

    public = public_root()
    public.mkdir(parents=True, exist_ok=True)
    if assignment.datasets:
        materialize(public, assignment.datasets)
    limits: Limits = assignment.limits
    return {
        "argv": [sys.executable, "-m", "autograders.execute", str(work), *argv_tail],
        "workdir": work,
        "readonly": [repo_root() / "autograders", repo_root() / "datasets", public],
        "env": {"DEEPGRADE_PUBLIC_DATA": str(public), "TF_CPP_MIN_LOG_LEVEL": "3",
                "PYTHONPATH": str(repo_root()), **thread_env(limits)},
        "limits": limits,
    }


@cache
def preload(release_notebook: Path) -> tuple[str, ...]:
    return tuple(notebook_imports(nbformat.read(release_notebook, as_version=4)))


@dataclass(frozen=True)
class WarmSpec:
    """What a warm sandbox is fixed to when it starts: the assignment (limits, data, preload) and
    the seed (the kernel's hash seed)."""

    path: Path
    seed: int
    assignment: Assignment = field(compare=False, hash=False, repr=False)

    @classmethod
    def of(cls, assignment: Assignment, seed: int) -> WarmSpec:
        return cls(assignment.path, seed, assignment)


@dataclass
class WarmSandbox:
    spec: WarmSpec
    work: Path
    started: Started
    born: float = field(default_factory=time.monotonic)

    def ready(self, timeout: float) -> bool:
        """Wait until the kernel has imported its preload; False if it died or took too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started.proc.poll() is not None:
                return False
            if (self.work / READY).exists():
                return True
            time.sleep(0.05)
        return False

    def discard(self) -> None:
        self.started.go()  # EOF: the runner shuts its kernel down
        self.started.discard()
        remove_tree(self.work)


class WarmPool:
    """Sandboxes started ahead of the submissions they will run, each used at most once.

    ``depth`` sandboxes are kept starting or ready. Which ones: the specs announced with
    :meth:`expect` (a validation knows all its gradings in advance), or, with ``repeat``, one
    more like the last one taken (the next submission is usually for the same assignment).
    One left unused for ``max_idle`` seconds is discarded.
    """

    def __init__(self, sandbox: Sandbox, *, depth: int = 1, repeat: bool = True, max_idle: float = 900,
                 startup_timeout: float = 300, scratch: Path | None = None):
        self.sandbox, self.depth, self.repeat = sandbox, max(1, depth), repeat
        self.max_idle, self.startup_timeout = max_idle, startup_timeout
        self.scratch = Path(scratch or tempfile.gettempdir())
        self.plan: collections.deque[WarmSpec] = collections.deque()
        self.warm: list[WarmSandbox] = []
        self.lock = threading.Lock()
        self.closed = False
        # Sandboxes are started from this one long-lived thread: bubblewrap dies with the *thread*
        # that started it (--die-with-parent), and a grading's own thread ends with the grading.
        self.starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-starter")

    def expect(self, specs: Iterable[WarmSpec]) -> None:
        with self.lock:
            self.plan.extend(specs)
            self._refill()

    def take(self, spec: WarmSpec) -> WarmSandbox | None:
        """A warm sandbox for ``spec``, now ready, or None (the caller starts one cold)."""
        if not self.sandbox.can_start:
            return None
        with self.lock:
            with contextlib.suppress(ValueError):
                self.plan.remove(spec)
            found = next((w for w in self.warm if w.spec == spec), None)
            if found:
                self.warm.remove(found)
            if self.repeat and not self.plan:
                self.plan.append(spec)
            self._refill()
        if found and found.ready(self.startup_timeout):
            return found
        if found:
            found.discard()
        return None

    def close(self) -> None:
        with self.lock:
            self.closed = True
            warm, self.warm = self.warm, []
            self.plan.clear()
        for w in warm:
            w.discard()
        self.starter.shutdown(wait=False)

    def __enter__(self) -> WarmPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _refill(self) -> None:
        now = time.monotonic()
        for old in [w for w in self.warm if now - w.born > self.max_idle]:
            self.warm.remove(old)
            old.discard()
        while not self.closed and self.plan and len(self.warm) < self.depth:
            spec = self.plan.popleft()
            try:
                self.warm.append(self.starter.submit(self._start, spec).result())
            except Exception as exc:  # a warm start is an optimisation: the grading starts cold instead
                self.sandbox.log.warning("could not start a warm sandbox: %s", exc)

    def _start(self, spec: WarmSpec) -> WarmSandbox:
        work = Path(tempfile.mkdtemp(prefix="warm-", dir=self.scratch))
        command = runner_command(spec.assignment, work, [
            "--warm", "--seed", str(spec.seed), "--preload", ",".join(preload(spec.assignment.release_notebook))])
        started = self.sandbox.start(**command, stdin=True)
        return WarmSandbox(spec, work, started)


def release(warm: WarmSandbox, seed: int, cell_timeout: int, output_limit: int) -> None:
    """Hand the submission (already in ``warm.work``) to a warm runner: its clock starts now."""
    warm.started.go(json.dumps({"seed": seed, "cell_timeout": cell_timeout,
                                "output_limit": output_limit}).encode() + b"\n")
