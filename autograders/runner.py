"""Grade one submitted notebook: a pipeline of small steps, in the manner of nbgrader's preprocessors.

    ReadNotebook -> RestoreAutograderCells -> ExecuteInSandbox -> RunChecks -> Score
                 -> WriteFeedback -> RecordInGradebook

Every step works on one :class:`Grading` and may stop the pipeline with a recorded
reason. Whatever happens (malformed JSON, a crash, a timeout), the run ends with a
``result.json`` that says what happened and what was scored. Student code only ever runs
inside the sandbox; checks run in a separate trusted process over the exported artifacts.

The result is the second seam between the student side and the trusted side (the first is
:mod:`autograders.untrusted`, through which every file from the sandbox is read). Its
``status`` is one of:

- ``graded``: every step ran; the score is the points of the passing checks;
- ``error``: the submission itself stopped grading (not a notebook, a time limit...); what it
  earned before that is its score, and the gradebook records it;
- ``platform-error``: our side failed (a sandbox that could not start, a crashed or broken
  checker, a bug, the grading's deadline). Nothing is scored or written to the gradebook;
  a worker grades the submission again.

The gradebook is written last, from the same result as the feedback, so the two never disagree.
The whole grading has a deadline (:func:`deadline_of`), enforced from outside the thread
that runs the steps.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nbformat

from autograders.artifacts import CELLS_FILE
from autograders.assignment import Assignment, Limits
from autograders.checker import CheckLimits, CheckRun, CheckServer, run_without_server
from autograders.execute import EXECUTION_FILE, STARTED, SUBMISSION, grade_id
from autograders.kernels import WarmPool, WarmSpec, release, runner_command
from autograders.replay import SUBMITTED, record
from autograders.results import CheckResult
from autograders.sandbox import CgroupConfinement, Sandbox, default_sandbox, remove_tree, thread_env
from autograders.untrusted import UntrustedFileError, read_json

RESULT = "result.json"
FEEDBACK_TIME = 60    # seconds to render the feedback page before it is given up for a plain one
DEADLINE_MARGIN = 60  # seconds on top of the limits for everything else a grading does
CHECKER_TMP_MIB = 1024


class StopGrading(Exception):
    """Raised by a step when the submission cannot be graded further; the reason is recorded."""


class PlatformError(Exception):
    """Raised when our side failed, not the submission: nothing is scored and the job is retried."""


def deadline_of(limits: Limits) -> float:
    """Seconds a whole grading may take: the notebook's and the checks' limits, the feedback page
    and a margin. Past it the grading ends as a platform error, whatever it was doing."""
    return limits.time + limits.check_time + FEEDBACK_TIME + DEADLINE_MARGIN


@dataclass
class Grading:
    """Everything one grading run knows; steps fill it in."""

    assignment: Assignment
    notebook_path: Path
    workdir: Path
    student: str = "student"
    seed: int = 0
    calibrating: bool = False
    sandbox: Sandbox | None = None
    pool: WarmPool | None = None
    gradebook_root: Path | None = None
    record_gradebook: bool = False
    submitted_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    notebook: Any = None
    status: str = "graded"
    message: str = ""
    integrity: list[str] = field(default_factory=list)
    execution: dict[str, Any] = field(default_factory=dict)
    checks: list[CheckResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    flags: list[dict[str, Any]] = field(default_factory=list)  # failed audits: for the instructor only
    reproduce: dict[str, Any] = field(default_factory=dict)  # what `deepgrade replay` needs (autograders.replay)
    grade_cells: dict[str, dict[str, float]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)  # set at the deadline
    started: float = field(default_factory=time.monotonic)
    deadline: float = 3600.0  # seconds from ``started``

    def time_left(self) -> float:
        return max(1.0, self.deadline - (time.monotonic() - self.started))

    @property
    def score(self) -> float:
        if self.status == "platform-error":
            return 0.0
        return sum(c["score"] for c in self.grade_cells.values())

    @property
    def max_score(self) -> float:
        return sum(c["max_score"] for c in self.grade_cells.values())

    @property
    def isolation(self) -> str:
        return self.sandbox.isolation if self.sandbox else "none"

    def to_dict(self) -> dict[str, Any]:
        warning = ""
        if self.sandbox is not None and self.sandbox.development_only:
            warning = ("NOT ISOLATED: this submission ran as a plain process (development only); "
                       "install bubblewrap or use the Docker sandbox for real grading")
        return {
            "assignment": self.assignment.id, "student": self.student, "seed": self.seed,
            "submitted_at": self.submitted_at.isoformat(), "status": self.status, "message": self.message,
            "score": self.score, "max_score": self.max_score, "isolation": self.isolation,
            "isolation_warning": warning, "integrity": self.integrity, "execution": self.execution,
            "grade_cells": self.grade_cells, "checks": [c.to_dict() for c in self.checks],
            "problems": self.problems, "flags": self.flags, "reproduce": self.reproduce, "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Step:
    """One stage of grading. ``name`` labels its timing in the result."""

    name = "step"

    def __call__(self, g: Grading) -> None:
        raise NotImplementedError


class ReadNotebook(Step):
    name = "read"

    def __call__(self, g: Grading) -> None:
        raw = g.notebook_path.read_bytes()
        g.execution["submission_sha256"] = hashlib.sha256(raw).hexdigest()
        g.reproduce = record(g.assignment, g.execution["submission_sha256"], g.seed)
        (g.workdir / SUBMITTED).write_bytes(raw)  # what `deepgrade replay` grades again
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise StopGrading("the notebook is not valid UTF-8 text; it could not be read") from None
        try:
            nb = nbformat.reads(text, as_version=4)
        except Exception as exc:
            raise StopGrading(f"the notebook is not valid notebook JSON ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:200]}); nothing could be run") from None
        if not isinstance(nb.get("cells"), list):
            raise StopGrading("the notebook has no list of cells; nothing could be run")
        g.notebook = nb


def _nbgrader_id(cell: Any) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


class RestoreAutograderCells(Step):
    """Put back every locked autograder cell exactly as released.

    Students may add, move and edit their own cells freely, but a locked cell that was
    edited, deleted, duplicated or turned into markdown is restored from the release (and
    noted), so the code that exports artifacts is always the instructor's.
    """

    name = "restore"

    def __call__(self, g: Grading) -> None:
        release = nbformat.read(g.assignment.release_notebook, as_version=4)
        locked = {grade_id(c): c for c in release.cells if grade_id(c)}
        cells, seen = [], set()
        for cell in g.notebook.cells:
            gid = _nbgrader_id(cell)
            if gid not in locked:
                cells.append(cell)
                continue
            if gid in seen:
                g.integrity.append(f"autograder cell '{gid}' appeared twice; the copy was removed")
                continue
            seen.add(gid)
            original = locked[gid]
            if cell.get("cell_type") != original.cell_type:
                g.integrity.append(f"autograder cell '{gid}' was changed to {cell.get('cell_type')}; it was restored")
            elif cell.get("source") != original.source:
                g.integrity.append(f"autograder cell '{gid}' was edited; the original was restored")
            cells.append(_fresh(original))
        release_ids = [_nbgrader_id(c) for c in release.cells]
        for index, gid in enumerate(release_ids):
            if gid not in locked or gid in seen:
                continue
            g.integrity.append(f"autograder cell '{gid}' was deleted; it was restored from the release")
            # Insert after the nearest earlier release cell the student still has.
            position = 0
            for earlier in reversed(release_ids[:index]):
                found = [i for i, c in enumerate(cells) if earlier and _nbgrader_id(c) == earlier]
                if found:
                    position = found[0] + 1
                    break
            cells.insert(position, _fresh(locked[gid]))
            seen.add(gid)
        g.notebook.cells = cells


def _fresh(cell: Any) -> Any:
    cell = copy.deepcopy(cell)
    if cell.cell_type == "code":
        cell.outputs, cell.execution_count = [], None
    return cell


class ExecuteInSandbox(Step):
    """Run the notebook in the sandbox under the assignment's limits; every limit it hit, and
    every one this sandbox could not enforce, is recorded (the first in the message too)."""

    name = "execute"

    def __call__(self, g: Grading) -> None:
        sandbox = g.sandbox or default_sandbox()
        g.sandbox = sandbox
        work = g.workdir / "sandbox"
        limits = g.assignment.limits
        warm = g.pool.take(WarmSpec.of(g.assignment, g.seed)) if g.pool else None
        if warm:  # started before this submission arrived: only its clock starts now
            nbformat.write(g.notebook, warm.work / SUBMISSION)
            release(warm, g.seed, limits.cell_timeout, limits.output)
            run = warm.started.wait(limits.time)
            shutil.move(warm.work, work)
        else:
            work.mkdir(parents=True, exist_ok=True)
            nbformat.write(g.notebook, work / SUBMISSION)
            command = runner_command(g.assignment, work, [
                "--seed", str(g.seed), "--cell-timeout", str(limits.cell_timeout),
                "--output-limit", str(limits.output)])
            run = sandbox.run(**command, timeout=limits.time)
        g.execution["warm_start"] = bool(warm)
        g.execution.update(returncode=run.returncode, timed_out=run.timed_out, seconds=round(run.duration, 2),
                           limits=asdict(limits), limits_exceeded=list(run.exceeded),
                           limits_not_enforced=list(run.unenforced), usage=dict(run.usage))
        if not run.printed_first(STARTED):  # no student code ran: the sandbox or its kernel failed us
            tail = (run.stderr.strip().splitlines() or ["no output"])[-1][:300]
            raise PlatformError(f"the sandbox could not start the notebook (exit code {run.returncode}"
                                f"{', timed out' if run.timed_out else ''}): {tail}")
        # Written inside the sandbox, so possibly forged or garbage: used for messages only.
        cells = _json_dict(work, CELLS_FILE)
        cells = {str(gid): c for gid, c in cells.items() if isinstance(c, dict)}
        g.execution["cells"] = cells
        outputs = _json_dict(work, EXECUTION_FILE)
        notes = list(run.exceeded)
        if run.timed_out:
            notes.append(f"killed after {limits.time} s: the notebook did not finish within the assignment's "
                         "time limit; checks ran on what it exported before that")
        elif run.returncode != 0:
            tail = run.stderr.strip().splitlines()[-1:] or ["no output"]
            notes.append(f"the notebook runner stopped with exit code {run.returncode}: {tail[0][:300]}")
        timeouts = [gid for gid, c in cells.items() if str(c.get("error", "")).startswith("CellTimeout")]
        if timeouts:
            notes.append(f"cell(s) stopped after {limits.cell_timeout} s: {', '.join(timeouts)}")
        if outputs.get("outputs_dropped"):
            notes.append(f"output limit: the notebook printed more than {limits.output:,} characters; "
                         "the rest was dropped (the executed notebook shows where)")
        if notes:
            g.message = "; ".join(([g.message] if g.message else []) + notes)


def _json_dict(root: Path, name: str) -> dict[str, Any]:
    """A JSON record the sandbox wrote, or {} when it is missing, not a plain file, or garbage."""
    try:
        data = read_json(root, name, max_bytes=2**20)
    except (OSError, UntrustedFileError):
        return {}
    return data if isinstance(data, dict) else {}


class RunChecks(Step):
    """Run the assignment's pytest autograders in a separate, trusted process: a fork of the
    check server (libraries already imported), or a fresh interpreter with
    ``DEEPGRADE_CHECK_SERVER=0``."""

    name = "checks"

    def __call__(self, g: Grading) -> None:
        out = g.workdir / "checks.json"
        args = [str(g.assignment.tests_dir), "-p", "autograders.plugin",
                "-p", "no:cacheprovider", "-q", "--no-header", "-o", "addopts=",
                "--rootdir", str(g.assignment.path), "--deepgrade-artifacts", str(g.workdir / "sandbox"),
                "--deepgrade-results", str(out), "--deepgrade-assignment", str(g.assignment.path),
                "--deepgrade-seed", str(g.seed)]
        if g.calibrating:
            args.append("--deepgrade-calibrate")
        limit = min(g.assignment.limits.check_time, g.time_left())
        # Checks that retrain a model get the notebook's thread budget, so they cost what it did.
        env = {"TF_CPP_MIN_LOG_LEVEL": "3", **thread_env(g.assignment.limits)}
        try:
            run = run_trusted(g, {"argv": args}, env, limit)
        except subprocess.TimeoutExpired:
            raise StopGrading(f"the checks did not finish within {limit:.0f} s") from None
        try:
            data = json.loads(out.read_text()) if out.exists() else None
        except ValueError:
            data = None
        if g.execution.get("checker_limits_exceeded"):  # the student's artifacts blew the checker's limit
            raise StopGrading("the checks were stopped: " + "; ".join(g.execution["checker_limits_exceeded"]))
        # pytest exits 0 (all passed) or 1 (some failed); anything else means the checks did not run
        if not isinstance(data, dict) or run.returncode not in (0, 1) or not data.get("checks"):
            tail = "\n".join(run.output.strip().splitlines()[-5:])
            raise PlatformError(f"the checker did not report (exit code {run.returncode}): {tail[-500:]}")
        g.checks = [CheckResult.from_dict(c) for c in data["checks"]]
        g.problems = data.get("problems", [])
        g.flags = [f for f in data.get("flags", []) if isinstance(f, dict)]
        if g.problems:  # an instructor's bug: say so rather than hand out a wrong score
            raise PlatformError("the assignment's autograder is broken, so this submission was not scored; "
                                "your instructor has been told: " + "; ".join(g.problems)[:500])


def run_trusted(g: Grading, what: dict[str, Any], env: dict[str, str], timeout: float) -> CheckRun:
    """A trusted run over the student's artifacts (the checks, or the feedback page), confined: a
    cgroup with ``limits.check_memory``, CPU seconds, no network, and a private temporary folder
    (a size-capped tmpfs where the grader may mount one) removed afterwards, whatever happened."""
    limits = g.assignment.limits
    if os.environ.get("DEEPGRADE_TRUSTED_LIMITS", "1") == "0":  # bench/grading.py measures what they cost
        g.execution["checker_limits_not_enforced"] = ["all: DEEPGRADE_TRUSTED_LIMITS=0"]
        if os.environ.get("DEEPGRADE_CHECK_SERVER", "1") != "0":
            return CheckServer.shared().request(what, g.workdir, env, timeout, None)
        return run_without_server(what, cwd=g.workdir, env=env, timeout=timeout)
    tmp = g.workdir / "checker-tmp"
    tmp.mkdir(exist_ok=True)
    box_limits = Limits(memory=limits.check_memory, pids=max(limits.pids, 512), cpus=limits.cpus + 1)
    box = CgroupConfinement(box_limits, tmp, max_file_size=0, disk_limit=0).__enter__()
    confine = CheckLimits(cgroups=box.procs_files(), cpu_seconds=int(timeout * (limits.cpus + 1)) + 10,
                          tmp=str(tmp), tmp_mib=CHECKER_TMP_MIB)
    try:
        if os.environ.get("DEEPGRADE_CHECK_SERVER", "1") != "0":
            return CheckServer.shared().request(what, g.workdir, env, timeout, confine)
        return run_without_server(what, cwd=g.workdir, env=env, timeout=timeout, limits=confine)
    finally:
        box.stop()
        try:
            hits = box.exceeded()
        finally:
            box.close()
        if hits:
            g.execution["checker_limits_exceeded"] = [h.replace("the notebook", "checking your work") for h in hits]
        g.execution["checker_limits_not_enforced"] = [u for u in box.unenforced if not u.startswith("disk")] + (
            [] if os.geteuid() == 0 else ["network and temporary-disk quota: the grader is not root"])
        remove_tree(tmp)


RERUN_SEEDS = 2    # further seeds for a check that failed close to its threshold
RERUN_BAND = 0.1   # "close": within 10 % of the threshold's value (``rerun_band`` per threshold)


def near_threshold(g: Grading) -> list[CheckResult]:
    """The failed checks whose only failing measurement lies on the wrong side of its threshold
    but within the threshold's band: a seed may have decided them."""
    specs = g.assignment.config.get("thresholds", {})
    try:
        limits = g.assignment.thresholds()
    except KeyError:  # an uncalibrated assignment: nothing to be close to
        return []
    near = []
    for check in g.checks:
        if check.passed or not check.metrics:
            continue
        failing = {k: v for k, v in check.metrics.items() if k in limits and
                   (v > limits[k] if limits[k].direction == "below" else v < limits[k])}
        band = {k: float(specs[k].get("rerun_band", RERUN_BAND)) * abs(float(limits[k])) for k in failing}
        if failing and all(abs(v - limits[k]) <= band[k] for k, v in failing.items()):
            near.append(check)
    return near


