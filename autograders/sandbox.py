"""Where student code runs: one interface, several backends (like JupyterHub's Spawner).

A sandbox runs one command for one submission with a private writable work directory,
a read-only view of what the command needs, and a wall-clock limit. It is never reused.
``BubblewrapSandbox`` (the Linux default) adds no network, separate PID/IPC namespaces,
dropped capabilities and a whitelist of visible paths, so hidden tests and hidden data
simply do not exist inside. Started as root, it runs the command as an unprivileged uid
(``run_as``, ``nobody`` by default) that owns only the work directory, so the student is never
root and cannot read the host's secrets. It also enforces the assignment's resource limits: a private
cgroup per run caps memory and processes (cgroup v1 or v2), ``prlimit`` caps the size of any
one file and forbids core dumps, and a watchdog caps what the run writes to its work
directory. ``ProcessSandbox`` isolates nothing and says so in every result.

Every run reports, in plain sentences, each limit it hit (``SandboxRun.exceeded``) and each
limit it could not enforce on this machine (``SandboxRun.unenforced``): a limit is never
ignored silently.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from autograders.assignment import Limits

MIB = 2**20
CONTROLLERS = ("memory", "pids", "cpu")  # the cgroup controllers a run gets its own group in
CPU_PERIOD_US = 100_000  # the CFS period: a quota of cpus x period per period


@dataclass
class SandboxRun:
    returncode: int | None
    timed_out: bool
    duration: float
    stdout: str
    stderr: str
    exceeded: list[str] = field(default_factory=list)  # clear sentences, one per resource limit that was hit
    unenforced: list[str] = field(default_factory=list)  # limits this backend could not enforce here, and why
    usage: dict[str, float] = field(default_factory=dict)  # measured peaks (memory_mib, pids) where known
    stdout_head: str = ""  # the first bytes of stdout, which a later flood cannot push out

    def printed_first(self, marker: str) -> bool:
        """Whether ``marker`` is among the first lines the command printed."""
        return marker in self.stdout_head.splitlines()


# The sentences a student reads when a limit stops their notebook (backends share them).
def memory_exceeded(limits: Limits) -> str:
    return (f"stopped: the notebook used more than {limits.memory} MiB of memory (the assignment's memory "
            "limit), so the biggest process (usually the kernel) was killed; cells after that did not run")


def pids_exceeded(limits: Limits) -> str:
    return (f"process limit reached: the notebook tried to start more than {limits.pids} processes or threads "
            "at once (the assignment's limit), so starting another one failed")


def disk_exceeded(limit_mib: int) -> str:
    return (f"stopped: the notebook wrote more than {limit_mib} MiB (or too many files) to its work directory "
            "(the disk limit), so it was killed")


def file_size_exceeded(limit_mib: int, names: list[str]) -> str:
    return (f"file size limit: {', '.join(names[:3])} reached {limit_mib} MiB, the largest file a notebook "
            "may write; writing stopped there")


def thread_env(limits: Limits) -> dict[str, str]:
    """Environment that sizes the thread pools of numerical libraries to the CPU limit.

    TensorFlow, OpenBLAS and MKL start about one thread per visible core in each pool (TF 2.21:
    about 4 per core), so on a 64-core grading machine a Keras notebook alone would pass the
    default limit of 256 processes and threads. Sized from ``limits.cpus``, the count no longer
    depends on the machine. One thread per core granted, no more: the course's small models gain
    nothing from a second thread under a 1-core quota, and its spinning costs CPU (on keras-intro/03,
    one thread grades in 53 s and 56 CPU-s, two in 59 s and 62 CPU-s)."""
    n = str(max(1, math.ceil(limits.cpus)))
    return {key: n for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                               "TF_NUM_INTEROP_THREADS", "TF_NUM_INTRAOP_THREADS")}


class Confinement:
    """Resource limits around one run: an argv prefix, a watchdog, and a report afterwards.

    The base class enforces nothing and says so; backends return subclasses from
    :meth:`Sandbox.confine`. Used as a context manager: setup on enter, cleanup on exit.
    """

    def __init__(self, limits: Limits, unenforced: list[str] | None = None):
        self.limits = limits
        self.prefix: list[str] = []
        self.unenforced: list[str] = list(unenforced or [])
        self.usage: dict[str, float] = {}

    def __enter__(self) -> Confinement:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def poll(self) -> str | None:
        """Called about once a second while the command runs: a sentence to kill it now, or None."""
        return None

    def stop(self) -> None:
        """Kill whatever the command left behind (after its process group was killed)."""

    def exceeded(self) -> list[str]:
        return []

    def close(self) -> None:
        """Release what setup created."""


class Sandbox(LoggingConfigurable):
    """Base class: subclasses build the argv that wraps the command (and may confine it)."""

    isolation = Unicode("none", help="Short label recorded in every result.")
    development_only = Bool(False, help="True when results must be labelled as not isolated.")
    output_limit = Integer(1_000_000, help="Bytes of stdout/stderr kept from the sandboxed command "
                                           "(the tail; the rest is read and dropped).").tag(config=True)

    def wrap(self, argv: list[str], *, workdir: Path, readonly: list[Path], env: dict[str, str],
             limits: Limits | None = None) -> list[str]:
        raise NotImplementedError

    def confine(self, limits: Limits, workdir: Path) -> Confinement:
        """The resource limits this backend can put around one run (the base class: none)."""
        return Confinement(limits, [f"{what}: not enforced by the '{self.isolation}' sandbox"
                                    for what in ("memory", "processes", "file size", "disk")])

    can_start = Bool(True, help="Whether start() can hold a command before its clock starts (warm pools "
                                "use it); False means every run goes through run().")

    def run(self, argv: list[str], *, workdir: Path, readonly: list[Path], env: dict[str, str],
            timeout: float, limits: Limits | None = None) -> SandboxRun:
        """Run ``argv`` and kill its whole process group when ``timeout`` seconds pass.

        ``limits`` (memory, pids, output, cpus, gpu; the defaults when None) are enforced as far
        as the backend can; each limit that was hit is reported in ``SandboxRun.exceeded`` and
        each one that could not be enforced in ``SandboxRun.unenforced``. Safe to call from
        several threads at once: nothing here is shared between runs."""
        return self.start(argv, workdir=workdir, readonly=readonly, env=env, limits=limits).wait(timeout)

    def start(self, argv: list[str], *, workdir: Path, readonly: list[Path], env: dict[str, str],
              limits: Limits | None = None, stdin: bool = False) -> Started:
        """Start ``argv`` confined, as :meth:`run` does, without waiting for it. With ``stdin`` the
        command gets a pipe it can wait on (see :meth:`Started.go`): a warm pool starts a sandbox
        ahead of its submission, and the time limit counts from :meth:`Started.wait` only."""
        limits = limits or Limits()
        workdir = Path(workdir)
        self.prepare(workdir)
        box = self.confine(limits, workdir).__enter__()
        try:
            full = box.prefix + self.wrap(argv, workdir=workdir, readonly=readonly, env=env, limits=limits)
            proc = subprocess.Popen(full, cwd=workdir, env=self.base_env(env, workdir),
                                    stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except BaseException:
            box.close()
            raise
        return Started(box, proc, self.output_limit)

    def prepare(self, workdir: Path) -> None:
        """Make ``workdir`` usable by the sandboxed command (the base class: nothing to do)."""

    def base_env(self, env: dict[str, str], workdir: Path) -> dict[str, str]:
        keep = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ") if k in os.environ}
        return {**keep, "HOME": str(workdir), "PYTHONNOUSERSITE": "1", **env}


class _Tail(threading.Thread):
    """Reads a pipe to its end and keeps only the first ``HEAD`` and the last ``limit`` bytes: a
    command that writes gigabytes to its stdout costs the grader no memory."""

    HEAD = 4096

    def __init__(self, pipe, limit: int):
        super().__init__(daemon=True)
        self.pipe, self.limit = pipe, max(0, limit)
        self.buffer = bytearray()
        self.first = bytearray()
        self.dropped = 0
        self.start()

    def run(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            fd = self.pipe.fileno()
            while chunk := os.read(fd, 1 << 16):
                if len(self.first) < self.HEAD:
                    self.first += chunk[:self.HEAD - len(self.first)]
                self.buffer += chunk
                if len(self.buffer) > 2 * self.limit + (1 << 16):
                    cut = len(self.buffer) - self.limit
                    self.dropped += cut
                    del self.buffer[:cut]
        with contextlib.suppress(OSError):
            self.pipe.close()

    def text(self) -> str:
        data = bytes(self.buffer[-self.limit:]) if self.limit else b""
        dropped = self.dropped + len(self.buffer) - len(data)
        prefix = f"[... {dropped} bytes dropped ...]\n" if dropped else ""
        return prefix + data.decode(errors="replace")

    @property
    def head(self) -> str:
        return bytes(self.first).decode(errors="replace")


class Started:
    """One confined command that is running: released by :meth:`go`, timed by :meth:`wait`."""

    def __init__(self, box: Confinement, proc: subprocess.Popen, output_limit: int):
        self.box, self.proc = box, proc
        self.out, self.err = _Tail(proc.stdout, output_limit), _Tail(proc.stderr, output_limit)
        self.finished = False

    def go(self, message: bytes = b"") -> None:
        """Send ``message`` on the command's stdin and close it (a warm command waits for this)."""
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(message)
                self.proc.stdin.close()

    def wait(self, timeout: float) -> SandboxRun:
        """Wait at most ``timeout`` seconds from now, then kill; what happened, in a ``SandboxRun``."""
        proc, box = self.proc, self.box
        start = time.monotonic()
        timed_out, killed_for = False, None
        try:
            while True:
                left = timeout - (time.monotonic() - start)
                if left <= 0:
                    timed_out = True
                    break
                try:
                    proc.wait(timeout=min(1.0, left))
                    break
                except subprocess.TimeoutExpired:
                    killed_for = box.poll()
                    if killed_for:
                        break
        finally:
            self._end()
        run = SandboxRun(proc.returncode, timed_out, time.monotonic() - start, self.out.text(), self.err.text(),
                         stdout_head=self.out.head)
        try:
            run.exceeded = ([killed_for] if killed_for else []) + box.exceeded()
        finally:  # whatever the report found (or failed to find), the run's cgroups go
            box.close()
        run.unenforced = list(box.unenforced)
        run.usage = dict(box.usage)
        return run

    def discard(self) -> None:
        """Kill a command that will never be used (a warm sandbox nobody took)."""
        self._end()
        self.box.close()

    def _end(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.proc.poll() is None:  # timed out, a watchdog fired, discarded, or we were interrupted
            _kill_group(self.proc)
        self.box.stop()
        self.proc.wait()
        self.out.join(10)
        self.err.join(10)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


class ProcessSandbox(Sandbox):
    """Development only: a plain child process with a time limit and nothing else."""

    isolation = Unicode("process (development only: no isolation)")
    development_only = Bool(True)

    def wrap(self, argv, *, workdir, readonly, env, limits=None):
        return argv


class BubblewrapSandbox(Sandbox):
    """Linux namespaces through bubblewrap: no network, only whitelisted paths, no capabilities,
    and the assignment's memory, process, file-size and disk limits."""

    isolation = Unicode("bubblewrap")
    executable = Unicode("bwrap").tag(config=True)
    system_paths = List(Unicode(), ["/usr", "/etc", "/opt"],
                        help="Read-only system paths every sandbox sees.").tag(config=True)
    network = Bool(False, help="Keep the host network (student servers must reach the hub); "
                               "grading sandboxes never do.").tag(config=True)
    cgroup_root = Unicode("/sys/fs/cgroup", help="Where the cgroup hierarchies are mounted.").tag(config=True)
    max_file_size = Integer(1024, help="MiB: the largest file the command may write (RLIMIT_FSIZE); "
                                       "0 for no limit.").tag(config=True)
    disk_limit = Integer(4096, help="MiB the command may write into its work directory in all; "
                                    "0 for no limit.").tag(config=True)
    max_files = Integer(50_000, help="Files and folders the work directory may hold.").tag(config=True)
    run_as = Integer(65534, help="uid the command runs as when the sandbox is started by root (never root: "
                                 "the student must not read the host's files); 0 keeps root, for "
                                 "debugging only.").tag(config=True)
    run_as_group = Integer(65534, help="gid that goes with run_as.").tag(config=True)

    @classmethod
    def available(cls) -> bool:
        exe = shutil.which("bwrap")
        if not exe:
            return False
        probe = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-net", "true"], capture_output=True)
        return probe.returncode == 0

    def wrap(self, argv, *, workdir, readonly, env, limits=None, writable=()):
        """bwrap's argv: ``/tmp`` first (so that nothing bound below it is hidden: a checkout, a venv
        or a work directory under /tmp works), then the read-only paths and the writable ones, and,
        when started as root, a drop to ``run_as`` before ``argv`` runs."""
        drop = self.drops_privileges
        args = [self.executable, "--die-with-parent", "--new-session", "--unshare-pid",
                "--unshare-ipc", "--unshare-uts", "--hostname", "sandbox", "--cap-drop", "ALL"]
        if drop:  # only setpriv, inside, uses them; it drops every capability with the uid
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        if not self.network:
            args.append("--unshare-net")
        args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]
        if limits is not None and limits.gpu:  # the NVIDIA device nodes, into the fresh /dev
            for device in gpu_devices():
                args += ["--dev-bind", str(device), str(device)]
        for name in ("bin", "sbin", "lib", "lib64", "lib32"):
            target = Path("/") / name
            if target.is_symlink():
                args += ["--symlink", os.readlink(target), str(target)]
        binds = [("--ro-bind", Path(p)) for p in self.system_paths if Path(p).exists()]
        binds += [("--ro-bind", Path("/") / n) for n in ("bin", "sbin", "lib", "lib64", "lib32")
                  if (Path("/") / n).exists() and not (Path("/") / n).is_symlink()]
        binds += [("--ro-bind", p) for p in _python_paths() + [Path(p) for p in readonly]]
        binds += [("--bind", Path(p)) for p in [*writable, workdir]]
        # bwrap makes missing parents as 0700 root folders, which the dropped uid could not cross
        made: set[Path] = {Path("/"), Path("/tmp")}
        for _, path in binds:
            for parent in reversed(path.parents):
                if parent not in made:
                    made.add(parent)
                    args += ["--perms", "0755", "--dir", str(parent)]
        for flag, path in binds:
            args += [flag, str(path), str(path)]
        args += ["--chdir", str(workdir), "--"]
        if drop:
            args += ["setpriv", f"--reuid={self.run_as}", f"--regid={self.run_as_group}", "--clear-groups",
                     "--no-new-privs", "--inh-caps=-all", "--bounding-set=-all", "--"]
        return [*args, *argv]

    @property
    def drops_privileges(self) -> bool:
        return os.geteuid() == 0 and self.run_as != 0

    def prepare(self, workdir: Path) -> None:
        if self.drops_privileges:
            hand_over(workdir, self.run_as, self.run_as_group)

    def confine(self, limits: Limits, workdir: Path) -> Confinement:
        box = CgroupConfinement(limits, workdir, root=Path(self.cgroup_root), max_file_size=self.max_file_size,
                                disk_limit=self.disk_limit, max_files=self.max_files)
        if limits.gpu and not gpu_devices():
            box.unenforced.append("gpu: this grading machine has no NVIDIA device (/dev/nvidia*), so the "
                                  "notebook ran on the CPU")
        return box


