"""Grading benchmark: where one grading's time goes, against raw nbclient and nbgrader, and
the throughput of 1 worker against 2 through the real queue, all measured in one run.

    python bench/grading.py                       # keras-intro/01, a class of 10
    python bench/grading.py --assignment dl-python/01-basics-with-numpy --class-size 4
    python bench/grading.py --smoke               # tiny version that `make test` runs

The machine's other load changes absolute times; ratios taken side by side in one run are
what to compare.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from autograders.assignment import Assignment
from autograders.sandbox import default_sandbox

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def private_home() -> Iterator[Path]:
    """A throwaway DEEPGRADE_HOME, so the benchmark never touches real course state."""
    old = os.environ.get("DEEPGRADE_HOME")
    with tempfile.TemporaryDirectory(prefix="deepgrade-bench-") as home:
        os.environ["DEEPGRADE_HOME"] = home
        try:
            yield Path(home)
        finally:
            if old is None:
                os.environ.pop("DEEPGRADE_HOME", None)
            else:
                os.environ["DEEPGRADE_HOME"] = old


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return time.perf_counter() - start, value


def sandbox_start(work: Path) -> float:
    """Starting the sandbox and a Python interpreter in it, doing nothing."""
    sandbox = default_sandbox()
    run = sandbox.run([sys.executable, "-c", "pass"], workdir=work, readonly=[], env={}, timeout=60)
    return run.duration


def raw_nbclient(notebook: Path, work: Path) -> float:
    """The notebook executed by nbclient in a fresh process: no sandbox, no checks."""
    copy = work / notebook.name
    shutil.copy2(notebook, copy)
    code = ("import nbformat, nbclient, sys; nb = nbformat.read(sys.argv[1], as_version=4); "
            "nbclient.NotebookClient(nb, timeout=600, allow_errors=True, kernel_name='python3', "
            "resources={'metadata': {'path': sys.argv[2]}}).execute()")
    seconds, proc = timed(subprocess.run, [sys.executable, "-c", code, str(copy), str(work)],
                          capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    if proc.returncode:
        raise RuntimeError(f"raw nbclient run failed: {proc.stderr[-500:]}")
    return seconds


def nbgrader_autograde(assignment: Assignment, notebook: Path, course: Path) -> float:
    """nbgrader's own ``autograde`` of the same notebook (it runs it in its own kernel)."""
    from autograders.gradebook import generate

    generate(assignment, course)
    submitted = course / "submitted" / "ada" / assignment.name
    submitted.mkdir(parents=True)
    shutil.copy2(notebook, submitted / f"{assignment.notebook_name}.ipynb")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    seconds, proc = timed(subprocess.run, [str(BIN / "nbgrader"), "autograde", assignment.name, "--force",
                                           f"--CourseDirectory.root={course}",
                                           f"--CourseDirectory.course_id={assignment.course}",
                                           "--ExecutePreprocessor.timeout=600"],
                          cwd=course, capture_output=True, text=True, env=env)
    if proc.returncode:
        raise RuntimeError(f"nbgrader autograde failed: {(proc.stdout + proc.stderr)[-800:]}")
    return seconds


def one_grading(assignment: Assignment, notebook: Path, work: Path) -> tuple[float, dict]:
    """A steady-state grading: the course's gradebook exists already, as it does after the first."""
    from autograders.gradebook import course_root, generate
    from autograders.runner import grade

    generate(assignment, course_root(assignment.course))

    seconds, result = timed(grade, notebook, assignment, workdir=work, student="ada", seed=1,
                            record_gradebook=True)
    if result["score"] != result["max_score"]:
        raise RuntimeError(f"the reference did not earn full marks: {result['message']}")
    return seconds, result


