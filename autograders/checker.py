"""Run the autograder checks in forks of a process that imported the heavy libraries once.

A check run in a fresh interpreter pays Python's start, ``import tensorflow`` and pytest's
start (about 8 s on this course's machines) before it checks anything. Instead, each
grading process starts one trusted :class:`CheckServer` that imports them and then forks
a child for every check run. A child serves exactly one run and exits, so nothing one run
loads or changes reaches the next. Only our code and the instructor's tests run here:
student code stays in the sandbox, and the child only reads the artifacts it exported.

Children see ``PYTHONHASHSEED=0`` (a hash seed is fixed when the server starts); the
grading seed reaches the checks through ``--deepgrade-seed`` as before.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Not autograders.plugin: pytest must import (and assertion-rewrite) its plugins itself.
PRELOAD = ("numpy", "pandas", "sklearn", "matplotlib.pyplot", "keras", "tensorflow", "pytest")
START_TIMEOUT = 120.0


class CheckRun:
    """What one check run left: its exit code (negative: killed by that signal) and output tail."""

    def __init__(self, returncode: int, output: str):
        self.returncode, self.output = returncode, output


class CheckServer:
    """One forking check server per grading process, started on first use, stopped at exit."""

    _lock = threading.Lock()
    _instance: CheckServer | None = None

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="deepgrade-checks-"))
        self.address = str(self.folder / "socket")
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
        self.process = subprocess.Popen([sys.executable, "-m", "autograders.checker", self.address],
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=env, start_new_session=True, text=True)
        ready = _read_line(self.process.stdout, START_TIMEOUT)
        if ready != "ready":
            self.stop()
            raise RuntimeError(f"the check server did not start (it said {ready!r})")

    @classmethod
    def shared(cls) -> CheckServer:
        with cls._lock:
            if cls._instance is None or cls._instance.process.poll() is not None:
                cls._instance = cls()
                atexit.register(cls._instance.stop)
            return cls._instance

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float) -> CheckRun:
        """``pytest argv`` in a fresh fork; raises ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        log = Path(cwd) / "checker.log"
        request = {"argv": argv, "cwd": str(cwd), "env": env, "log": str(log)}
        deadline = time.monotonic() + timeout
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(self.address)
            conn.sendall(json.dumps(request).encode() + b"\n")
            replies = conn.makefile("r")
            pid, code = None, None
            try:
                while code is None:
                    conn.settimeout(max(0.01, deadline - time.monotonic()))
                    line = replies.readline()
                    if not line:  # the child died without reporting (a crash or a kill)
                        break
                    word, _, value = line.strip().partition(" ")
                    if word == "pid":
                        pid = int(value)
                    elif word == "exit":
                        code = int(value)
            except TimeoutError:
                if pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(argv, timeout) from None
        output = log.read_text(errors="replace")[-5000:] if log.exists() else ""
        return CheckRun(-1 if code is None else code, output)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.address)
            self.folder.rmdir()


def _read_line(stream, timeout: float) -> str:
    """The first line ``stream`` prints, or "" when it prints none within ``timeout`` s."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    return box[0].strip() if box else ""


def serve(address: str) -> None:
    """The server: import once, then fork one child per request until killed or orphaned."""
    parent = os.getppid()
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(address)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener.settimeout(1.0)
    print("ready", flush=True)
    while os.getppid() == parent:  # a grader killed with SIGKILL must not leave its server behind
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        conn.setblocking(True)
        if os.fork() == 0:
            listener.close()
            code = 70
            try:
                code = _child(conn)
            finally:
                os._exit(code)
        conn.close()


def _child(conn: socket.socket) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    request = json.loads(conn.makefile("r").readline())
    conn.sendall(f"pid {os.getpid()}\n".encode())
    os.chdir(request["cwd"])
    os.environ.update(request["env"])
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    import pytest

    code = int(pytest.main(request["argv"]))
    sys.stdout.flush()
    sys.stderr.flush()
    conn.sendall(f"exit {code}\n".encode())
    return code


if __name__ == "__main__":
    serve(sys.argv[1])