class RerunNearThresholds(Step):
    """Randomness is measured, not hoped (after StochasticGrade, EDM 2024): a check that failed
    close to its threshold is judged again on further seeds, each a fresh run of the notebook in
    a fresh sandbox, and keeps its points only if it passes on a majority of them. The check's
    message says which seeds ran and what each measured. A re-run that cannot fit in the grading's
    time leaves the first verdict, and says so."""

    name = "rerun"

    def __call__(self, g: Grading) -> None:
        near = [] if g.calibrating else near_threshold(g)
        if not near:
            return
        spent = g.timings.get("execute", 0.0) + g.timings.get("checks", 0.0)
        runs: dict[str, list[tuple[int, CheckResult]]] = {c.id: [(g.seed, c)] for c in near}
        for seed in range(g.seed + 1, g.seed + 1 + RERUN_SEEDS):
            if g.time_left() < 2 * spent + FEEDBACK_TIME:
                g.execution.setdefault("reruns_skipped", []).append(f"seed {seed}: not enough time left")
                break
            again = Grading(g.assignment, g.notebook_path, g.workdir / f"rerun-seed-{seed}", student=g.student,
                            seed=seed, sandbox=g.sandbox, started=g.started, deadline=g.deadline,
                            cancelled=g.cancelled, notebook=copy.deepcopy(g.notebook))
            again.workdir.mkdir(parents=True, exist_ok=True)
            try:
                ExecuteInSandbox()(again)
                RunChecks()(again)
            except StopGrading as stop:  # the first verdict stands
                g.execution.setdefault("reruns_skipped", []).append(f"seed {seed}: {stop}")
                break
            finally:
                remove_tree(again.workdir)
            for check in again.checks:
                if check.id in runs:
                    runs[check.id].append((seed, check))
        g.execution["reruns"] = {}
        for check in near:
            verdicts = runs[check.id]
            passed = sum(c.passed for _, c in verdicts)
            seen = "; ".join(f"seed {seed}: {'passed' if c.passed else 'failed'} ("
                             + ", ".join(f"{k} {v:.4g}" for k, v in c.metrics.items()) + ")" for seed, c in verdicts)
            g.execution["reruns"][check.id] = seen
            if len(verdicts) > 1 and passed > len(verdicts) / 2:
                check.passed = True
                check.message = (f"passed on {passed} of {len(verdicts)} seeds: the first run failed close to "
                                 f"the threshold, so it ran again ({seen})")
            elif len(verdicts) > 1:
                check.message += f" (it failed close to the threshold and again on further seeds: {seen})"