def class_throughput(assignment: Assignment, notebook: Path, size: int, workers: int) -> dict:
    """Grade ``size`` submissions through the real queue with ``workers`` in-process workers."""
    from hub.queue import DatabaseQueue
    from hub.store import CourseStore, pack

    with private_home(), tempfile.TemporaryDirectory() as folder:
        shutil.copy2(notebook, Path(folder) / f"{assignment.notebook_name}.ipynb")
        archive = pack(Path(folder))
        store = CourseStore()
        queue = DatabaseQueue(store=store, per_hour=0, poll=0.2)
        submitted = {}
        for index in range(size):
            sub = store.submit(assignment.course, assignment.name, f"student{index:02d}", archive)
            job = queue.submit(sub.id, "bench")
            submitted[job.id] = time.perf_counter()
        start = time.perf_counter()
        latency = []
        queue.start(workers)
        try:
            jobs = queue.wait(list(submitted), on_done=lambda job: latency.append(time.perf_counter() - submitted[job.id]))
        finally:
            queue.stop()
        total = time.perf_counter() - start
    if any(j.state != "graded" for j in jobs):
        raise RuntimeError(f"not every submission was graded: {[j.describe() for j in jobs]}")
    latency.sort()
    return {"workers": workers, "seconds": total, "per_hour": 3600 * size / total,
            "p50": latency[len(latency) // 2], "p95": latency[min(len(latency) - 1, int(0.95 * len(latency)))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignment", default="keras-intro/01-introducing-keras")
    parser.add_argument("--class-size", type=int, default=10)
    parser.add_argument("--smoke", action="store_true", help="numpy chapter, a class of 2: checks the code runs")
    args = parser.parse_args()
    if args.smoke:
        args.assignment, args.class_size = "dl-python/01-basics-with-numpy", 2
    assignment = Assignment.load(args.assignment)
    notebook = assignment.source_notebook  # the reference solution, as a student would submit it
    cores = os.cpu_count()
    print(f"deepgrade grading benchmark · {assignment.id} · {platform.machine()}, {cores} cores · "
          f"sandbox {default_sandbox().isolation}")

    with private_home() as home:
        work = home / "work"
        work.mkdir()
        start_s = sandbox_start(work)
        raw_s = raw_nbclient(notebook, work)
        ours_s, result = one_grading(assignment, notebook, home / "grading")
        nbgrader_s = nbgrader_autograde(assignment, notebook, home / "nbgrader-course")
    steps = result["timings"]
    execute_s = steps.get("execute", 0.0)
    print("\none grading of the reference (seconds)")
    rows = [("sandbox start", start_s), ("notebook execution (kernel start and cells)", execute_s - start_s),
            ("checks (trusted process)", steps.get("checks", 0.0)),
            ("gradebook write (nbgrader)", steps.get("gradebook", 0.0)),
            ("feedback page", steps.get("feedback", 0.0)),
            ("other steps", sum(v for k, v in steps.items() if k not in ("execute", "checks", "gradebook",
                                                                       "feedback"))),
            ("deepgrade total", ours_s)]
    for label, value in rows:
        print(f"  {label:<46} {value:7.2f}")
    print("\nside by side on the same notebook (seconds, ratio to raw nbclient)")
    for label, value in (("raw nbclient execution", raw_s), ("deepgrade grading", ours_s),
                         ("nbgrader autograde", nbgrader_s)):
        print(f"  {label:<46} {value:7.2f}   {value / raw_s:5.2f}x")

    print(f"\na class of {args.class_size} submissions through the queue")
    runs = [class_throughput(assignment, notebook, args.class_size, workers) for workers in (1, 2)]
    for run in runs:
        print(f"  {run['workers']} worker(s): {run['seconds']:7.1f} s, {run['per_hour']:6.0f} gradings/hour "
              f"({run['per_hour'] / cores:5.0f} per core), submit-to-feedback p50 {run['p50']:.1f} s, "
              f"p95 {run['p95']:.1f} s")
    print(f"  speed-up of 2 workers over 1: {runs[0]['seconds'] / runs[1]['seconds']:.2f}x")
    summary = {"assignment": assignment.id, "sandbox_start": start_s, "raw": raw_s, "deepgrade": ours_s,
               "nbgrader": nbgrader_s, "steps": steps, "throughput": runs}
    print("\n" + json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
