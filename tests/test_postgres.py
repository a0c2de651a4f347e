"""The course store and nbgrader's gradebook on a real PostgreSQL server, as several grading
workers on different machines (or pods) share them: two worker processes with nothing on
disk in common grade submissions from one job table into one gradebook.

The server is a private cluster of Debian's ``postgresql`` binaries (installed by
``scripts/ensure-system-packages.sh test``), started for this module's session.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import pytest
from sqlalchemy import select

from autograders.assignment import Assignment, repo_root
from autograders.gradebook import record
from hub.policy import HubSettings, prepare_courses
from hub.queue import DatabaseQueue
from hub.store import CourseStore, Job
from tests.hubtools import free_port_block

NUMPY_CHAPTER = "dl-python/01-basics-with-numpy"
PASSWORD = "deepgrade-test-pw"


def _bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin/ (Debian keeps one per major version)."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    return Path(max(found, key=lambda p: int(Path(p).parts[4]))).parent if found else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port; yields its URL up to the host part
    (``postgresql://deepgrade:...@127.0.0.1:PORT``) for a role that may create databases."""
    bindir = _bindir()
    if bindir is None:
        subprocess.run([str(repo_root() / "scripts" / "ensure-system-packages.sh"), "test"], check=False)
        bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL's server binaries are not installed and could not be installed")
    # the server refuses to run as root: the cluster belongs to the postgres user
    run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="deepgrade-pg-"))
    (base / "pwfile").write_text(PASSWORD)
    if run_as:
        for path in (base, base / "pwfile"):
            shutil.chown(path, "postgres", "postgres")
    data, port = base / "data", free_port_block(1)
    subprocess.run([*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--no-sync",
                    "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={base / 'pwfile'}"],
                   check=True, capture_output=True)
    options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off")
    started = subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "log"), "-w",
                              "-t", "60", "-o", options, "start"], capture_output=True, text=True)
    if started.returncode != 0:
        log = (base / "log").read_text() if (base / "log").exists() else ""
        shutil.rmtree(base, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {started.stderr.strip()} {log[-500:]}")
    try:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=PASSWORD, dbname="postgres",
                             autocommit=True) as admin:
            admin.execute(f"CREATE ROLE deepgrade LOGIN CREATEDB PASSWORD '{PASSWORD}'")
            admin.execute("CREATE DATABASE deepgrade OWNER deepgrade")
        yield f"postgresql://deepgrade:{PASSWORD}@127.0.0.1:{port}"
    finally:
        subprocess.run([*run_as, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def chapter() -> Assignment:
    return Assignment.load(NUMPY_CHAPTER)


def archive(chapter: Assignment) -> bytes:
    """The reference notebook as a submission archive (it scores full marks)."""
    data = chapter.source_notebook.read_bytes()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{chapter.notebook_name}.ipynb")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def grade_points(chapter: Assignment) -> dict[str, float]:
    """Each autograded cell's points, as the trusted checker would report full marks."""
    notebook = nbformat.read(chapter.source_notebook, as_version=4)
    return {cell.metadata.nbgrader["grade_id"]: float(cell.metadata.nbgrader["points"])
            for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade")}


def start_worker(home: Path, log: Path, **env: str) -> subprocess.Popen:
    """``deepgrade worker`` as a separate pod would run it: its own DEEPGRADE_HOME scratch."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "autograders.cli", "worker", "--workers", "1"],
            env={**os.environ, "DEEPGRADE_HOME": str(home), "DEEPGRADE_QUEUE": "database", "PYTHONUNBUFFERED": "1",
                 "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **env},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(workers: dict[Path, subprocess.Popen], timeout: float = 120) -> None:
    """Until every worker says it is polling the job table."""
    deadline = time.monotonic() + timeout
    while not all("grading with" in log.read_text() for log in workers):
        for log, worker in workers.items():
            assert worker.poll() is None, f"a worker exited:\n{log.read_text()[-2000:]}"
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.3)


def test_two_workers_share_the_store_and_the_gradebook(postgres: str, chapter: Assignment, tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    env = {"DEEPGRADE_DB_URL": f"{postgres}/deepgrade", "DEEPGRADE_GRADEBOOK_URL": f"{postgres}/gradebook_{{course}}"}
    homes = [tmp_path / f"pod-{index}" for index in range(2)]
    workers = {tmp_path / f"pod-{index}.log": start_worker(home, tmp_path / f"pod-{index}.log", **env)
               for index, home in enumerate(homes)}
    store = CourseStore(env["DEEPGRADE_DB_URL"])
    students = ["ada", "grace", "alan"]
    try:
        wait_ready(workers)
        queue = DatabaseQueue(store=store, per_hour=0)
        jobs = [queue.submit(store.submit(chapter.course, chapter.name, student, archive(chapter)).id, student)
                for student in students]
        done = queue.wait([job.id for job in jobs], timeout=240)
    finally:
        for worker in workers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
    logs = "\n".join(log.read_text()[-1500:] for log in workers)
    assert [(j.state, j.score, j.max_score) for j in done] == [("graded", 12, 12)] * 3, logs
    with store.session() as db:
        graders = dict(db.execute(select(Job.id, Job.worker)).all())
    assert len(set(graders.values())) == 2, f"both workers graded: {graders}"

    gradebook = env["DEEPGRADE_GRADEBOOK_URL"].replace("{course}", chapter.course)
    with Gradebook(gradebook, course_id=chapter.course) as gb:
        assert {s: gb.find_submission(chapter.name, s).score for s in students} == dict.fromkeys(students, 12)
    for home in homes:  # nothing went through a file the pods would have had to share
        assert not list(home.rglob("gradebook.db")) and not list(home.rglob(".gradebook.lock"))


def test_newest_submission_wins_on_postgres(postgres: str, chapter: Assignment, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from nbgrader.api import Gradebook

    url = f"{postgres}/gradebook_{{course}}"
    monkeypatch.setenv("DEEPGRADE_GRADEBOOK_URL", url)
    full, zero = grade_points(chapter), dict.fromkeys(grade_points(chapter), 0.0)
    newer = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    root = tmp_path / "course"
    written = record(chapter, "barbara", full, root, newer)
    assert written and PASSWORD not in str(written), "the password never reaches a result"
    assert record(chapter, "barbara", zero, root, newer - timedelta(hours=1)) is None, "an older one is not written"

    with Gradebook(url.replace("{course}", chapter.course), course_id=chapter.course) as gb:
        submission = gb.find_submission(chapter.name, "barbara")
        assert (submission.score, submission.timestamp) == (12, newer.replace(tzinfo=None))
    assert record(chapter, "barbara", zero, root, newer + timedelta(seconds=1)), "a newer one is"
    with Gradebook(url.replace("{course}", chapter.course), course_id=chapter.course) as gb:
        assert gb.find_submission(chapter.name, "barbara").score == 0


def test_prepare_courses_points_the_formgrader_at_the_gradebook(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from traitlets.config import Config

    template = "postgresql://deepgrade:pw@postgres:5432/gradebook_{course}"
    monkeypatch.setenv("DEEPGRADE_GRADEBOOK_URL", template)
    settings = HubSettings(data=tmp_path)
    prepare_courses(settings)
    for course in settings.courses:
        config = Config()
        exec((settings.course_root(course) / "nbgrader_config.py").read_text(), {"get_config": lambda c=config: c})
        assert config.CourseDirectory.db_url == template.replace("{course}", course)

    monkeypatch.delenv("DEEPGRADE_GRADEBOOK_URL")
    prepare_courses(settings)
    assert "db_url" not in (settings.course_root(settings.courses[0]) / "nbgrader_config.py").read_text()