class Score(Step):
    """Partial credit: each grade cell scores the points of its passing checks."""

    name = "score"

    def __call__(self, g: Grading) -> None:
        release = nbformat.read(g.assignment.release_notebook, as_version=4)
        for cell in release.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("grade"):
                g.grade_cells[meta["grade_id"]] = {"score": 0.0, "max_score": float(meta.get("points", 0))}
        for check in g.checks:
            cell = g.grade_cells.setdefault(check.grade_id, {"score": 0.0, "max_score": 0.0})
            cell["score"] += check.score


class RecordInGradebook(Step):
    """Last, and only for an outcome of the submission's own: never for a platform error, and never
    after the deadline gave the grading up."""

    name = "gradebook"

    def __call__(self, g: Grading) -> None:
        if not g.record_gradebook or g.status == "platform-error" or g.cancelled.is_set():
            return
        from autograders.gradebook import record

        scores = {gid: cell["score"] for gid, cell in g.grade_cells.items()}
        path = record(g.assignment, g.student, scores, g.gradebook_root, g.submitted_at)
        g.execution["gradebook"] = str(path) if path else ""
        if path is None:
            g.integrity.append(f"the gradebook keeps another submission of yours (this assignment's score "
                               f"policy: {g.assignment.score_policy}); this one was not recorded there")


