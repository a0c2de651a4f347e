"""Grading benchmark: where one grading's time goes, cold and warm, against raw nbclient and
nbgrader, and the throughput of 1 worker against 2 through the real queue, all in one run
(and, on a machine with 2 cores or more, 1 worker held to 1 core: scaling with workers = cores).

    python bench/grading.py                       # keras-intro/01; a class of 20 of it
    python bench/grading.py --assignments all     # every assignment's reference (about 40 min)
    python bench/grading.py --assignments dl-python/01-basics-with-numpy --class-size 4
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

from autograders.assignment import Assignment, find_all
from autograders.sandbox import default_sandbox

BIN = Path(sys.executable).parent


@contextlib.contextmanager
def setting(name: str, value: str) -> Iterator[None]:
    """An environment setting for the duration of one measurement."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


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


def one_grading(assignment: Assignment, notebook: Path, work: Path, warm: bool) -> tuple[float, dict]:
    """A steady-state grading: the course's gradebook exists already, as it does after the first.

    Cold: a fresh sandbox, kernel and checker interpreter on the critical path (the "before").
    Warm: what a worker does between submissions (its next sandbox has started and imported the
    notebook's modules; its check server is up) is done before the clock starts (the "after")."""
    from autograders.checker import CheckServer
    from autograders.gradebook import course_root, generate
    from autograders.kernels import WarmPool, WarmSpec
    from autograders.runner import grade

    generate(assignment, course_root(assignment.course))
    sandbox = default_sandbox()
    with setting("DEEPGRADE_CHECK_SERVER", "1" if warm else "0"), \
            WarmPool(sandbox, repeat=False, scratch=work.parent) as pool:
        if warm:
            spec = WarmSpec.of(assignment, 1)
            pool.expect([spec])
            CheckServer.shared()
            pool.warm[0].ready(300)
        seconds, result = timed(grade, notebook, assignment, workdir=work, student="ada", seed=1,
                                record_gradebook=True, sandbox=sandbox, pool=pool if warm else None)
    if result["score"] != result["max_score"]:
        raise RuntimeError(f"the reference did not earn full marks: {result['message']}")
    if result["execution"].get("warm_start") != warm:
        raise RuntimeError("the warm sandbox was not used")
    return seconds, result


