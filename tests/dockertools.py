"""One private Docker engine for the whole test session, and helpers to talk to it.

The engine is set up here, not assumed: ``scripts/ensure-docker.sh`` installs Debian's
docker.io when ``dockerd`` is missing, and a private ``dockerd --storage-driver=vfs`` (own
data root, exec root, pidfile and socket under a temporary folder) runs for the session.
No registry is reachable, so images are skeleton roots made with ``docker import``
(``build_skeleton_image``); the host's system, interpreter and virtualenv are bind-mounted
read-only. If the engine cannot run a container here, the tests skip with the engine's own
words.

The daemon runs with ``--debug`` so that its log holds the body of every API request: the
Docker-mode hub tests read the device requests DockerSpawner sent from there, since a
container whose start failed is removed before anyone could inspect it.

``tests/conftest.py`` imports the fixture, so every test module shares the same daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from autograders.assignment import repo_root
from autograders.docker_sandbox import build_skeleton_image

IMAGE = "deepgrade-grader:test"
GPU_ERROR = 'could not select device driver "" with capabilities: [[gpu]]'


@dataclass(frozen=True)
class Engine:
    """A running private dockerd; unpacks as ``host, image`` (the skeleton grader image)."""

    host: str
    image: str
    root: Path

    def __iter__(self) -> Iterator[str]:
        return iter((self.host, self.image))

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "DOCKER_HOST": self.host}

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def docker(self, *args: str, input: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        """The docker CLI against this daemon; never raises on a non-zero exit."""
        return subprocess.run(["docker", *args], env=self.env, input=input, capture_output=True,
                              timeout=timeout)

    def inspect(self, name: str) -> dict | None:
        """``docker inspect`` of a container, or None when the daemon does not know it."""
        result = self.docker("container", "inspect", name)
        return json.loads(result.stdout)[0] if result.returncode == 0 else None

    def requests_logged(self, path: str) -> list[tuple[str, dict]]:
        """(URL, JSON body) of each API request to ``path`` (e.g. ``/containers/create``) so far."""
        found, calling = [], ""
        for line in self.log.read_text(errors="replace").splitlines():
            if 'msg="Calling POST ' in line:
                url = line.split('msg="Calling POST ', 1)[1].rsplit('"', 1)[0]
                calling = url if path in url else ""
            elif calling and 'msg="form data: ' in line:
                quoted = line.split('msg="form data: ', 1)[1].rsplit('"', 1)[0]
                with contextlib.suppress(ValueError):  # logrus quotes the body like a JSON string
                    found.append((calling, json.loads(json.loads(f'"{quoted}"'))))
                calling = ""
        return found


def host_mounts(*paths: str) -> list[str]:
    """``--mount`` options that bind each path read-only at the same place (default /usr, /etc)."""
    return [arg for path in (paths or ("/usr", "/etc"))
            for arg in ("--mount", f"type=bind,source={path},target={path},readonly")]


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """A private dockerd that has run a container, or a skip with the reason."""
    install = subprocess.run(["bash", str(repo_root() / "scripts" / "ensure-docker.sh")],
                             capture_output=True, text=True)
    if install.returncode != 0:
        pytest.skip(f"no Docker engine: ensure-docker.sh said: {(install.stderr or install.stdout).strip()}")
    if not shutil.which("docker"):
        pytest.skip("no docker CLI on PATH")
    root = Path(tempfile.mkdtemp(prefix="dgd-"))  # short: unix socket paths are limited to 107 bytes
    host = f"unix://{root}/docker.sock"
    log = (root / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        ["dockerd", "--debug", "--storage-driver=vfs", f"--data-root={root}/data", f"--exec-root={root}/exec",
         f"--pidfile={root}/docker.pid", f"--host={host}", "--iptables=false", "--ip6tables=false",
         "--bridge=none"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    engine = Engine(host, IMAGE, root)
    try:
        deadline = time.monotonic() + 60
        while engine.docker("version").returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                tail = engine.log.read_text().strip().splitlines()[-5:]
                pytest.skip("dockerd did not start: " + " | ".join(tail))
            time.sleep(0.5)
        build_skeleton_image(IMAGE, docker_host=host)
        probe = engine.docker("run", "--rm", "--network", "none", *host_mounts(), IMAGE, "true")
        if probe.returncode != 0:
            pytest.skip(f"the Docker engine cannot run a container here: {probe.stderr.decode().strip()}")
        yield engine
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        shutil.rmtree(root, ignore_errors=True)