class CgroupConfinement(Confinement):
    """A private cgroup per run, below the grader's own (v1: one per controller; v2: one folder).

    The command enters it before anything else runs, through ``sh -c 'echo $$ > cgroup.procs;
    exec "$@"'`` (no ``preexec_fn``, so threads may start runs concurrently); ``prlimit`` then
    sets RLIMIT_FSIZE (a file may not grow past ``max_file_size``) and RLIMIT_CORE (no core dumps).
    The ``cpu`` controller's quota (CFS bandwidth) holds the run to ``limits.cpus`` cores, so a
    submission's time does not depend on how many others grade beside it. Where a controller
    cannot be used (not root, not mounted, not delegated), the limit is listed in ``unenforced``
    with the reason, and RLIMIT_NPROC stands in for pids when it binds.
    """

    def __init__(self, limits: Limits, workdir: Path, *, root: Path = Path("/sys/fs/cgroup"),
                 max_file_size: int = 1024, disk_limit: int = 4096, max_files: int = 50_000):
        super().__init__(limits)
        self.workdir, self.root = Path(workdir), Path(root)
        self.max_file_size, self.disk_limit, self.max_files = max_file_size, disk_limit, max_files
        self.name = f"deepgrade-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.groups: dict[str, Path] = {}  # controller -> the run's cgroup folder
        self.v2: set[str] = set()          # controllers that live in a cgroup2 folder
        self.created: list[Path] = []
        self.pids_peak = 0
        self._next_disk_check = 0.0

    # -- setup --------------------------------------------------------------------------------
    def __enter__(self) -> CgroupConfinement:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _setup(self) -> None:
        where = _own_cgroups(self.root)
        for controller in CONTROLLERS:
            problem = self._create(controller, where.get(controller))
            if problem:
                self.unenforced.append(problem)
        enter = " && ".join(f"echo $$ > {shlex.quote(str(p / 'cgroup.procs'))}"
                            for p in dict.fromkeys(self.groups.values()))
        script = ((f"{{ {enter}; }} || {{ echo 'deepgrade: could not enter the run cgroup' >&2; exit 125; }}; "
                   if enter else "") + 'exec "$@"')
        rlimits = ["--core=0"]
        if self.max_file_size:
            rlimits.append(f"--fsize={self.max_file_size * MIB}")
        if "pids" not in self.groups and os.geteuid() != 0:
            rlimits.append(f"--nproc={self.limits.pids}")
            self.unenforced.append(f"processes: approximated by RLIMIT_NPROC={self.limits.pids}, which counts every "
                                   "process of this user on the machine, not only this notebook's")
        prlimit = shutil.which("prlimit")
        if prlimit:
            self.prefix = ["sh", "-c", script, "deepgrade-sandbox", prlimit, *rlimits, "--"]
        else:
            self.prefix = ["sh", "-c", script, "deepgrade-sandbox"]
            self.unenforced.append("file size: not enforced (prlimit from util-linux is not installed)")
        if not self.disk_limit:
            self.unenforced.append("disk: no limit on what the notebook writes to its work directory")

    def _create(self, controller: str, parent: tuple[Path, bool] | None) -> str | None:
        what = {"memory": "memory", "pids": "processes", "cpu": "cpus"}[controller]
        if parent is None:
            return (f"{what}: not enforced (no writable '{controller}' cgroup controller here)"
                    + ("; RLIMIT_NPROC does not bind root" if controller == "pids" and os.geteuid() == 0 else ""))
        folder, v2 = parent
        try:
            if v2:  # one folder holds every v2 controller
                _enable_v2(folder, controller)
                self.v2.add(controller)
            target = folder / self.name
            if target not in self.created:
                target.mkdir()
                self.created.append(target)
            if controller == "memory":
                limit = str(self.limits.memory * MIB)
                _write(target / ("memory.max" if v2 else "memory.limit_in_bytes"), limit)
                swap = target / ("memory.swap.max" if v2 else "memory.memsw.limit_in_bytes")
                if swap.exists():  # swap may not stretch the limit
                    _write(swap, "0" if v2 else limit)
            elif controller == "cpu":
                quota = max(1000, round(self.limits.cpus * CPU_PERIOD_US))
                if v2:
                    _write(target / "cpu.max", f"{quota} {CPU_PERIOD_US}")
                else:
                    _write(target / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    _write(target / "cpu.cfs_quota_us", str(quota))
            else:
                _write(target / "pids.max", str(self.limits.pids))
        except OSError as exc:
            return f"{what}: not enforced (could not set up a '{controller}' cgroup: {exc.strerror or exc})"
        self.groups[controller] = target
        return None

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the run's groups itself
        (a forked checker does, where a command gets :attr:`prefix`)."""
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.groups.values())]

    # -- while running ------------------------------------------------------------------------
    def poll(self) -> str | None:
        if "pids" in self.groups:
            with contextlib.suppress(OSError, ValueError):
                self.pids_peak = max(self.pids_peak, int(_read(self.groups["pids"] / "pids.current")))
        now = time.monotonic()
        if self.disk_limit and now >= self._next_disk_check:
            started = time.monotonic()
            size, files = _usage(self.workdir, self.max_files)
            # Walking a big tree costs time: check less often when it is slow.
            self._next_disk_check = now + max(2.0, 20 * (time.monotonic() - started))
            if size > self.disk_limit * MIB or files > self.max_files:
                return disk_exceeded(self.disk_limit)
        return None

    def stop(self) -> None:
        """Kill every process left in the run's cgroups (a fork bomb may have escaped the group kill)."""
        groups = list(dict.fromkeys(self.groups.values()))
        deadline = time.monotonic() + 10
        while groups and time.monotonic() < deadline:
            alive = False
            for folder in groups:
                kill = folder / "cgroup.kill"
                if kill.exists():
                    with contextlib.suppress(OSError):
                        _write(kill, "1")
                for pid in _procs(folder):
                    alive = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            if not alive:
                break
            time.sleep(0.05)

    # -- afterwards ---------------------------------------------------------------------------
    def exceeded(self) -> list[str]:
        found = []
        memory, pids = self.groups.get("memory"), self.groups.get("pids")
        if memory is not None:
            events = _keyed(memory / ("memory.events" if "memory" in self.v2 else "memory.oom_control"))
            if events.get("oom_kill", 0) > 0 or events.get("oom_group_kill", 0) > 0:
                found.append(memory_exceeded(self.limits))
            peak = memory / ("memory.peak" if "memory" in self.v2 else "memory.max_usage_in_bytes")
            with contextlib.suppress(OSError, ValueError):
                self.usage["memory_peak_mib"] = round(int(_read(peak)) / MIB, 1)
        if pids is not None:
            if _keyed(pids / "pids.events").get("max", 0) > 0:
                found.append(pids_exceeded(self.limits))
            with contextlib.suppress(OSError, ValueError):
                self.pids_peak = max(self.pids_peak, int(_read(pids / "pids.peak")))
            if self.pids_peak:
                self.usage["pids_peak"] = self.pids_peak
        if self.max_file_size:
            full = _files_at_least(self.workdir, self.max_file_size * MIB, self.max_files)
            if full:
                found.append(file_size_exceeded(self.max_file_size, full))
        return found

    def close(self) -> None:
        for folder in reversed(self.created):
            for _ in range(100):  # killed processes leave the cgroup once they are reaped
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)
            else:
                self.usage["cgroup_left_behind"] = 1
        self.created.clear()


