"""The Docker sandbox really isolates, enforces its limits and grades a real submission.

The engine is the session's private dockerd (``engine`` in ``tests/dockertools.py``, shared
through ``conftest.py``). No registry is reachable, so the image is a skeleton root made with
``docker import`` (``build_skeleton_image``); the host's system, interpreter and virtualenv are
bind-mounted read-only. If the engine cannot run a container here, the tests skip with the
engine's own words. The tests that only build command lines need no engine.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograders.assignment import Limits, repo_root
from autograders.docker_sandbox import DockerSandbox
from autograders.sandbox import file_size_exceeded, memory_exceeded, pids_exceeded

from .conftest import FIRST
from .dockertools import GPU_ERROR
from .test_sandbox import PROBE


@pytest.fixture
def sandbox(engine) -> DockerSandbox:
    host, image = engine
    return DockerSandbox(image=image, docker_host=host)


def _containers(sandbox: DockerSandbox) -> list[str]:
    out = subprocess.run(["docker", "ps", "--all", "--quiet"], env={**os.environ, "DOCKER_HOST": sandbox.docker_host},
                         capture_output=True, text=True, check=True)
    return out.stdout.split()




# -- the command line, no engine needed ----------------------------------------------------------

def _flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_wrap_asks_docker_for_every_isolation_and_limit(tmp_path: Path) -> None:
    readonly = tmp_path / "data"
    readonly.mkdir()
    limits = Limits(memory=512, pids=64, cpus=0.5)
    args = DockerSandbox(image="img:1", extra_args=["--label", "x=y"]).wrap(
        ["python", "-V"], workdir=tmp_path, readonly=[readonly, tmp_path / "missing"], env={"A": "1"},
        limits=limits)
    assert args[:2] == ["docker", "run"] and "--rm" not in args  # removed after docker inspect
    assert _flag(args, "--name").startswith("deepgrade-")
    assert _flag(args, "--network") == "none"
    assert _flag(args, "--memory") == _flag(args, "--memory-swap") == "512m"
    assert _flag(args, "--pids-limit") == "64" and _flag(args, "--cpus") == "0.5"
    assert "--read-only" in args and _flag(args, "--tmpfs") == "/tmp"
    assert f"fsize={1024 * 2**20}" in args and "core=0" in args
    assert _flag(args, "--cap-drop") == "ALL" and _flag(args, "--security-opt") == "no-new-privileges"
    assert _flag(args, "--user") == "65534:65534"  # root owns tmp_path: an unprivileged uid takes it over
    assert "--gpus" not in args
    mounts = [args[i + 1] for i, a in enumerate(args) if a == "--mount"]
    assert f"type=bind,source={tmp_path},target={tmp_path}" in mounts  # read-write, same path
    assert f"type=bind,source={readonly},target={readonly},readonly" in mounts
    assert not any("missing" in m for m in mounts)
    assert f"HOME={tmp_path}" in args and "A=1" in args
    assert args[args.index("img:1") - 2:args.index("img:1")] == ["--label", "x=y"]
    assert args[args.index("img:1") + 1:] == ["python", "-V"]
    gpu = DockerSandbox().wrap(["true"], workdir=tmp_path, readonly=[], env={}, limits=Limits(gpu=True))
    assert _flag(gpu, "--gpus") == "all"


def test_wrap_runs_as_the_owner_of_a_non_root_work_dir(tmp_path: Path) -> None:
    os.chown(tmp_path, 1234, 1234)
    args = DockerSandbox().wrap(["true"], workdir=tmp_path, readonly=[], env={})
    assert _flag(args, "--user") == "1234:1234"


# -- a real engine ---------------------------------------------------------------------------------

def test_docker_blocks_network_hides_files_and_keeps_the_root_read_only(sandbox, tmp_path: Path,
                                                                        listener: int) -> None:
    assert DockerSandbox.available(sandbox.image, docker_host=sandbox.docker_host)
    assert not DockerSandbox.available("deepgrade-no-such-image:0", docker_host=sandbox.docker_host)
    hidden = [str(repo_root() / "assignments"), str((repo_root().parent / "shared").resolve()), "/root/.ssh"]
    run = sandbox.run([sys.executable, "-c", PROBE, str(listener), *hidden], workdir=tmp_path,
                      readonly=[repo_root() / "autograders"], env={}, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "network: blocked" in run.stdout
    assert "assignments hidden" in run.stdout and "shared hidden" in run.stdout
    assert "/root/.ssh hidden" in run.stdout
    assert "/usr/evil.txt read-only" in run.stdout and "/evil.txt read-only" in run.stdout
    assert "uid 0" not in run.stdout  # an unprivileged user, not root
    assert (tmp_path / "written.txt").read_text() == "ok"
    assert (tmp_path / "written.txt").stat().st_uid == os.geteuid()  # the work dir is handed back
    assert run.exceeded == [] and _containers(sandbox) == []
    assert any("disk" in u for u in run.unenforced)


def test_memory_bomb_is_killed_and_recorded(sandbox, tmp_path: Path) -> None:
    # Like a notebook kernel: the child dies, the runner that started it lives on (for a second: the
    # cgroup's high-water mark is read while the container runs, and docker removes it when it stops).
    code = ("import subprocess, sys, time\n"
            "bomb = 'b = []\\nwhile True: b.append(bytearray(10**7))'\n"
            "print('child', subprocess.run([sys.executable, '-c', bomb]).returncode)\n"
            "time.sleep(1)\n")
    run = sandbox.run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=60,
                      limits=Limits(memory=200))
    assert "child -9" in run.stdout, run.stderr
    assert memory_exceeded(Limits(memory=200)) in run.exceeded, run.exceeded
    assert 100 < run.usage.get("memory_peak_mib", 0) <= 200


def test_fork_bomb_hits_the_pids_limit(sandbox, tmp_path: Path) -> None:
    code = ("import os, time\n"
            "for n in range(500):\n"
            "    try:\n"
            "        if os.fork() == 0:\n"
            "            time.sleep(3); os._exit(0)\n"
            "    except OSError as exc:\n"
            "        print('fork failed after', n, exc); break\n"
            "while True:\n"
            "    try: os.wait()\n"
            "    except ChildProcessError: break\n")
    run = sandbox.run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=60,
                      limits=Limits(pids=32))
    assert "fork failed after" in run.stdout, run.stderr
    assert run.exceeded == [pids_exceeded(Limits(pids=32))], run.exceeded
    assert run.usage.get("pids_peak") == 32


def test_file_size_limit_stops_a_growing_file(sandbox, tmp_path: Path) -> None:
    code = ("import signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "f = open('big.bin', 'wb')\n"
            "try:\n    f.write(bytes(3 * 2**20)); f.flush()\nexcept OSError as exc:\n    print('write failed', exc)\n")
    sandbox.max_file_size = 1
    run = sandbox.run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=60)
    assert "write failed" in run.stdout, run.stderr
    assert (tmp_path / "big.bin").stat().st_size == 2**20
    assert run.exceeded == [file_size_exceeded(1, ["big.bin"])], run.exceeded


def test_timeout_kills_and_removes_the_container(sandbox, tmp_path: Path) -> None:
    code = "import subprocess, time; subprocess.Popen(['sleep', '300']); time.sleep(300)"
    run = sandbox.run([sys.executable, "-c", code], workdir=tmp_path, readonly=[], env={}, timeout=3)
    assert run.timed_out and run.duration < 30
    assert _containers(sandbox) == []


def test_gpu_request_reaches_the_daemon(sandbox, tmp_path: Path) -> None:
    run = sandbox.run(["true"], workdir=tmp_path, readonly=[], env={}, timeout=60, limits=Limits(gpu=True))
    if run.returncode == 0:  # a daemon with a GPU runtime granted it
        return
    assert GPU_ERROR in run.stderr, run.stderr


def test_reference_solution_scores_full_marks_in_docker(sandbox, first_assignment, tmp_path: Path) -> None:
    from autograders.runner import grade

    result = grade(first_assignment.source_notebook, FIRST, workdir=tmp_path, sandbox=sandbox)
    assert result["isolation"] == "docker"
    assert (result["score"], result["max_score"]) == (15, 15), result.get("message")
    assert _containers(sandbox) == []