def feedback_env() -> dict[str, str]:
    """What the page depends on from the grader's environment, sent with each request: the shared
    check server keeps the environment it was started with."""
    return {k: os.environ[k] for k in ("DEEPGRADE_TIMEZONE",) if k in os.environ}


class WriteFeedback(Step):
    """The page, rendered in a trusted fork with the checker's limits and its own deadline; if
    that fails, a plain page with the checks alone (the student always gets one)."""

    name = "feedback"

    def __call__(self, g: Grading) -> None:
        from autograders.feedback import RESULT_FILE, write_plain_feedback

        (g.workdir / RESULT_FILE).write_text(json.dumps(g.to_dict(), indent=1))
        problem = ""
        if g.status == "platform-error":
            problem = "the grading failed on our side"
        else:
            try:
                run = run_trusted(g, {"call": "autograders.feedback:write_feedback",
                                      "kwargs": {"workdir": str(g.workdir), "assignment": str(g.assignment.path)}},
                                  feedback_env(), min(FEEDBACK_TIME, g.time_left()))
                if run.returncode != 0:
                    problem = f"rendering it failed ({(run.output.strip().splitlines() or ['no output'])[-1][:200]})"
            except subprocess.TimeoutExpired:
                problem = f"rendering it took longer than {FEEDBACK_TIME} s"
        if problem or not (g.workdir / "feedback.html").is_file():
            write_plain_feedback(g.workdir, f"Your notebook is not shown here: {problem or 'it could not be rendered'}.")


