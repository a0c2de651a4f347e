"""The sandbox really isolates: no network, no view of hidden tests or data; and the
development-only process sandbox is honest about isolating nothing."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from autograders.assignment import repo_root
from autograders.sandbox import BubblewrapSandbox, ProcessSandbox, default_sandbox

PROBE = """
import socket, sys, os
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=3).close()
    print("network: open")
except OSError as exc:
    print("network: blocked", type(exc).__name__)
for path in sys.argv[2:]:
    print(path, "visible" if os.path.exists(path) else "hidden")
open("written.txt", "w").write("ok")
try:
    open("/usr/evil.txt", "w")
    print("system: writable")
except OSError:
    print("system: read-only")
"""


@pytest.fixture
def listener():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    yield server.getsockname()[1]
    server.close()


def _probe(sandbox, tmp_path: Path, port: int) -> str:
    hidden = [str(repo_root() / "assignments"), str((repo_root().parent / "shared").resolve()), "/root/.ssh"]
    run = sandbox.run([sys.executable, "-c", PROBE, str(port), *hidden], workdir=tmp_path, readonly=[],
                      env={}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "written.txt").read_text() == "ok"
    return run.stdout


def test_bubblewrap_blocks_network_and_hides_hidden_files(tmp_path: Path, listener: int) -> None:
    assert BubblewrapSandbox.available(), "bubblewrap must be installed (make test installs it)"
    out = _probe(BubblewrapSandbox(), tmp_path, listener)
    assert "network: blocked" in out
    assert "assignments hidden" in out
    assert "shared hidden" in out
    assert "system: read-only" in out


def test_process_sandbox_isolates_nothing_and_says_so(tmp_path: Path, listener: int) -> None:
    sandbox = ProcessSandbox()
    out = _probe(sandbox, tmp_path, listener)
    assert "network: open" in out  # the same probe that bubblewrap blocks gets through
    assert "assignments visible" in out
    assert sandbox.development_only and "development only" in sandbox.isolation


def test_wall_clock_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    run = BubblewrapSandbox().run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=3)
    assert run.timed_out and run.duration < 30


def test_default_sandbox_is_bubblewrap_here() -> None:
    assert default_sandbox().isolation == "bubblewrap"
    assert default_sandbox("process").development_only