def _own_cgroups(root: Path) -> dict[str, tuple[Path, bool]]:
    """Per controller (memory, pids, cpu): this process's cgroup folder, and whether it is cgroup v2."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return {}
    where: dict[str, tuple[Path, bool]] = {}
    hierarchies: dict[str, str] = {}  # controller -> its path in /proc/self/cgroup; "" key is v2
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            hierarchies[name] = path
    v2_folder = None
    for line in mounts:
        fields = line.split()
        if " - " not in line:
            continue
        post = line.split(" - ", 1)[1].split()
        fstype, options = post[0], post[2].split(",") if len(post) > 2 else []
        mount_root, mountpoint = fields[3], Path(fields[4])
        if not mountpoint.is_relative_to(root):
            continue
        if fstype == "cgroup":
            for controller in CONTROLLERS:
                if controller in options and controller in hierarchies:
                    folder = mountpoint / _relative(hierarchies[controller], mount_root)
                    if folder.is_dir():
                        where[controller] = (folder, False)
        elif fstype == "cgroup2" and "" in hierarchies:
            folder = mountpoint / _relative(hierarchies[""], mount_root)
            if folder.is_dir():
                v2_folder = folder
    if v2_folder is not None:
        with contextlib.suppress(OSError):
            available = _read(v2_folder / "cgroup.controllers").split()
            for controller in CONTROLLERS:
                if controller in available and controller not in where:
                    where[controller] = (v2_folder, True)
    return where


def _relative(path: str, mount_root: str) -> str:
    rel = os.path.relpath(path, mount_root) if mount_root != "/" else path.lstrip("/")
    return "" if rel in (".", "") else rel


def _enable_v2(folder: Path, controller: str) -> None:
    enabled = _read(folder / "cgroup.subtree_control").split()
    if controller not in enabled:
        # Fails (EBUSY) when the grader's own cgroup holds processes: run the grader in a
        # delegated cgroup of its own (systemd: Delegate=yes) for v2 limits to work.
        _write(folder / "cgroup.subtree_control", f"+{controller}")


def _read(path: Path) -> str:
    return path.read_text().strip()


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _keyed(path: Path) -> dict[str, int]:
    out = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            with contextlib.suppress(ValueError):
                out[key] = int(value)
    return out


def _procs(folder: Path) -> list[int]:
    with contextlib.suppress(OSError, ValueError):
        return [int(p) for p in (folder / "cgroup.procs").read_text().split()]
    return []


def _usage(root: Path, max_files: int) -> tuple[int, int]:
    """Bytes on disk and entries under ``root``, links not followed. GNU du walks by file
    descriptor, so a tree deeper than PATH_MAX is counted too (a Python walk would stop there,
    or recurse until it crashed); ``max_files`` is kept for the signature's sake."""
    return _du(root, "-B1"), _du(root, "--inodes")


