"""Where student code runs: one interface, several backends (like JupyterHub's Spawner).

A sandbox runs one command for one submission with a private writable work directory,
a read-only view of what the command needs, and a wall-clock limit. It is never reused.
``BubblewrapSandbox`` (the Linux default) adds no network, separate PID/IPC namespaces,
dropped capabilities and a whitelist of visible paths, so hidden tests and hidden data
simply do not exist inside. ``ProcessSandbox`` isolates nothing and says so in every result.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from autograders.assignment import Limits


@dataclass
class SandboxRun:
    returncode: int | None
    timed_out: bool
    duration: float
    stdout: str
    stderr: str
    exceeded: list[str] = field(default_factory=list)  # clear sentences, one per resource limit that was hit


class Sandbox(LoggingConfigurable):
    """Base class: subclasses build the argv that wraps the command."""

    isolation = Unicode("none", help="Short label recorded in every result.")
    development_only = Bool(False, help="True when results must be labelled as not isolated.")
    output_limit = Integer(1_000_000, help="Bytes of stdout/stderr kept from the sandboxed command.").tag(config=True)

    def wrap(self, argv: list[str], *, workdir: Path, readonly: list[Path], env: dict[str, str],
             limits: Limits | None = None) -> list[str]:
        raise NotImplementedError

    def run(self, argv: list[str], *, workdir: Path, readonly: list[Path], env: dict[str, str],
            timeout: float, limits: Limits | None = None) -> SandboxRun:
        """Run ``argv`` and kill its whole process group when ``timeout`` seconds pass.

        ``limits`` (memory, pids, output, cpus, gpu) are enforced as far as the backend can;
        each limit that was hit is reported in ``SandboxRun.exceeded``."""
        full = self.wrap(argv, workdir=workdir, readonly=readonly, env=env, limits=limits)
        start = time.monotonic()
        proc = subprocess.Popen(full, cwd=workdir, env=self.base_env(env, workdir), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        timed_out = False
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            out, err = proc.communicate()
        return SandboxRun(proc.returncode, timed_out, time.monotonic() - start,
                          out[-self.output_limit:].decode(errors="replace"),
                          err[-self.output_limit:].decode(errors="replace"))

    def base_env(self, env: dict[str, str], workdir: Path) -> dict[str, str]:
        keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        return {**keep, "HOME": str(workdir), "PYTHONNOUSERSITE": "1", **env}


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class ProcessSandbox(Sandbox):
    """Development only: a plain child process with a time limit and nothing else."""

    isolation = Unicode("process (development only: no isolation)")
    development_only = Bool(True)

    def wrap(self, argv, *, workdir, readonly, env, limits=None):
        return argv


class BubblewrapSandbox(Sandbox):
    """Linux namespaces through bubblewrap: no network, only whitelisted paths, no capabilities."""

    isolation = Unicode("bubblewrap")
    executable = Unicode("bwrap").tag(config=True)
    system_paths = List(Unicode(), ["/usr", "/etc", "/opt"],
                        help="Read-only system paths every sandbox sees.").tag(config=True)
    network = Bool(False, help="Keep the host network (student servers must reach the hub); "
                               "grading sandboxes never do.").tag(config=True)

    @classmethod
    def available(cls) -> bool:
        exe = shutil.which("bwrap")
        if not exe:
            return False
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True)
        return probe.returncode == 0

    def wrap(self, argv, *, workdir, readonly, env, limits=None):
        args = [self.executable, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox", "--cap-drop", "ALL"]
        if not self.network:
            args.append("--unshare-net")
        for path in self.system_paths:
            if Path(path).exists():
                args += ["--ro-bind", path, path]
        for name in ("bin", "sbin", "lib", "lib64", "lib32"):
            target = Path("/") / name
            if target.is_symlink():
                args += ["--symlink", os.readlink(target), str(target)]
            elif target.exists():
                args += ["--ro-bind", str(target), str(target)]
        for path in _python_paths() + [Path(p) for p in readonly]:
            args += ["--ro-bind", str(path), str(path)]
        args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp",
                 "--bind", str(workdir), str(workdir), "--chdir", str(workdir)]
        return [*args, "--", *argv]


def _python_paths() -> list[Path]:
    """The interpreter and the virtualenv, which may live under /root or /tmp."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    return sorted(p for p in paths if p.exists() and not any(str(p).startswith(s) for s in ("/usr/", "/etc/")))


def default_sandbox(name: str | None = None) -> Sandbox:
    """The sandbox named by ``name`` or ``DEEPGRADE_SANDBOX``; bubblewrap when it works."""
    name = name or os.environ.get("DEEPGRADE_SANDBOX", "auto")
    if name == "process":
        return ProcessSandbox()
    if name == "bubblewrap" or (name == "auto" and BubblewrapSandbox.available()):
        return BubblewrapSandbox()
    if name == "auto":
        return ProcessSandbox()
    raise ValueError(f"unknown sandbox {name!r}: use auto, bubblewrap or process")
