"""The proof that an assignment grades what it claims (``deepgrade validate``).

For one assignment: the reference solution earns full marks on every seed, the blank
release earns zero without crashing, every planted mistake loses exactly the checks
it declares, no more and no fewer, and every equivalent rewrite (``rewrites:`` in
assignment.yaml, the same ``edits`` as a mistake: a correct solution written another way
Keras accepts) keeps full marks. No check may crash on the way: a check that raised
anything but a ``CheckFailure`` is a bug in the checks, whatever the run. Gradings run in
parallel worker threads (each one is a sandbox plus a checker process, so threads only
wait); ``validate --all`` puts every assignment's gradings in one queue.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from autograders.assignment import Assignment, Mistake
from autograders.kernels import WarmPool, WarmSpec, warm_enabled
from autograders.runner import grade
from autograders.sandbox import default_sandbox

DEFAULT_SEEDS = (1, 2, 3, 4, 5)


def rewrites(assignment: Assignment) -> list[Mistake]:
    """The equivalent rewrites: edits like a mistake's that must lose nothing."""
    return [Mistake(r["id"], r.get("description", ""), r.get("edits", []), [])
            for r in assignment.config.get("rewrites", []) or []]


CRASHED = "checking raised "  # how the checker's plugin words a check that raised an unexpected error


def crashed_checks(result: dict[str, Any]) -> set[str]:
    """Checks that ended in an exception of ours rather than a verdict (see ``plugin._explain``)."""
    return {c["id"] for c in result.get("checks", []) if str(c.get("message", "")).startswith(CRASHED)}


def apply_mistake(assignment: Assignment, mistake: Mistake, dest: Path) -> Path:
    """Write the reference notebook with the mistake's text edits applied."""
    nb = nbformat.read(assignment.source_notebook, as_version=4)
    for edit in mistake.edits:
        hits = [c for c in nb.cells if edit["find"] in c.source]
        if len(hits) != 1:
            raise ValueError(f"mistake '{mistake.id}': text to replace found in {len(hits)} cells, "
                             f"expected exactly 1: {edit['find']!r}")
        hits[0].source = hits[0].source.replace(edit["find"], edit["replace"])
    nbformat.write(nb, dest)
    return dest


@dataclass
class Job:
    assignment: Assignment
    label: str
    notebook: Path
    seed: int
    calibrating: bool = False
    result: dict[str, Any] = field(default_factory=dict)
    workdir: Path | None = None
    seconds: float = 0.0


def run_jobs(jobs: list[Job], workers: int, base: Path, on_done: Callable[[Job], None] | None = None) -> list[Job]:
    """Grade every job, ``workers`` at a time; each gets its own work directory under ``base``.
    The next ``workers`` sandboxes start while the current ones run (a warm pool). Jobs may
    belong to different assignments: one queue keeps every worker busy to the end."""
    sandbox = default_sandbox()
    warm = WarmPool(sandbox, depth=workers, repeat=False, scratch=base) if warm_enabled() else None

    def one(index_job: tuple[int, Job]) -> Job:
        index, job = index_job
        job.workdir = base / f"{index:03d}-{job.label.replace(' ', '_').replace('/', '_')}"
        started = time.monotonic()
        job.result = grade(job.notebook, job.assignment, workdir=job.workdir, seed=job.seed, sandbox=sandbox,
                           calibrating=job.calibrating, student=job.label, pool=warm)
        job.seconds = time.monotonic() - started
        if on_done:
            on_done(job)
        return job

    try:
        if warm:
            warm.expect(WarmSpec.of(job.assignment, job.seed) for job in jobs)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as threads:
            return list(threads.map(one, enumerate(jobs)))
    finally:
        if warm:
            warm.close()


def failed_checks(result: dict[str, Any]) -> set[str]:
    return {c["id"] for c in result.get("checks", []) if not c["passed"]}


@dataclass
class Verdict:
    label: str
    ok: bool
    score: float
    max_score: float
    detail: str


def flagged_audits(result: dict[str, Any]) -> set[str]:
    return {f.get("check", "") for f in result.get("flags", []) if isinstance(f, dict)}


