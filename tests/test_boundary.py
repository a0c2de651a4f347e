"""The trusted side of grading reads what a sandbox left behind as hostile input.

The reader (``autograders.untrusted``) and the loaders refuse links, pipes, devices, oversized
files, archive bombs and arrays that declare more than they hold; checks and the feedback page
cost a bounded amount whatever an artifact contains; a platform failure is retried and never
graded; a grading ends by its deadline. The last test fuzzes the whole pipeline after execution
with Hypothesis: a sandbox backend that leaves generated hostile trees where a notebook's files
would be (what any student's code can do), graded by the real checker and feedback writer.
"""

from __future__ import annotations

import io
import json
import os
import resource
import threading
import time
import tracemalloc
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from autograders import cli
from autograders.artifacts import Submission
from autograders.assignment import Assignment
from autograders.checks import check_history
from autograders.execute import STARTED
from autograders.feedback import MAX_SERIES, RESULT_FILE, graded_histories, write_feedback
from autograders.results import CheckFailure
from autograders.runner import grade
from autograders.sandbox import BubblewrapSandbox, ProcessSandbox, SandboxRun, remove_tree
from autograders.untrusted import UntrustedFileError, parse_json, read_bytes
from hub.store import MAX_ATTEMPTS, CourseStore
from hub.worker import run_job
from tests.test_queue import submit

NUMPY = "dl-python/01-basics-with-numpy"
SECRET = "HOST-SECRET-7f3a"  # in a file on the grader's host: must never appear in what we write


@pytest.fixture(scope="module")
def numpy_chapter() -> Assignment:
    return Assignment.load(NUMPY)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text(SECRET)
    return path


# -- the reader ---------------------------------------------------------------------------------
def test_reader_refuses_links_pipes_devices_folders_and_oversized_files(tmp_path: Path, secret_file: Path) -> None:
    root = tmp_path / "work"
    (root / "real").mkdir(parents=True)
    (root / "real" / "ok.json").write_text('{"a": 1}')
    (root / "leaf-link.json").symlink_to(secret_file)
    (root / "middle").symlink_to(root / "real")
    (root / "zero").symlink_to("/dev/zero")
    os.mkfifo(root / "pipe")
    (root / "big").write_bytes(b"x" * 2048)
    assert read_bytes(root, "real/ok.json", 100) == b'{"a": 1}'
    for name in ("leaf-link.json", "middle/ok.json", "zero", "pipe", "real", "big", "../work/real/ok.json"):
        started = time.monotonic()
        with pytest.raises(UntrustedFileError):
            read_bytes(root, name, 1024)
        assert time.monotonic() - started < 1, f"{name}: a refusal never blocks"
    with pytest.raises(UntrustedFileError, match="nested"):
        parse_json("[" * 10_000 + "]" * 10_000)


# -- the checker's loaders ----------------------------------------------------------------------
def _submission(tmp_path: Path, grade_id: str, entries: dict, files: dict[str, bytes]) -> Submission:
    folder = tmp_path / "sandbox" / "artifacts" / grade_id
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps(entries))
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return Submission(tmp_path / "sandbox")


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_archive_bombs_are_refused_before_keras_unpacks_them(tmp_path: Path) -> None:
    bomb = _zip({"config.json": b"{}", "metadata.json": b"{}", "model.weights.h5": bytes(64 * 2**20)})
    padded = _zip({"config.json": b"{" + b" " * (20 * 2**20) + b"}", "metadata.json": b"{}"})
    assert len(bomb) < 2**20
    sub = _submission(tmp_path, "cell", {"bomb": {"kind": "model", "file": "bomb.keras"},
                                         "padded": {"kind": "model", "file": "padded.keras"}},
                      {"bomb.keras": bomb, "padded.keras": padded})
    for name, why in (("bomb", "compressed more than"), ("padded", "configuration is over")):
        with pytest.raises(CheckFailure, match=why):
            sub.get("cell", name, expect="model")


def test_arrays_that_declare_more_than_they_hold_are_refused_before_allocation(tmp_path: Path) -> None:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)})
    forged = _zip({"weights.npy": header.getvalue() + bytes(64)})
    honest = io.BytesIO()
    np.savez(honest, honest=np.arange(5.0))
    sub = _submission(tmp_path, "cell", {"weights": {"kind": "array", "file": "forged.npz"},
                                         "honest": {"kind": "array", "file": "honest.npz"},
                                         "gone": {"kind": "array", "file": "gone.npz"}},
                      {"forged.npz": forged, "honest.npz": honest.getvalue()})
    with pytest.raises(CheckFailure, match="declares"):
        sub.get("cell", "weights", expect="array")
    with pytest.raises(CheckFailure, match="missing"):
        sub.get("cell", "gone", expect="array")
    assert sub.get("cell", "honest", expect="array").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_a_long_history_costs_the_convergence_check_linear_memory() -> None:
    values = list(np.linspace(2.0, 0.1, 14_000) + np.random.default_rng(0).normal(0, 0.01, 14_000))
    tracemalloc.start()
    try:
        check_history({"loss": values}).decreases()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MiB for 14,000 epochs"  # the pairwise version took 4.9 GB


