"""Run the autograder checks in forks of a process that imported the heavy libraries once.

A check run in a fresh interpreter pays Python's start, ``import tensorflow`` and pytest's
start (about 8 s on this course's machines) before it checks anything. Instead, each
grading process starts one trusted :class:`CheckServer` that imports them and then forks
a child for every check run. A child serves exactly one run and exits, so nothing one run
loads or changes reaches the next. Only our code and the instructor's tests run here:
student code stays in the sandbox, and the child only reads the artifacts it exported.

Children see ``PYTHONHASHSEED=0`` (a hash seed is fixed when the server starts); the
grading seed reaches the checks through ``--deepgrade-seed`` as before.

The checker reads hostile files, so each child is confined too (:class:`CheckLimits`): it joins
a cgroup with a memory cap that its grading created, gets an RLIMIT_CPU, loses the network (a
fresh network namespace, where the grader may create one) and writes temporary files only to a
private folder that the grading removes afterwards. Besides pytest, a child can run any trusted
function (``call``): the feedback page is rendered that way, so that a page that would take
minutes is killed at its deadline like a check.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Not autograders.plugin: pytest must import (and assertion-rewrite) its plugins itself.
PRELOAD = ("numpy", "pandas", "sklearn", "matplotlib.pyplot", "keras", "tensorflow", "pytest", "nbconvert")
START_TIMEOUT = 120.0


class CheckRun:
    """What one check run left: its exit code (negative: killed by that signal) and output tail."""

    def __init__(self, returncode: int, output: str):
        self.returncode, self.output = returncode, output


@dataclass
class CheckLimits:
    """What confines one child: cgroup.procs files to join, CPU seconds, a private temp folder."""

    cgroups: list[str] = field(default_factory=list)
    cpu_seconds: int = 0
    tmp: str = ""
    tmp_mib: int = 0  # a tmpfs of this size at ``tmp`` (root only; otherwise a plain folder)
    isolate_network: bool = True

    def apply(self) -> None:
        """In the child, before it reads anything the student wrote."""
        for procs in self.cgroups:
            with open(procs, "w") as handle:
                handle.write(str(os.getpid()))
        if self.cpu_seconds:
            resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, self.cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if self.isolate_network or self.tmp_mib:
            _private_namespaces(self.isolate_network, self.tmp if self.tmp_mib else "", self.tmp_mib)
        if self.tmp:
            os.environ["TMPDIR"] = self.tmp
            tempfile.tempdir = self.tmp  # the module caches its folder: the server may have asked already


def _private_namespaces(network: bool, tmp: str, tmp_mib: int) -> None:
    """A fresh network namespace (no interface up: nothing the checks load reaches anything) and a
    mount namespace with a size-capped tmpfs at ``tmp`` (Keras unpacks every model it loads into a
    temporary folder), gone when the child exits. Needs CAP_SYS_ADMIN: without it the child keeps
    the network and a plain folder, and the grading records those limits as not enforced."""
    import ctypes

    clone_newns, clone_newnet = 0x00020000, 0x40000000
    ms_nosuid, ms_nodev, ms_rec, ms_private = 2, 4, 1 << 14, 1 << 18
    libc = ctypes.CDLL(None, use_errno=True)
    flags = (clone_newnet if network else 0) | (clone_newns if tmp else 0)
    if libc.unshare(flags) != 0 or not tmp:
        return
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) == 0:
        libc.mount(b"tmpfs", tmp.encode(), b"tmpfs", ms_nosuid | ms_nodev, f"size={tmp_mib}m,mode=0700".encode())


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

    def run(self, argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float,
            limits: CheckLimits | None = None) -> CheckRun:
        """``pytest argv`` in a fresh fork; raises ``subprocess.TimeoutExpired`` after ``timeout`` s."""
        return self.request({"argv": argv}, cwd, env, timeout, limits)

    def call(self, target: str, kwargs: dict[str, Any], *, cwd: Path, timeout: float,
             limits: CheckLimits | None = None) -> CheckRun:
        """``module:function(**kwargs)`` in a fresh fork (exit 0 when it returned), under the same
        limits and deadline as a check run."""
        return self.request({"call": target, "kwargs": kwargs}, cwd, {}, timeout, limits)

    def request(self, what: dict[str, Any], cwd: Path, env: dict[str, str], timeout: float,
                 limits: CheckLimits | None) -> CheckRun:
        request = make_request(what, cwd, env, limits)
        log = Path(request["log"])
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
                raise subprocess.TimeoutExpired(str(what), timeout) from None
        return CheckRun(-1 if code is None else code, _log_tail(log))

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        with contextlib.suppress(OSError):
            os.unlink(self.address)
            self.folder.rmdir()


def make_request(what: dict[str, Any], cwd: Path, env: dict[str, str], limits: CheckLimits | None) -> dict:
    return {**what, "cwd": str(cwd), "env": env, "log": str(Path(cwd) / "checker.log"),
            "limits": asdict(limits or CheckLimits(isolate_network=False))}


def run_without_server(what: dict[str, Any], *, cwd: Path, env: dict[str, str], timeout: float,
                       limits: CheckLimits | None = None) -> CheckRun:
    """The same request in a fresh interpreter (``DEEPGRADE_CHECK_SERVER=0``): slower, no shared state."""
    request = make_request(what, cwd, env, limits)
    full_env = {**os.environ, **env, "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-m", "autograders.checker", "--once", json.dumps(request)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          timeout=timeout, env=full_env, cwd=cwd)
    return CheckRun(proc.returncode, _log_tail(Path(request["log"])))


def _log_tail(log: Path) -> str:
    with contextlib.suppress(OSError), open(log, "rb") as handle:
        handle.seek(max(0, os.fstat(handle.fileno()).st_size - 5000))
        return handle.read().decode(errors="replace")
    return ""


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
    code = serve_request(request)
    conn.sendall(f"exit {code}\n".encode())
    return code


def serve_request(request: dict[str, Any]) -> int:
    """Run one request in this process: output to its log, confined, then pytest or the call."""
    os.chdir(request["cwd"])
    os.environ.update(request.get("env", {}))
    out = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    CheckLimits(**request.get("limits", {})).apply()
    if "call" in request:
        module, _, function = request["call"].partition(":")
        getattr(importlib.import_module(module), function)(**request["kwargs"])
        code = 0
    else:
        import pytest

        code = int(pytest.main(request["argv"]))
    sys.stdout.flush()
    sys.stderr.flush()
    return code


if __name__ == "__main__":
    if sys.argv[1] == "--once":  # DEEPGRADE_CHECK_SERVER=0: one request in a fresh interpreter
        sys.exit(serve_request(json.loads(sys.argv[2])))
    serve(sys.argv[1])