def class_throughput(assignment: Assignment, size: int, workers: int, cores: int | None = None) -> dict:
    """A class run in a fresh process (its own check server and warm pool), on the first
    ``cores`` CPUs only when given (everything it starts inherits the affinity)."""
    argv = [sys.executable, __file__, "--class-run", str(workers), "--class-assignment", assignment.id,
            "--class-size", str(size)]
    allowed = sorted(os.sched_getaffinity(0))[:cores] if cores else None
    proc = subprocess.run(argv, capture_output=True, text=True, check=False,
                          preexec_fn=(lambda: os.sched_setaffinity(0, allowed)) if allowed else None)
    if proc.returncode != 0:
        raise RuntimeError(f"the class run failed: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "cores": len(allowed or os.sched_getaffinity(0))}


def class_run(assignment: Assignment, notebook: Path, size: int, workers: int) -> dict:
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


def cells_seconds(workdir: Path) -> float:
    """Time the kernel spent in the notebook's cells, from nbclient's timestamps."""
    from datetime import datetime

    import nbformat

    executed = workdir / "sandbox" / "executed.ipynb"
    total = 0.0
    for cell in nbformat.read(executed, as_version=4).cells:
        times = cell.get("metadata", {}).get("execution", {})
        if "iopub.status.busy" in times and "shell.execute_reply" in times:
            start, end = (datetime.fromisoformat(times[k].replace("Z", "+00:00"))
                          for k in ("iopub.status.busy", "shell.execute_reply"))
            total += (end - start).total_seconds()
    return total


def measure(assignment: Assignment, home: Path, repeats: int = 2) -> dict:
    """Raw nbclient, deepgrade cold and warm, and nbgrader on one assignment's reference."""
    notebook = assignment.source_notebook  # the reference solution, as a student would submit it
    work = home / assignment.course / assignment.name
    work.mkdir(parents=True)
    row: dict = {"assignment": assignment.id, "raw": raw_nbclient(notebook, work)}
    for mode in ("cold", "warm"):
        seconds, result = one_grading(assignment, notebook, work / mode, warm=mode == "warm")
        row[mode] = seconds
        row[f"{mode}_steps"] = dict(result["timings"], cells=cells_seconds(work / mode))
    # What the trusted side's limits cost (the checker's and the feedback page's cgroup, CPU time,
    # network and tmpfs): warm gradings with and without them, alternating, the best of ``repeats``.
    confined, unconfined = [], []
    for attempt in range(repeats):
        for limits, times in (("1", confined), ("0", unconfined)):
            with setting("DEEPGRADE_TRUSTED_LIMITS", limits):
                folder = work / f"limits-{limits}-{attempt}"
                times.append(one_grading(assignment, notebook, folder, warm=True)[0])
    row["trusted_limits"], row["no_trusted_limits"] = min(confined), min(unconfined)
    row["nbgrader"] = nbgrader_autograde(assignment, notebook, work / "nbgrader-course")
    return row


def print_breakdown(row: dict) -> None:
    print(f"\n{row['assignment']}: where one grading's time goes (seconds)")
    print(f"  {'step':<52} {'cold':>7} {'warm':>7}")
    labels = (("cells (the notebook's own work)", lambda s: s["cells"]),
              ("sandbox, Python, kernel start and imports", lambda s: s["execute"] - s["cells"]),
              ("checks (trusted process)", lambda s: s["checks"]),
              ("gradebook write (nbgrader)", lambda s: s["gradebook"]),
              ("feedback page", lambda s: s["feedback"]),
              ("other steps", lambda s: sum(v for k, v in s.items()
                                            if k not in ("execute", "checks", "gradebook", "feedback", "cells"))))
    for label, value in labels:
        print(f"  {label:<52} {value(row['cold_steps']):7.2f} {value(row['warm_steps']):7.2f}")
    print(f"  {'total':<52} {row['cold']:7.2f} {row['warm']:7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assignments", default="keras-intro/01-introducing-keras",
                        help="comma-separated ids, or 'all' (every assignment's reference)")
    parser.add_argument("--class-assignment", default="keras-intro/01-introducing-keras",
                        help="the assignment whose reference the class submits")
    parser.add_argument("--class-size", type=int, default=20)
    parser.add_argument("--smoke", action="store_true", help="numpy chapter, a class of 2: checks the code runs")
    parser.add_argument("--class-run", type=int, metavar="WORKERS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.class_run:  # the child of class_throughput: one class run, its result as JSON
        assignment = Assignment.load(args.class_assignment)
        print(json.dumps(class_run(assignment, assignment.source_notebook, args.class_size, args.class_run)))
        return 0
    if args.smoke:
        args.assignments = args.class_assignment = "dl-python/01-basics-with-numpy"
        args.class_size = 2
    chosen = find_all() if args.assignments == "all" else [Assignment.load(a) for a in args.assignments.split(",")]
    cores = os.cpu_count()
    print(f"deepgrade grading benchmark · {platform.machine()}, {cores} cores, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB · "
          f"sandbox {default_sandbox().isolation} · load average before: {os.getloadavg()[0]:.1f}")

    rows = []
    with private_home() as home:
        for assignment in chosen:
            rows.append(measure(assignment, home, repeats=1 if args.smoke else 2))
            print_breakdown(rows[-1])
    print("\nside by side on each reference (seconds; ratio to raw nbclient; goal: deepgrade warm <= 1.15x "
          "and below nbgrader)")
    print(f"  {'assignment':<44} {'raw':>7} {'warm':>7} {'ratio':>6} {'cold':>7} {'ratio':>6} "
          f"{'nbgrader':>8} {'ratio':>6}")
    for r in rows:
        print(f"  {r['assignment']:<44} {r['raw']:7.1f} {r['warm']:7.1f} {r['warm'] / r['raw']:5.2f}x "
              f"{r['cold']:7.1f} {r['cold'] / r['raw']:5.2f}x {r['nbgrader']:8.1f} {r['nbgrader'] / r['raw']:5.2f}x")
    print("\nwhat the trusted side's limits cost a warm grading (best of 2 each, alternating; goal: under 5%)")
    for r in rows:
        print(f"  {r['assignment']:<44} with {r['trusted_limits']:6.1f} s, without {r['no_trusted_limits']:6.1f} s: "
              f"{r['trusted_limits'] / r['no_trusted_limits'] - 1:+.1%}")

    assignment = Assignment.load(args.class_assignment)
    print(f"\na class of {args.class_size} submissions of {assignment.id} through the queue "
          "(each run in a fresh process)")
    one, two = (class_throughput(assignment, args.class_size, workers) for workers in (1, 2))
    runs = [one, two]
    if cores > 1:  # workers = cores: how throughput scales when each worker has a core of its own
        runs.append(class_throughput(assignment, args.class_size, 1, cores=1))
    for run in runs:
        print(f"  {run['workers']} worker(s) on {run['cores']} core(s): {run['seconds']:7.1f} s, "
              f"{run['per_hour']:6.0f} gradings/hour ({run['per_hour'] / run['cores']:5.0f} per core), "
              f"submit-to-feedback p50 {run['p50']:.1f} s, p95 {run['p95']:.1f} s")
    print(f"  speed-up of 2 workers over 1, both on {cores} cores: {one['seconds'] / two['seconds']:.2f}x "
          "(goal: 1.8x)")
    if len(runs) > 2:
        print(f"  speed-up of 2 workers on 2 cores over 1 worker on 1 core: "
              f"{runs[2]['seconds'] / two['seconds']:.2f}x")
    summary = {"references": [{k: v for k, v in r.items()} for r in rows], "throughput": runs}
    print("\n" + json.dumps(summary, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