# -- the feedback page --------------------------------------------------------------------------
def test_feedback_page_is_bounded_and_survives_any_artifact_value(tmp_path: Path, numpy_chapter: Assignment) -> None:
    sandbox = tmp_path / "sandbox"
    graded = sandbox / "artifacts" / "relu"
    graded.mkdir(parents=True)
    huge = "1" + "0" * 400  # a 401-digit integer: float() of it overflows
    (graded / "history.history.json").write_text(f'{{"history": {{"loss": [3, 2, {huge}, NaN, "x", 1]}}}}')
    (graded / "manifest.json").write_text(json.dumps({"history": {"kind": "history",
                                                                  "file": "history.history.json"}}))
    ungraded = sandbox / "artifacts" / "not-a-grade-cell"
    ungraded.mkdir()
    for index in range(2000):  # what the old page plotted, one legend entry each
        (ungraded / f"s{index}.history.json").write_text('{"history": {"loss": [1, 0.5]}}')
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("[" * 100_000), nbformat.v4.new_code_cell("1")]
    nbformat.write(nb, sandbox / "executed.ipynb")
    result = {"assignment": numpy_chapter.id, "score": 1, "max_score": 12, "status": "graded", "isolation": "x",
              "grade_cells": {"relu": {"score": 1, "max_score": 1}}, "checks": [
                  {"id": "test_x", "passed": False, "score": 0, "points": 1, "message": "<b>hi</b>",
                   "measured": {"deep": [[["x"]]]}, "expected": int(huge)}]}
    (tmp_path / RESULT_FILE).write_text(json.dumps(result))
    histories = graded_histories(tmp_path, ["relu", "not-a-grade-cell"])
    assert list(histories) == ["relu"] and len(histories) <= MAX_SERIES
    assert histories["relu"]["loss"] == [3.0, 2.0, 1.0]  # only finite numbers
    started = time.monotonic()
    page = write_feedback(tmp_path, numpy_chapter.path).read_text()
    assert time.monotonic() - started < 30
    assert "deepgrade-feedback" in page and "&lt;b&gt;hi&lt;/b&gt;" in page and "not shown" in page
    assert "<script" not in page.lower(), "no script, and nothing loaded from elsewhere"


# -- platform failures and the deadline ---------------------------------------------------------
def test_a_sandbox_that_cannot_start_is_a_platform_error_never_a_grade(tmp_path: Path, numpy_chapter: Assignment,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    broken = BubblewrapSandbox(executable=str(tmp_path / "no-such-bwrap"))
    result = grade(numpy_chapter.source_notebook, numpy_chapter, workdir=tmp_path / "g", sandbox=broken,
                   record_gradebook=True, gradebook_root=tmp_path / "course")
    assert result["status"] == "platform-error" and result["score"] == 0, result
    assert "could not start" in result["message"]
    assert not (tmp_path / "course").exists(), "nothing is written to the gradebook"

    monkeypatch.setenv("DEEPGRADE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DEEPGRADE_DB_URL", raising=False)
    store = CourseStore()
    job = store.enqueue(submit(store, numpy_chapter, "ada"), "ada")
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = _claim_now(store, job.id)
        assert claimed.attempt == attempt
        assert run_job(store, claimed, 60, sandbox=broken)
        state = store.job(job.id)
        assert state.score is None, "never a score"
        assert state.state == ("queued" if attempt < MAX_ATTEMPTS else "failed"), state
    assert "platform error" in state.message and "tried 3 times" in state.message


def _claim_now(store: CourseStore, job_id: int):
    """Claim a job that waits for its retry time (the test does not wait for the back-off)."""
    from sqlalchemy import update

    from hub.store import Job

    with store.session.begin() as db:
        db.execute(update(Job).where(Job.id == job_id).values(not_before=Job.enqueued_at))
    return store.claim("test-worker", 60, job_id=job_id)


class HangingSandbox(ProcessSandbox):
    """A backend that never answers (a wedged container engine, say)."""

    def run(self, argv, **kwargs):  # type: ignore[override]
        time.sleep(30)
        return SandboxRun(0, False, 30, STARTED + "\n", "", stdout_head=STARTED + "\n")


def test_a_grading_ends_at_its_deadline_and_nothing_late_is_recorded(tmp_path: Path,
                                                                     numpy_chapter: Assignment) -> None:
    started = time.monotonic()
    result = grade(numpy_chapter.source_notebook, numpy_chapter, workdir=tmp_path / "g", sandbox=HangingSandbox(),
                   record_gradebook=True, gradebook_root=tmp_path / "course", deadline=3)
    assert time.monotonic() - started < 10
    assert result["status"] == "platform-error" and "deadline" in result["message"], result
    assert json.loads((tmp_path / "g" / "result.json").read_text())["status"] == "platform-error"


# -- the command line ---------------------------------------------------------------------------
def test_cli_prints_student_text_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=200))
    text = "[/] [bold red]not markup[/bold red] [link=http://x]"
    cli.print_result({"assignment": "a", "student": "[/]", "seed": 0, "score": 0, "max_score": 1, "status": "graded",
                      "isolation": "bubblewrap", "message": text, "integrity": [], "problems": [],
                      "checks": [{"id": "test_x", "passed": False, "score": 0, "points": 1, "message": text,
                                  "measured": text, "expected": None, "hint": text}]})
    assert "[bold red]not markup[/bold red]" in out.getvalue()