PIPELINE: list[Step] = [ReadNotebook(), RestoreAutograderCells(), ExecuteInSandbox(), RunChecks(),
                        RerunNearThresholds(), Score(), WriteFeedback(), RecordInGradebook()]


_LIBRARY_IMPORT = threading.Lock()


def _import_grading_libraries() -> None:
    """nbgrader and nbconvert import each other in circles, so two grading threads importing them
    for the first time at once can get a half-initialised module (an ImportError). The first
    grading imports them under a lock; later ones find them loaded."""
    with _LIBRARY_IMPORT:
        import nbconvert  # noqa: F401
        import nbgrader.api
        import nbgrader.apps.api  # noqa: F401


def grade(notebook: Path, assignment: Assignment | str, *, workdir: Path | None = None,
          student: str = "student", seed: int = 0, sandbox: Sandbox | None = None,
          gradebook_root: Path | None = None, record_gradebook: bool = False,
          calibrating: bool = False, submitted_at: datetime | None = None,
          pool: WarmPool | None = None, deadline: float | None = None) -> dict[str, Any]:
    """Grade ``notebook`` and return the result (also written to ``workdir/result.json``).

    With a ``pool``, the notebook runs in a sandbox of the pool's kind started ahead of it.
    ``deadline`` (seconds; default :func:`deadline_of` the assignment's limits) bounds the whole
    grading."""
    _import_grading_libraries()
    if not isinstance(assignment, Assignment):
        assignment = Assignment.load(assignment)
    workdir = Path(workdir or tempfile.mkdtemp(prefix="deepgrade-grade-"))
    workdir.mkdir(parents=True, exist_ok=True)
    g = Grading(assignment, Path(notebook), workdir, student=student, seed=seed,
                sandbox=pool.sandbox if pool else sandbox,
                gradebook_root=gradebook_root, record_gradebook=record_gradebook, calibrating=calibrating,
                pool=pool)
    if submitted_at:  # the exchange's server time, so the formgrader matches grade and submission
        g.submitted_at = submitted_at
    g.started = time.monotonic()
    g.deadline = deadline or deadline_of(assignment.limits)
    worker = threading.Thread(target=_run_pipeline, args=(g,), name=f"grading-{student}", daemon=True)
    worker.start()
    worker.join(g.deadline)
    if worker.is_alive():  # a step hung: give the grading up (the thread ends at its next step boundary)
        g.cancelled.set()
        result = {**g.to_dict(), "status": "platform-error", "score": 0.0, "checks": [],
                  "message": f"platform error: the grading exceeded its deadline of {g.deadline:.0f} s "
                             f"and was stopped; it will be graded again"}
    else:
        result = g.to_dict()
    (workdir / RESULT).write_text(json.dumps(result, indent=1))
    return result


def _run_pipeline(g: Grading) -> None:
    stopped = False
    for step in PIPELINE:
        if g.cancelled.is_set():
            return
        if stopped and step.name not in ("score", "gradebook", "feedback"):
            continue
        start = time.monotonic()
        try:
            step(g)
        except StopGrading as stop:
            g.status, g.message, stopped = "error", str(stop), True
        except PlatformError as failure:
            g.status, g.message, stopped = "platform-error", f"platform error: {failure}"[:800], True
        except Exception as exc:  # a bug of ours must still leave a recorded outcome, and never a score
            g.status, stopped = "platform-error", True
            g.message = f"platform error: internal grading error in step '{step.name}': {type(exc).__name__}: {exc}"[:500]
        g.timings[step.name] = time.monotonic() - start
