"""The course's proof, run beside the rest of the suite: a pytest plugin.

``deepgrade validate --all`` is most of ``make test``'s CPU, while much of the rest waits on
hub spawns, browsers, package installs and Docker with a core idle. So as soon as collection
shows that a test needs the ``course_proof`` fixture, the validation starts in the background
at a lower CPU priority (``nice``), those tests move to the end of the session, and the
fixture hands them its JSON report. The proofs are the same as on the command line; the
notebooks' time limits are far above what the lower priority can cost them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SEEDS = 3      # CI's reference seeds (deepgrade validate's default is 5); see tests/test_courses.py
NICENESS = 5   # about a quarter of a busy core for the validation while other tests need it
TIMEOUT = 2400


class CourseProof:
    """One ``deepgrade validate --all --json`` subprocess, in its own session and home."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="deepgrade-course-proof-"))
        self.report = self.folder / "proofs.json"
        self.log = self.folder / "validate.log"
        env = {**os.environ, "DEEPGRADE_HOME": str(self.folder / "home"), "TF_CPP_MIN_LOG_LEVEL": "3"}
        argv = [sys.executable, "-m", "autograders.cli", "validate", "--all", "--seeds", str(SEEDS),
                "--json", str(self.report)]
        self.waited = 0.0  # seconds the proof's tests waited for it at the end
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(["nice", "-n", str(NICENESS), *argv], stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def result(self) -> dict:
        waited = time.monotonic()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.stop()
        self.waited = time.monotonic() - waited
        output = self.log.read_text(errors="replace")
        assert self.report.exists(), f"validate --all wrote no report (exit {self.process.returncode}):\n" \
                                     + output[-6000:]
        return {**json.loads(self.report.read_text()), "stdout": output}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


_KEY = pytest.StashKey[CourseProof]()


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    needing = [item for item in items if "course_proof" in getattr(item, "fixturenames", ())]
    if not needing or config.option.collectonly:
        return
    items[:] = [item for item in items if item not in needing] + needing
    config.stash[_KEY] = CourseProof()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    proof = config.stash.get(_KEY, None)
    if proof is not None and proof.report.exists():
        report = json.loads(proof.report.read_text())
        terminalreporter.write_line(
            f"course proof: validate --all took {report['seconds'] / 60:.1f} min beside the suite "
            f"({len(report['assignments'])} assignments, {len(report['seeds'])} seeds); "
            f"its tests then waited {proof.waited:.0f} s for it")


def pytest_unconfigure(config: pytest.Config) -> None:
    proof = config.stash.get(_KEY, None)
    if proof is not None:
        proof.remove()


@pytest.fixture(scope="session")
def course_proof(request: pytest.FixtureRequest) -> dict:
    """The report of ``validate --all``: per assignment, whether it holds, its verdicts and time."""
    proof = request.config.stash.get(_KEY, None)
    if proof is None:  # collected some other way: run it now
        proof = request.config.stash[_KEY] = CourseProof()
    return proof.result()