# -- fuzzing the boundary -----------------------------------------------------------------------
JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=4), max_leaves=20)
ENTRY = st.fixed_dictionaries({"kind": st.sampled_from(["model", "history", "array", "value", "frame", "none",
                                                        "error", "weird"]),
                               "file": st.sampled_from(["x.keras", "x.npz", "x.history.json", "../../../etc/passwd",
                                                        "link", "pipe", "deep", ""])})
HOSTILE = st.sampled_from(["json", "bytes", "sparse-huge", "link-secret", "link-zero", "link-up", "pipe",
                           "folder", "deep", "deep-json"])
PLACES = st.sampled_from(["cells.json", "execution.json", "executed.ipynb", "artifacts/relu/manifest.json",
                          "artifacts/relu/x.keras", "artifacts/relu/x.npz", "artifacts/relu/x.history.json",
                          "artifacts/relu/link", "artifacts/relu/pipe", "artifacts/relu/deep"])


class HostileSandbox(ProcessSandbox):
    """Leaves a generated tree where the notebook's files would be, as any student's code can
    (the notebook itself is not run): everything downstream is the real pipeline."""

    def __init__(self, tree: list, secret: Path):
        super().__init__()
        self.tree, self.secret = tree, str(secret)

    def run(self, argv, *, workdir, **kwargs):  # type: ignore[override]
        workdir = Path(workdir)
        for place, what, payload in self.tree:
            path = workdir / place
            path.parent.mkdir(parents=True, exist_ok=True)
            if os.path.lexists(path) or path.is_dir():
                continue
            _plant(path, what, payload, self.secret)
        return SandboxRun(0, False, 0.1, STARTED + "\n", "", stdout_head=STARTED + "\n")


def _plant(path: Path, what: str, payload, secret: str) -> None:
    if what == "json":
        path.write_text(json.dumps(payload))
    elif what == "bytes":
        path.write_bytes(json.dumps(payload).encode()[:50] + b"\xff\x00{[")
    elif what == "sparse-huge":
        with open(path, "wb") as handle:
            handle.truncate(300 * 2**20)  # 300 MiB that cost no disk
    elif what == "link-secret":
        path.symlink_to(secret)
    elif what == "link-zero":
        path.symlink_to("/dev/zero")
    elif what == "link-up":
        path.symlink_to("../../..")
    elif what == "pipe":
        os.mkfifo(path)
    elif what == "folder":
        path.mkdir()
    elif what == "deep":
        (path / ("d/" * 400)).mkdir(parents=True)
    elif what == "deep-json":
        path.write_text("[" * 5000 + "]" * 5000)


@settings(max_examples=8, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(tree=st.lists(st.tuples(PLACES, HOSTILE, JSON), min_size=1, max_size=6),
       manifest=st.dictionaries(st.sampled_from(["relu_values", "x", "history"]), ENTRY, max_size=3))
def test_any_sandbox_output_ends_in_a_recorded_outcome_within_the_deadline(
        tmp_path_factory: pytest.TempPathFactory, numpy_chapter: Assignment, tree, manifest) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    secret = work / "secret.txt"
    secret.write_text(SECRET)
    sandbox = HostileSandbox([("artifacts/relu/manifest.json", "json", manifest), *tree], secret)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    box: dict = {}
    runner = threading.Thread(target=lambda: box.update(grade(numpy_chapter.source_notebook, numpy_chapter,
                                                              workdir=work / "g", sandbox=sandbox, deadline=120)),
                              daemon=True)
    started = time.monotonic()
    runner.start()
    runner.join(150)
    assert not runner.is_alive(), "the grading did not return within its deadline"
    assert time.monotonic() - started < 150
    result = box
    assert result["status"] in ("graded", "error", "platform-error"), result
    assert (work / "g" / "result.json").is_file() and (work / "g" / "feedback.html").is_file()
    written = (work / "g" / "result.json").read_text() + (work / "g" / "feedback.html").read_text()
    assert SECRET not in written, "nothing outside the work folder is ever read into what we write"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 512 * 1024  # KiB
    remove_tree(work)
