"""Start a real deepgrade hub for tests, and talk to it the way users do: REST and kernels."""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "correct-horse-battery"


def free_port_block(size: int) -> int:
    """First port of ``size`` consecutive free ports, below the kernel's ephemeral range.

    A port the kernel handed out for port 0 can be handed out again to any process's next outgoing
    connection or kernel before our hub binds it; ports below the ephemeral range are never handed out.
    """
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, low - size)
        if all(_free(base + i) for i in range(size)):
            return base
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Hub:
    """A running ``deepgrade hub`` process with its own data folder and ports."""

    data: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log: Path | None = None
    repo: Path = REPO  # the checkout the hub runs from

    @classmethod
    def create(cls, data: Path, repo: Path = REPO) -> Hub:
        base = free_port_block(12)
        env = {**os.environ, "DEEPGRADE_HOME": str(data), "DEEPGRADE_HUB_PORT": str(base),
               "DEEPGRADE_HUB_API_PORT": str(base + 1), "DEEPGRADE_PROXY_API_PORT": str(base + 2),
               "DEEPGRADE_SERVICE_PORT": str(base + 3),
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
        from datasets.registry import MIRROR_ENV, mirror_dir

        if repo != REPO and mirror_dir():  # the course data mirror lies beside this checkout, not the copy
            env.setdefault(MIRROR_ENV, str(mirror_dir()))
        return cls(data=data, env=env, repo=repo)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['DEEPGRADE_HUB_PORT']}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "autograders.cli", *args], env=self.env, cwd=self.repo,
                              capture_output=True, text=True, check=check, timeout=900)

    def start(self, timeout: float = 120) -> None:
        self.log = self.data / "hub.log"
        with open(self.log, "a") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "autograders.cli", "hub"], env=self.env,
                                            cwd=self.repo, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"hub exited:\n{self.log.read_text()[-3000:]}"
            try:
                if requests.get(f"{self.url}/services/exchange/api/courses", timeout=2).status_code == 403:
                    return  # the proxy routes to the hub and to the exchange service
            except requests.RequestException:
                pass
            time.sleep(1)
        raise TimeoutError(f"hub did not come up:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> int:
        """Ctrl-C, as a person would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            return self.process.wait(timeout=60)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)

    def login(self, username: str, password: str = PASSWORD) -> requests.Session:
        """Sign in through the login form, as a browser does; returns the cookie session."""
        browser = requests.Session()
        browser.get(f"{self.url}/hub/login", timeout=30)
        xsrf = browser.cookies.get("_xsrf", "")
        r = browser.post(f"{self.url}/hub/login?next=", timeout=60, allow_redirects=False,
                         data={"username": username, "password": password, "_xsrf": xsrf})
        if r.status_code != 302:
            raise PermissionError(f"sign-in of {username} refused ({r.status_code})")
        browser.headers["X-XSRFToken"] = browser.cookies.get("_xsrf", path="/hub/") or xsrf  # renewed at sign-in
        return browser

    def token(self, username: str, password: str = PASSWORD) -> str:
        """An API token for ``username``: sign in, then ask the hub for a token like any client."""
        r = self.login(username, password).post(f"{self.url}/hub/api/users/{username}/tokens",
                                                json={"note": "tests"}, timeout=30)
        r.raise_for_status()
        return r.json()["token"]


def checkout_copy(dest: Path) -> Path:
    """This checkout's working tree (tracked and untracked files, not ignored ones) copied to
    ``dest``, for a hub that runs from elsewhere, under /tmp say, where a sandbox's fresh /tmp
    once hid the code. The proxy from npm is shared rather than installed again."""
    from hub.launcher import ensure_proxy

    ensure_proxy()
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    (dest / "node_modules").symlink_to(REPO / "node_modules")
    return dest


class Session:
    """One person's API session against the hub, with their token."""

    def __init__(self, hub: Hub, username: str, token: str):
        self.hub, self.username, self.token = hub, username, token
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 120)
        return self.http.request(method, self.hub.url + path, allow_redirects=False, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def start_server(self, timeout: float = 180) -> str:
        r = self.post(f"/hub/api/users/{self.username}/server")
        assert r.status_code in (201, 202, 400), r.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.get(f"/hub/api/users/{self.username}").json()
            server = model.get("servers", {}).get("", {})
            if server.get("ready"):
                return f"/user/{self.username}"
            time.sleep(1)
        raise TimeoutError(f"server of {self.username} did not start")

    def run_code(self, code: str, timeout: float = 180) -> str:
        """Start a kernel on the user's server and run ``code`` over the kernel websocket."""
        prefix = f"/user/{self.username}"
        kernel = self.post(f"{prefix}/api/kernels", json={"name": "python3"})
        assert kernel.status_code == 201, kernel.text
        kernel_id = kernel.json()["id"]
        try:
            return asyncio.run(_execute(self.hub.url.replace("http", "ws") + f"{prefix}/api/kernels/{kernel_id}/channels",
                                        self.token, code, timeout))
        finally:
            self.request("DELETE", f"{prefix}/api/kernels/{kernel_id}")


async def _execute(url: str, token: str, code: str, timeout: float) -> str:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    ws.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test", "session": msg_id,
                   "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    output: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = await asyncio.wait_for(ws.read_message(), timeout=deadline - time.monotonic())
        if raw is None:
            break
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            output.append(content["text"])
        elif kind == "error":
            output.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            break
    ws.close()
    return "".join(output)
