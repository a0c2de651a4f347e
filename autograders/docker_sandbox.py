"""The production sandbox: one Docker container per submission.

``DockerSandbox`` runs the command in a fresh, uniquely named container with no network,
memory (swap included), CPU and process limits, a read-only root with a private ``/tmp``,
every capability dropped, ``no-new-privileges``, a non-root user, and an optional GPU
device request. The work directory is bind-mounted read-write at the same path and each
read-only path at its own path, so the command line the runner builds works unchanged.

Two ways to provide the image:

* ``mount_host_system = True`` (the default): the image is only a skeleton root
  (:func:`build_skeleton_image` makes one with ``docker import``), and the host's ``/usr``,
  ``/etc``, ``/opt``, interpreter and virtualenv are bind-mounted read-only, exactly what
  ``BubblewrapSandbox`` shows. Hidden tests and hidden data are simply not mounted.
* ``mount_host_system = False``: the image carries the grader's Python environment at the
  same path as the worker (``hub/images/grader/Dockerfile``); only the work directory and
  the read-only paths are mounted.

Limit hits are found after the run: ``docker inspect`` reports an OOM kill (the container is
not started with ``--rm`` so that it can still be inspected; it is removed afterwards), and
while the container runs its pids cgroup is read for fork failures at ``--pids-limit``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import shutil
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

from traitlets import Bool, Integer, List, Unicode, default

from autograders.assignment import Limits
from autograders.sandbox import (
    MIB,
    Sandbox,
    SandboxRun,
    _files_at_least,
    _keyed,
    _kill_group,
    _python_paths,
    _read,
    _Tail,
    file_size_exceeded,
    hand_over,
    memory_exceeded,
    pids_exceeded,
)

DEFAULT_IMAGE = "deepgrade-grader:latest"
# Directories a skeleton root needs as mount points; Docker creates the others itself.
SKELETON_DIRS = ("dev", "proc", "sys", "tmp", "etc", "usr", "opt", "run", "var")


class DockerSandbox(Sandbox):
    """One container per submission, removed afterwards, killed with ``docker kill`` on timeout."""

    isolation = Unicode("docker")
    can_start = Bool(False)  # one container per run; warm pools fall back to run()
    image = Unicode(DEFAULT_IMAGE, help="Image every submission runs in.").tag(config=True)
    docker = Unicode("docker", help="The docker CLI.").tag(config=True)
    docker_host = Unicode("", help="DOCKER_HOST for the CLI (empty: the environment's or the default socket)."
                          ).tag(config=True)
    extra_args = List(Unicode(), [], help="More `docker run` options, placed before the image.").tag(config=True)
    mount_host_system = Bool(help="Bind-mount the host's system paths, interpreter and virtualenv "
                                   "read-only (the image is then only a skeleton root). Default: true, "
                                   "or DEEPGRADE_DOCKER_MOUNT_HOST_SYSTEM=0.").tag(config=True)
    image_paths = List(Unicode(), help="Folders the image carries at the same path as this process (e.g. "
                                       "/opt/deepgrade): read-only paths inside them are not bind-mounted. A "
                                       "worker in a container that drives the host's engine needs this, since "
                                       "that engine cannot see the worker's files. Default: "
                                       "DEEPGRADE_DOCKER_IMAGE_PATHS (separated by ':').").tag(config=True)
    system_paths = List(Unicode(), ["/usr", "/etc", "/opt"],
                        help="Host paths mounted read-only when mount_host_system is true.").tag(config=True)
    user = Unicode("", help="uid:gid inside the container. Empty: the owner of the work directory, or "
                            "sandbox_uid when root owns it (the work directory is then chowned to it "
                            "for the run and back afterwards).").tag(config=True)
    sandbox_uid = Integer(65534, help="Unprivileged uid (and gid) for work directories that root owns."
                          ).tag(config=True)
    init = Bool(False, help="Run docker-init as PID 1 so orphaned processes are reaped. Docker mounts it at "
                            "/sbin/docker-init, which fails in a skeleton image whose /sbin links into the "
                            "read-only /usr; use it with images that carry their own system.").tag(config=True)
    tmpfs_size = Unicode("", help="Size of the private /tmp (empty: Docker's default; it counts "
                                  "against the memory limit either way).").tag(config=True)
    max_file_size = Integer(1024, help="MiB: the largest file the command may write (--ulimit fsize); "
                                       "0: no limit.").tag(config=True)
    kill_grace = Integer(10, help="Seconds to wait for the CLI after `docker kill`.").tag(config=True)

    @default("mount_host_system")
    def _default_mount_host_system(self) -> bool:
        return os.environ.get("DEEPGRADE_DOCKER_MOUNT_HOST_SYSTEM", "1").strip().lower() not in ("0", "false", "no")

    @default("image_paths")
    def _default_image_paths(self) -> list[str]:
        return [p for p in os.environ.get("DEEPGRADE_DOCKER_IMAGE_PATHS", "").split(os.pathsep) if p]

    def _in_image(self, path: Path) -> bool:
        return any(path == Path(p) or Path(p) in path.parents for p in self.image_paths)

    # -- the engine ---------------------------------------------------------------------------
    @classmethod
    def available(cls, image: str | None = None, docker: str = "docker", docker_host: str = "") -> bool:
        """True when the docker CLI reaches a daemon and ``image`` exists there."""
        exe = shutil.which(docker)
        if not exe:
            return False
        env = _client_env(docker_host)
        try:
            ping = subprocess.run([exe, "version", "--format", "{{.Server.Version}}"], env=env,
                                  capture_output=True, timeout=20)
            if ping.returncode != 0:
                return False
            found = subprocess.run([exe, "image", "inspect", image or DEFAULT_IMAGE], env=env,
                                   capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return found.returncode == 0

    def _cli(self, *args: str, timeout: float = 30, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run([self.docker, *args], env=_client_env(self.docker_host), capture_output=True,
                              text=True, timeout=timeout, **kwargs)

    # -- the command line ---------------------------------------------------------------------
    def container_user(self, workdir: Path) -> tuple[int, int]:
        """The uid and gid the command runs as (see ``user``)."""
        if self.user:
            uid, _, gid = self.user.partition(":")
            return int(uid), int(gid or uid)
        st = Path(workdir).stat()
        if st.st_uid != 0:
            return st.st_uid, st.st_gid
        return self.sandbox_uid, self.sandbox_uid

    def wrap(self, argv, *, workdir, readonly, env, limits=None, name: str | None = None):
        workdir = Path(workdir)
        limits = limits or Limits()
        uid, gid = self.container_user(workdir)
        args = [self.docker, "run", "--name", name or _container_name(), "--network", "none",
                "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--ipc", "private", "--hostname", "sandbox", "--user", f"{uid}:{gid}",
                "--memory", f"{limits.memory}m", "--memory-swap", f"{limits.memory}m",
                "--pids-limit", str(limits.pids), "--cpus", _cpus(limits.cpus),
                "--tmpfs", "/tmp" + (f":size={self.tmpfs_size}" if self.tmpfs_size else ""),
                "--ulimit", "core=0", "--log-driver", "none", "--workdir", str(workdir)]
        if self.max_file_size:
            args += ["--ulimit", f"fsize={self.max_file_size * MIB}"]
        if self.init:
            args.append("--init")
        if limits.gpu:
            args += ["--gpus", "all"]
        mounts: list[tuple[Path, bool]] = []
        if self.mount_host_system:
            mounts += [(Path(p), True) for p in self.system_paths]
            # /bin, /lib... are either symlinks into /usr (then the skeleton image has them) or dirs.
            mounts += [(Path("/") / n, True) for n in ("bin", "sbin", "lib", "lib64", "lib32")
                       if not (Path("/") / n).is_symlink()]
            mounts += [(p, True) for p in _python_paths()]
        mounts += [(Path(p), True) for p in readonly if not self._in_image(Path(p))]
        mounts.append((workdir, False))
        for path, ro in mounts:
            if path.exists():
                args += ["--mount", _bind(path, ro)]
        for key, value in self.base_env(env, workdir).items():
            args += ["--env", f"{key}={value}"]
        return [*args, *self.extra_args, self.image, *argv]

    # -- running ------------------------------------------------------------------------------
    def run(self, argv, *, workdir, readonly, env, timeout, limits=None) -> SandboxRun:
        workdir = Path(workdir)
        limits = limits or Limits()
        name = _container_name()
        full = self.wrap(argv, workdir=workdir, readonly=readonly, env=env, limits=limits, name=name)
        uid, gid = self.container_user(workdir)
        owner = workdir.stat()
        handover = os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (uid, gid)
        if handover:
            hand_over(workdir, uid, gid)
        watch = _CgroupWatch(self, name)
        state: dict[str, str] = {}
        try:
            start = time.monotonic()
            proc = subprocess.Popen(full, cwd=workdir, env=_client_env(self.docker_host),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
            out, err = _Tail(proc.stdout, self.output_limit), _Tail(proc.stderr, self.output_limit)
            watch.start()
            timed_out = False
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                if proc.poll() is None:
                    # Killing the client does not stop the container: the daemon owns it.
                    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                        self._cli("kill", name, timeout=self.kill_grace + 20)
                    try:
                        proc.wait(timeout=self.kill_grace)
                    except subprocess.TimeoutExpired:
                        _kill_group(proc)
                        proc.wait()
                out.join(10)
                err.join(10)
                watch.stop()
            duration = time.monotonic() - start
            state = self._state(name)
        finally:
            watch.stop()
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                self._cli("rm", "--force", "--volumes", name, timeout=60)
            if handover:
                hand_over(workdir, owner.st_uid, owner.st_gid)
        run = SandboxRun(proc.returncode, timed_out, duration, out.text(), err.text(), stdout_head=out.head)
        run.exceeded = self._exceeded(limits, state, watch, run, workdir)
        run.unenforced = ["disk: not enforced by the Docker sandbox (the work directory is a bind mount "
                          "of the grading machine's disk)"]
        run.usage = dict(watch.usage)
        return run

    def _state(self, name: str) -> dict[str, str]:
        fmt = "{{.State.OOMKilled}} {{.State.ExitCode}}"
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            result = self._cli("inspect", "--format", fmt, name)
            if result.returncode == 0:
                oom, _, code = result.stdout.strip().partition(" ")
                return {"oom_killed": oom, "exit_code": code}
        return {}

    def _exceeded(self, limits: Limits, state: dict[str, str], watch: _CgroupWatch, run: SandboxRun,
                  workdir: Path) -> list[str]:
        exceeded = []
        if state.get("oom_killed") == "true" or watch.oom:
            exceeded.append(memory_exceeded(limits))
        if watch.pids_hit or (not watch.readable and _PIDS_ERRORS.search(run.stderr)):
            exceeded.append(pids_exceeded(limits))
        if self.max_file_size:
            full = _files_at_least(workdir, self.max_file_size * MIB, 50_000)
            if full:
                exceeded.append(file_size_exceeded(self.max_file_size, full))
        return exceeded


_PIDS_ERRORS = re.compile(r"can't start new thread|fork: (retry: )?Resource temporarily unavailable")


class _CgroupWatch:
    """Reads the running container's pids and memory cgroups (when the daemon is local).

    ``pids.events`` counts forks refused at ``--pids-limit`` (Docker reports nothing for that),
    and the peaks give ``SandboxRun.usage``. The counters live as long as the container, so
    they are read every ``interval`` seconds until it stops."""

    interval = 0.2

    def __init__(self, sandbox: DockerSandbox, name: str):
        self.sandbox, self.name = sandbox, name
        self.pids_hit = False
        self.oom = False
        self.readable = False
        self.usage: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        found = None
        while found is None and not self._stop.is_set():
            found = self._pid()
            if found is None:
                self._stop.wait(self.interval)
        if not found or not found[0]:
            return
        # None: a remote daemon, or the cgroups are not visible from here.
        pids, memory = (cgroup_folder(*found, controller) for controller in ("pids", "memory"))
        self.readable = pids is not None
        while pids is not None or memory is not None:
            self._read(pids, memory)
            if self._stop.wait(self.interval):
                return

    def _pid(self) -> tuple[int, str] | None:
        """(main process, container id) once it runs, pid 0 once it stopped, None before it starts."""
        with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
            result = self.sandbox._cli("inspect", "--format", "{{.State.Status}} {{.State.Pid}} {{.Id}}", self.name,
                                       timeout=10)
            status, pid, cid = [*result.stdout.split(), "", "", ""][:3]
            if result.returncode == 0 and status == "running":
                return int(pid), cid
            if result.returncode == 0 and status in ("exited", "dead"):
                return 0, cid
        return None

    def _read(self, pids: Path | None, memory: Path | None) -> None:
        if pids is not None:
            if _keyed(pids / "pids.events").get("max", 0) > 0:
                self.pids_hit = True
            for name in ("pids.peak", "pids.current"):
                with contextlib.suppress(OSError, ValueError):
                    self.usage["pids_peak"] = max(self.usage.get("pids_peak", 0), int(_read(pids / name)))
        if memory is not None:
            v2 = (memory / "memory.events").exists()
            events = _keyed(memory / ("memory.events" if v2 else "memory.oom_control"))
            if events.get("oom_kill", 0) > 0:
                self.oom = True
            with contextlib.suppress(OSError, ValueError):
                peak = int(_read(memory / ("memory.peak" if v2 else "memory.max_usage_in_bytes")))
                self.usage["memory_peak_mib"] = max(self.usage.get("memory_peak_mib", 0), round(peak / MIB, 1))


def cgroup_folder(pid: int, container_id: str, controller: str) -> Path | None:
    """A container's cgroup folder for ``controller`` (cgroup v1 or v2), if this host can read it.

    The path must name the container, so a process with the same pid on another host's
    daemon is never mistaken for it."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return None
    if not container_id or not any(container_id in line for line in lines):
        return None
    root = Path("/sys/fs/cgroup")
    probe = f"{controller}.events" if controller == "pids" else f"{controller}.max_usage_in_bytes"
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            candidate = root / controller / path.lstrip("/")
            if (candidate / probe).exists():
                return candidate
    for line in lines:
        if line.startswith("0::"):
            candidate = root / line[3:].lstrip("/")
            if (candidate / f"{controller}.events").exists():
                return candidate
    return None