def _du(root: Path, unit: str) -> int:
    out = subprocess.run(["du", "-s", "-x", unit, "--", str(root)], capture_output=True, text=True, check=False)
    with contextlib.suppress(ValueError, IndexError):
        return int(out.stdout.split()[0])
    return 0


def _files_at_least(root: Path, size: int, max_files: int) -> list[str]:
    """Regular files of at least ``size`` bytes under ``root`` (at any depth; links not followed)."""
    out = subprocess.run(["find", str(root), "-xdev", "-type", "f", "-size", f"+{max(0, size - 1)}c",
                          "-printf", "%P\\n"], capture_output=True, text=True, errors="replace", check=False)
    return out.stdout.splitlines()[:max_files]


def hand_over(root: Path, uid: int = 65534, gid: int = 65534) -> None:
    """Give ``root`` and everything in it to ``uid`` (never following a link), so that a
    sandboxed command running as that uid can write there and nowhere else."""
    subprocess.run(["chown", "-R", "-P", "-h", f"{uid}:{gid}", "--", str(root)], check=False,
                   stdout=subprocess.DEVNULL)
    os.chmod(root, 0o711)  # bwrap enters it before the uid drops, with no capability to bypass modes


def remove_tree(path: Path) -> None:
    """Remove a folder the sandbox wrote, however deep or strange (GNU rm walks by file descriptor,
    where Python's rmtree recurses and gives up past a few hundred levels)."""
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def gpu_devices() -> list[Path]:
    """The NVIDIA device nodes a GPU notebook needs (the GPUs, nvidiactl, nvidia-uvm)."""
    return sorted(Path("/dev").glob("nvidia*"))


