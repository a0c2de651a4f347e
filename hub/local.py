"""Local mode, the embedded default: local processes, SQLite, configurable-http-proxy from npm.

Each student's server is a local process inside bubblewrap (when available). It keeps
the network, so it can reach the hub, but it sees only the system, the Python
environment, the course code, the public datasets (read-only) and its own home:
other students' homes, the hub's database and the exchange's files are not there.
When the hub runs as root, the server runs as the sandbox's unprivileged uid, which owns
only that home: no student kernel is ever root.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Bool, Unicode

from autograders.assignment import repo_root
from autograders.sandbox import BubblewrapSandbox
from datasets import public_root
from hub.policy import CONFIG_DIR, HubSettings

PROXY = repo_root() / "node_modules" / ".bin" / "configurable-http-proxy"


class CourseSpawner(SimpleLocalProcessSpawner):
    """A student server as a local process with a home under the data directory."""

    home_dir_template = Unicode("").tag(config=True)
    isolate = Bool(True, help="Run the server inside bubblewrap when it is available").tag(config=True)
    exchange_url = Unicode("", help="the exchange service, as servers reach it").tag(config=True)

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env = super().user_env(env)
        env.update({
            "JUPYTER_CONFIG_PATH": os.pathsep.join([str(CONFIG_DIR / "student"), str(CONFIG_DIR / "common")]),
            "DEEPGRADE_PUBLIC_DATA": str(public_root()),
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONPATH": str(repo_root()),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DEEPGRADE_EXCHANGE_URL": self.exchange_url,
        })
        return env

    def sandbox(self) -> BubblewrapSandbox | None:
        return BubblewrapSandbox(network=True) if self.isolate and BubblewrapSandbox.available() else None

    def get_args(self) -> list[str]:
        args = super().get_args()
        sandbox = self.sandbox()
        if os.geteuid() == 0 and not (sandbox and sandbox.drops_privileges):  # unisolated, for development
            args.append("--allow-root")
        return args

    async def start(self) -> Any:
        home = Path(self.home_dir)
        home.mkdir(parents=True, exist_ok=True)
        sandbox = self.sandbox()
        if not sandbox:
            return await super().start()
        readonly = [repo_root() / "autograders", repo_root() / "datasets", repo_root() / "hub", public_root()]
        sandbox.prepare(home)  # the home belongs to the unprivileged uid the server runs as
        plain = list(self.cmd)
        self.cmd = sandbox.wrap(plain, workdir=home, readonly=readonly, env={})
        try:
            return await super().start()
        finally:  # wrapped afresh at every start, never twice
            self.cmd = plain


def configure(c: Any, settings: HubSettings) -> None:
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = settings.hub_api_port
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = [str(PROXY)]
    c.ConfigurableHTTPProxy.should_start = True
    c.JupyterHub.db_url = settings.hub_db_url
    c.JupyterHub.cookie_secret_file = str(settings.state / "jupyterhub_cookie_secret")
    c.ConfigurableHTTPProxy.pid_file = str(settings.state / "proxy.pid")
    c.JupyterHub.pid_file = str(settings.state / "jupyterhub.pid")
    c.JupyterHub.spawner_class = CourseSpawner
    c.CourseSpawner.home_dir_template = str(settings.data / "home" / "{username}")
    c.CourseSpawner.cmd = ["jupyterhub-singleuser"]
    c.CourseSpawner.exchange_url = settings.exchange_url
    c.JupyterHub.cleanup_servers = True
