"""Fixed costs off the critical path, isolation unchanged: warm sandboxes and the check server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from autograders.assignment import Assignment
from autograders.checker import CheckServer
from autograders.kernels import WarmPool, WarmSpec
from autograders.runner import grade
from autograders.sandbox import default_sandbox

from .conftest import copy_assignment

NUMPY = "dl-python/01-basics-with-numpy"
LEAK = ("import builtins\nprint('left over:', getattr(builtins, 'LEFT_BEHIND', None))\n"
        "builtins.LEFT_BEHIND = 'by the previous submission'\n")


def test_warm_sandbox_grades_once_and_is_never_reused(tmp_path: Path) -> None:
    """Two submissions through one pool: both start warm, the second sees nothing of the first,
    and the time limit counts from the submission, not from when the sandbox started."""
    assignment = copy_assignment(Assignment.load(NUMPY), tmp_path / "course",
                                 limits={"time": 20, "cell_timeout": 10, "check_time": 120})
    nb = nbformat.read(assignment.source_notebook, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(LEAK))
    submission = tmp_path / "submission.ipynb"
    nbformat.write(nb, submission)
    sandbox = default_sandbox()
    results = []
    with WarmPool(sandbox, depth=1, repeat=True, scratch=tmp_path) as pool:
        pool.expect([WarmSpec.of(assignment, 1)])
        assert pool.warm[0].ready(120)
        time.sleep(22)  # longer than the whole-notebook limit: a warm wait must not count
        for index in range(2):
            results.append(grade(submission, assignment, workdir=tmp_path / f"g{index}", seed=1,
                                 sandbox=sandbox, pool=pool))
    for index, result in enumerate(results):
        assert result["execution"]["warm_start"] is True
        assert result["execution"]["timed_out"] is False, result["message"]
        assert result["score"] == result["max_score"] > 0, result["message"]
        executed = nbformat.read(tmp_path / f"g{index}" / "sandbox" / "executed.ipynb", as_version=4)
        printed = "".join(o.get("text", "") for o in executed.cells[0].outputs)
        assert printed.strip() == "left over: None", printed  # nothing of the earlier submission


def test_cold_and_warm_grade_alike(tmp_path: Path) -> None:
    """The same mistake loses the same checks whether its sandbox started warm or cold."""
    assignment = Assignment.load(NUMPY)
    nb = nbformat.read(assignment.source_notebook, as_version=4)
    cell = next(c for c in nb.cells if "def relu(input)" in c.source)
    cell.source = cell.source.replace("max(input, 0)", "min(input, 0)")
    submission = tmp_path / "mistake.ipynb"
    nbformat.write(nb, submission)
    cold = grade(submission, assignment, workdir=tmp_path / "cold", seed=1)
    with WarmPool(default_sandbox(), scratch=tmp_path) as pool:
        warm = grade(submission, assignment, workdir=tmp_path / "warm", seed=1, pool=pool)
        second = grade(submission, assignment, workdir=tmp_path / "second", seed=1, pool=pool)
    assert cold["execution"]["warm_start"] is False and second["execution"]["warm_start"] is True
    failed = [{c["id"] for c in r["checks"] if not c["passed"]} for r in (cold, warm, second)]
    assert failed[0] and failed[0] == failed[1] == failed[2]
    assert cold["score"] == warm["score"] == second["score"] < cold["max_score"]


def test_a_failed_preload_falls_back_to_a_cold_start(tmp_path: Path) -> None:
    """A preload import that fails must not leave half an import behind for the student's cells:
    the warm sandbox is thrown away and the grading starts cold, with the same result."""
    assignment = copy_assignment(Assignment.load(NUMPY), tmp_path / "course")
    release = nbformat.read(assignment.release_notebook, as_version=4)
    release.cells.insert(0, nbformat.v4.new_code_cell("import no_such_module_anywhere"))
    nbformat.write(release, assignment.release_notebook)
    with WarmPool(default_sandbox(), scratch=tmp_path) as pool:
        pool.expect([WarmSpec.of(assignment, 1)])
        assert not pool.warm[0].ready(120) and pool.warm[0].started.proc.returncode == 4
        result = grade(assignment.source_notebook, assignment, workdir=tmp_path / "g", seed=1, pool=pool)
    assert result["execution"]["warm_start"] is False
    assert result["score"] == result["max_score"] > 0, result["message"]


def _test_file(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test_probe.py").write_text(body)
    return folder / "test_probe.py"


def test_check_server_kills_a_run_past_its_time(tmp_path: Path) -> None:
    probe = _test_file(tmp_path, "import time\n\ndef test_slow():\n    time.sleep(60)\n")
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        CheckServer.shared().run([str(probe), "-q", "-p", "no:cacheprovider"], cwd=tmp_path, env={}, timeout=3)
    assert time.monotonic() - start < 10


def test_check_server_reports_a_crashed_run_with_its_output(tmp_path: Path) -> None:
    probe = _test_file(tmp_path, "import os, signal\n\ndef test_crash():\n    print('about to crash', flush=True)\n"
                                 "    os.kill(os.getpid(), signal.SIGKILL)\n")
    run = CheckServer.shared().run([str(probe), "-q", "-s", "-p", "no:cacheprovider"], cwd=tmp_path, env={},
                                   timeout=60)
    assert run.returncode == -1 and "about to crash" in run.output
    ok = _test_file(tmp_path / "ok", "def test_fine():\n    assert 1 + 1 == 2\n")
    assert CheckServer.shared().run([str(ok), "-q", "-p", "no:cacheprovider"], cwd=ok.parent, env={},
                                    timeout=60).returncode == 0


def test_check_server_does_not_outlive_a_killed_grader(tmp_path: Path) -> None:
    code = ("from autograders.checker import CheckServer; import time; "
            "print(CheckServer.shared().process.pid, flush=True); time.sleep(600)")
    grader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    server = int(grader.stdout.readline())
    os.kill(server, 0)  # running
    grader.kill()
    grader.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            os.kill(server, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{server}/stat") as stat:
            if stat.read().split()[2] == "Z":  # exited; only waiting to be reaped
                return
        time.sleep(0.2)
    pytest.fail("the check server outlived the grader that started it")