def _judge(assignment: Assignment, job: Job) -> Verdict:
    r = job.result
    score, top = r.get("score", 0.0), r.get("max_score", 0.0)
    failed = failed_checks(r)
    crashed = crashed_checks(r)
    flagged = flagged_audits(r)
    if r.get("status") == "graded" and crashed:
        return Verdict(job.label, False, score, top,
                       f"checks crashed instead of failing: {', '.join(sorted(crashed))}")
    if r.get("status") != "graded":
        return Verdict(job.label, job.label == "blank" and score == 0, score, top, r.get("message", ""))
    if job.label.startswith("reference") or job.label.startswith("rewrite "):
        problems = list(r.get("problems", []))
        if flagged:  # an honest notebook must never raise a doubt about its author
            problems.append(f"flagged by {', '.join(sorted(flagged))}")
        if job.label.startswith("reference"):
            sums = {}
            for c in r.get("checks", []):
                sums[c["grade_id"]] = sums.get(c["grade_id"], 0.0) + c["points"]
            for gid, cell in r.get("grade_cells", {}).items():
                if abs(sums.get(gid, 0.0) - cell["max_score"]) > 1e-9:
                    problems.append(f"grade cell '{gid}' is worth {cell['max_score']:g} but its checks add up to "
                                    f"{sums.get(gid, 0.0):g}")
        ok = not failed and not problems and top > 0 and score == top
        detail = "; ".join(problems + ([f"lost {', '.join(sorted(failed))}"] if failed else [])) or "full marks"
        return Verdict(job.label, ok, score, top, detail)
    if job.label == "blank":
        return Verdict(job.label, score == 0, score, top, "zero" if score == 0 else "blank scored points")
    mistake = next(m for m in assignment.mistakes if f"mistake {m.id}" == job.label)
    expected, expected_flags = set(mistake.loses), set(mistake.flags)
    ok = failed == expected and flagged == expected_flags
    detail = "lost exactly " + ", ".join(sorted(failed)) if failed == expected else (
        f"lost {sorted(failed)}; expected {sorted(expected)}")
    if flagged or expected_flags:
        detail += "; flagged " + (", ".join(sorted(flagged)) or "nothing") + (
            "" if flagged == expected_flags else f" (expected {', '.join(sorted(expected_flags)) or 'nothing'})")
    return Verdict(job.label, ok, score, top, detail)


def proof_jobs(assignment: Assignment, seeds: Iterable[int], workdir: Path) -> list[Job]:
    workdir.mkdir(parents=True, exist_ok=True)
    jobs = [Job(assignment, f"reference seed {s}", assignment.source_notebook, s) for s in seeds]
    jobs.append(Job(assignment, "blank", assignment.release_notebook, 1))
    for mistake in assignment.mistakes:
        planted = apply_mistake(assignment, mistake, workdir / f"{mistake.id}.ipynb")
        jobs.append(Job(assignment, f"mistake {mistake.id}", planted, 1))
    for rewrite in rewrites(assignment):
        written = apply_mistake(assignment, rewrite, workdir / f"rewrite-{rewrite.id}.ipynb")
        jobs.append(Job(assignment, f"rewrite {rewrite.id}", written, 1))
    return jobs


@dataclass
class Proof:
    """One assignment's verdicts, and the grading seconds its runs took (summed over workers)."""

    assignment: Assignment
    verdicts: list[Verdict]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def validate_all(assignments: Iterable[Assignment], seeds: Iterable[int] = DEFAULT_SEEDS, workers: int = 2,
                 on_done: Callable[[Job], None] | None = None) -> list[Proof]:
    """Every assignment's proofs, graded as one queue of jobs."""
    assignments, seeds = list(assignments), tuple(seeds)
    with tempfile.TemporaryDirectory(prefix="deepgrade-validate-") as tmp:
        jobs = [job for a in assignments for job in proof_jobs(a, seeds, Path(tmp) / "mistakes" / a.id)]
        run_jobs(jobs, workers, Path(tmp), on_done)
    proofs = []
    for assignment in assignments:
        mine = [job for job in jobs if job.assignment is assignment]
        verdicts = [_judge(assignment, job) for job in mine]
        if len(assignment.mistakes) < 3:
            verdicts.append(Verdict("planted mistakes", False, 0, 0,
                                    f"{len(assignment.mistakes)} planted mistakes; every assignment needs at least 3"))
        proofs.append(Proof(assignment, verdicts, sum(job.seconds for job in mine)))
    return proofs