def build_skeleton_image(tag: str = DEFAULT_IMAGE, *, docker: str = "docker", docker_host: str = "") -> str:
    """``docker import`` an empty root (mount points and the host's /bin, /lib symlinks) as ``tag``.

    It is the image for ``mount_host_system = True``: everything the command runs comes
    from read-only bind mounts of the host. Returns the image id."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in SKELETON_DIRS:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name in ("bin", "sbin", "lib", "lib64", "lib32"):
            host = Path("/") / name
            if host.is_symlink():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(host)
                tar.addfile(info)
    result = subprocess.run([docker, "import", "--message", "deepgrade skeleton root", "-", tag],
                            input=buf.getvalue(), env=_client_env(docker_host), capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"docker import failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def _client_env(docker_host: str) -> dict[str, str]:
    env = dict(os.environ)
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    return env


def _container_name() -> str:
    return f"deepgrade-{uuid.uuid4().hex[:16]}"


def _cpus(cpus: float) -> str:
    cores = os.cpu_count() or 1
    return f"{min(max(cpus, 0.01), cores):g}"


def _bind(path: Path, readonly: bool) -> str:
    """A ``--mount`` value; it is CSV, so quote paths with commas or quotes."""
    fields = ["type=bind", f"source={path}", f"target={path}"] + (["readonly"] if readonly else [])
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()