def _python_paths() -> list[Path]:
    """The interpreter and the virtualenv, which may live under /root or /tmp."""
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix)}
    return sorted(p for p in paths if p.exists() and not any(str(p).startswith(s) for s in ("/usr/", "/etc/")))


def default_sandbox(name: str | None = None) -> Sandbox:
    """The sandbox named by ``name`` or ``DEEPGRADE_SANDBOX`` (``auto``, ``bubblewrap``, ``docker``
    with ``DEEPGRADE_DOCKER_IMAGE``, or ``process``); ``auto`` is bubblewrap when it works."""
    name = name or os.environ.get("DEEPGRADE_SANDBOX", "auto")
    if name == "process":
        return ProcessSandbox()
    if name == "bubblewrap" or (name == "auto" and BubblewrapSandbox.available()):
        return BubblewrapSandbox()
    if name == "auto":
        return ProcessSandbox()
    if name == "docker":  # imported lazily: the Docker backend builds on this module
        from autograders.docker_sandbox import DEFAULT_IMAGE, DockerSandbox

        return DockerSandbox(image=os.environ.get("DEEPGRADE_DOCKER_IMAGE", DEFAULT_IMAGE))
    raise ValueError(f"unknown sandbox {name!r}: use auto, bubblewrap, docker or process")
