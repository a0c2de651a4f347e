"""Docker mode (``DEEPGRADE_HUB_MODE=docker``): every student server is a container on one GPU server.

``jupyterhub_config.py`` applies the shared course policy (``hub.policy``) and then
:func:`configure`. Students pick a profile in the spawn form (or ``{"profile": "gpu"}`` in the
REST API's spawn body):

- ``cpu``: the student image with memory, CPU and process limits;
- ``gpu``: the GPU image with the same limits plus one GPU, requested from the engine as a
  ``docker.types.DeviceRequest``. With ``DEEPGRADE_GPU_DEVICES`` (GPU indexes or UUIDs, MIG
  instances included) each GPU server gets its own device, the least loaded one, and at most
  ``DEEPGRADE_GPU_USERS_PER_DEVICE`` servers share a device; without it the driver picks one
  GPU for every server (they time-share it).

Every container gets a larger ``/dev/shm`` (data pipelines and multi-process loaders use it;
Docker's 64 MB default breaks them), the public datasets read-only, its own named volume
(``deepgrade-user-{username}``) for the home folder, and nothing else of the host: hidden data
and hidden tests live only in the worker image. Images are locked to the configured student
image(s) (``allowed_images``), and the idle culler stops servers nobody uses.

The hub itself may run in a container (``docker-compose.yml``) or on the host (the tests):
``DOCKER_HOST`` or the mounted socket says which engine, and ``DEEPGRADE_DOCKER_NETWORK``
which network the servers join (``host`` shares the host's network, as the tests do).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from html import escape
from typing import Any, ClassVar

from docker.types import DeviceRequest
from dockerspawner import DockerSpawner
from jupyterhub.utils import random_port
from tornado import web
from traitlets import Integer, List, Unicode, default

from hub.local import PROXY
from hub.policy import HubSettings

DEFAULT_TAG = "0.1.0"  # the project's version; compose passes the image names explicitly
GPUS_FULL = "All {n} GPU(s) are in use. Start a CPU server, or try the GPU again later."
PROFILES = {
    "cpu": "CPU: for most exercises",
    "gpu": "GPU: one GPU for training larger models (shared fairly, may be full)",
}


def _env_list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


def _readonly_mounts() -> dict[str, str]:
    """``DEEPGRADE_STUDENT_READONLY``: comma-separated ``SOURCE[:TARGET]``, mounted read-only."""
    mounts = {}
    for item in _env_list("DEEPGRADE_STUDENT_READONLY"):
        source, _, target = item.partition(":")
        mounts[source] = target or source
    return mounts


@dataclass
class DockerSettings:
    """What Docker mode reads from the environment, in one place (next to ``HubSettings``)."""

    student_image: str = field(default_factory=lambda: os.environ.get(
        "DEEPGRADE_STUDENT_IMAGE", f"deepgrade-student:{DEFAULT_TAG}"))
    gpu_image: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_STUDENT_GPU_IMAGE", ""))
    gpu_devices: list[str] = field(default_factory=lambda: _env_list("DEEPGRADE_GPU_DEVICES"))
    gpu_users_per_device: int = field(default_factory=lambda: int(
        os.environ.get("DEEPGRADE_GPU_USERS_PER_DEVICE", "1")))
    mem_limit: str = field(default_factory=lambda: os.environ.get(
        "DEEPGRADE_MEM_LIMIT", os.environ.get("DEEPGRADE_SERVER_MEMORY", "4G")))
    cpu_limit: float = field(default_factory=lambda: float(os.environ.get(
        "DEEPGRADE_CPU_LIMIT", os.environ.get("DEEPGRADE_SERVER_CPUS", "2"))))
    shm_size: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_SHM_SIZE", "1G"))
    pids_limit: int = field(default_factory=lambda: int(os.environ.get("DEEPGRADE_PIDS_LIMIT", "4096")))
    network: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_DOCKER_NETWORK", "deepgrade-users"))
    datasets_source: str = field(default_factory=lambda: os.environ.get(
        "DEEPGRADE_DATASETS_VOLUME", "deepgrade-datasets"))
    datasets_path: str = field(default_factory=lambda: os.environ.get(
        "DEEPGRADE_DATASETS_PATH", "/opt/deepgrade/data/public"))
    home: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_STUDENT_HOME", "/home/jovyan"))
    readonly: dict[str, str] = field(default_factory=_readonly_mounts)
    hub_bind_ip: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_HUB_API_IP", "127.0.0.1"))
    hub_connect_host: str = field(default_factory=lambda: os.environ.get("DEEPGRADE_HUB_CONNECT_HOST", ""))
    idle_timeout: int = field(default_factory=lambda: int(os.environ.get("DEEPGRADE_IDLE_TIMEOUT", "3600")))


class CourseDockerSpawner(DockerSpawner):
    """DockerSpawner with the course's CPU and GPU profiles and per-user GPU assignment."""

    cpu_image = Unicode(help="Image of the CPU profile.").tag(config=True)
    gpu_image = Unicode(help="Image of the GPU profile (empty: the CPU profile's image; the "
                             "TensorFlow CUDA image runs on either).").tag(config=True)
    gpu_devices = List(Unicode(), help="GPU indexes or UUIDs (MIG instances too) to hand out, one per GPU "
                                       "server, least loaded first. Empty: the driver picks one GPU for "
                                       "every server.").tag(config=True)
    gpu_users_per_device = Integer(1, help="GPU servers that may share one device of gpu_devices "
                                           "(0: no limit, they time-share it).").tag(config=True)
    shm_size = Unicode("1G", help="Size of /dev/shm (Docker's 64 MB default breaks data loaders)."
                       ).tag(config=True)
    pids_limit = Integer(4096, help="Processes and threads per server (TensorFlow starts several per core)."
                         ).tag(config=True)
    exchange_url = Unicode("", help="The exchange service as servers reach it.").tag(config=True)
    datasets_path = Unicode("/opt/deepgrade/data/public",
                            help="Where the public datasets are mounted read-only in the container."
                            ).tag(config=True)
    profile = Unicode("cpu", help="The profile of the current spawn (from user_options).")
    gpu_device = Unicode(None, allow_none=True,
                         help="The device this server holds: None for CPU, '' when the driver picks.")

    # server key ("user/server name") -> device, shared by every spawner of this hub process
    _gpu_leases: ClassVar[dict[str, str]] = {}

    @default("options_form")
    def _default_options_form(self) -> str:
        parts = []
        if self.mem_limit:  # ByteSpecification has turned "8G" into bytes
            parts.append(f"{int(self.mem_limit) / 2**30:g} GB memory")
        if self.cpu_limit:
            parts.append(f"{self.cpu_limit:g} CPU{'' if self.cpu_limit == 1 else 's'}")
        limits = ", ".join(parts)
        choices = "".join(
            f'<label class="form-check"><input class="form-check-input" type="radio" name="profile" '
            f'value="{name}"{" checked" if name == "cpu" else ""}> {escape(label)}</label>'
            for name, label in PROFILES.items())
        return f"<p>Choose a server{f' ({limits})' if limits else ''}:</p>{choices}"

    @default("options_from_form")
    def _default_options_from_form(self) -> Any:
        return self._simple_options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return _apply_profile

    @default("extra_host_config")
    def _default_extra_host_config(self) -> Any:
        return host_config

    @property
    def _lease_key(self) -> str:
        return f"{self.user.name}/{self.name}"

    def device_request(self) -> DeviceRequest | None:
        """What the engine is asked for: nothing, the device this server holds, or any one GPU."""
        if self.gpu_device is None:
            return None
        if self.gpu_device:
            return DeviceRequest(device_ids=[self.gpu_device], capabilities=[["gpu"]])
        return DeviceRequest(count=1, capabilities=[["gpu"]])

    def _free_gpu(self) -> str | None:
        """The least loaded device of gpu_devices (first listed on ties), None when all are full."""
        load = dict.fromkeys(self.gpu_devices, 0)
        for key, device in self._gpu_leases.items():
            if key != self._lease_key and device in load:
                load[device] += 1
        device = min(self.gpu_devices, key=lambda d: load[d])
        if self.gpu_users_per_device and load[device] >= self.gpu_users_per_device:
            return None
        return device

    def _lease_gpu(self) -> str:
        """Take the least loaded device, or '' (the driver picks) when no devices are listed."""
        if not self.gpu_devices:
            return ""
        device = self._free_gpu()
        if device is None:
            raise web.HTTPError(503, GPUS_FULL.format(n=len(self.gpu_devices)))
        self._gpu_leases[self._lease_key] = device
        self.log.info("GPU %s for %s (leases: %s)", device, self._log_name, self._gpu_leases)
        return device

    def _release_gpu(self) -> None:
        self._gpu_leases.pop(self._lease_key, None)

    async def start(self) -> Any:
        if self.network_name == "host":
            self.port = random_port()  # servers share the host's ports
        self.image = await self.check_allowed(self.gpu_image if self.profile == "gpu" else self.cpu_image)
        self.gpu_device = self._lease_gpu() if self.profile == "gpu" else None
        try:
            return await super().start()
        except Exception:
            self._release_gpu()
            raise

    async def get_ip_and_port(self) -> tuple[str, int]:
        if self.network_name == "host":
            return self.ip or "127.0.0.1", self.port
        return await super().get_ip_and_port()

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        env.update({"DEEPGRADE_PUBLIC_DATA": self.datasets_path, "DEEPGRADE_EXCHANGE_URL": self.exchange_url,
                    "DEEPGRADE_PROFILE": self.profile, "TF_CPP_MIN_LOG_LEVEL": "3"})
        if self.profile == "gpu":
            # TensorFlow and JAX otherwise claim the whole GPU's memory at their first op, which
            # starves whoever shares the device (time-slicing)
            env.update({"TF_FORCE_GPU_ALLOW_GROWTH": "true", "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
        return env

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self.object_id and self.gpu_device is not None:
            state["gpu_device"] = self.gpu_device
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        """After a hub restart, running GPU servers keep (and count against) their devices."""
        super().load_state(state)
        self.gpu_device = state.get("gpu_device")
        if self.gpu_device:
            self._gpu_leases[self._lease_key] = self.gpu_device

    def clear_state(self) -> None:
        super().clear_state()
        self._release_gpu()
        self.gpu_device = None


def _apply_profile(spawner: CourseDockerSpawner, user_options: dict[str, Any]) -> None:
    """user_options is user input (the form or the REST API): accept only a known profile, and
    say at once when every GPU is taken (start() checks again when it takes one)."""
    profile = user_options.get("profile", "cpu")
    if profile not in PROFILES:
        raise web.HTTPError(400, f"unknown profile {profile!r}: choose {' or '.join(PROFILES)}")
    if profile == "gpu" and spawner.gpu_devices and spawner._free_gpu() is None:
        raise web.HTTPError(503, GPUS_FULL.format(n=len(spawner.gpu_devices)))
    spawner.profile = profile


def host_config(spawner: CourseDockerSpawner) -> dict[str, Any]:
    """Per-server engine settings (``extra_host_config``); a callable, so each server gets its own GPU."""
    config: dict[str, Any] = {"shm_size": spawner.shm_size, "pids_limit": spawner.pids_limit,
                              "security_opt": ["no-new-privileges"]}
    request = spawner.device_request()
    if request is not None:
        config["device_requests"] = [request]
    return config


def configure(c: Any, settings: HubSettings, docker: DockerSettings | None = None) -> None:
    """Hub, proxy and spawner settings for Docker mode (the course policy is already applied)."""
    docker = docker or DockerSettings()
    c.JupyterHub.ip = settings.ip
    c.JupyterHub.port = settings.port
    c.JupyterHub.hub_ip = docker.hub_bind_ip
    c.JupyterHub.hub_port = settings.hub_api_port
    if docker.hub_connect_host:  # servers in their own network reach the hub by this name
        c.JupyterHub.hub_connect_ip = docker.hub_connect_host
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.ConfigurableHTTPProxy.command = [str(PROXY)]
    c.ConfigurableHTTPProxy.should_start = True
    c.ConfigurableHTTPProxy.pid_file = str(settings.state / "proxy.pid")
    c.JupyterHub.db_url = settings.hub_db_url
    c.JupyterHub.cookie_secret_file = str(settings.state / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(settings.state / "jupyterhub.pid")
    # Student containers outlive a hub restart (an upgrade must not stop anyone's work).
    c.JupyterHub.cleanup_servers = False

    c.JupyterHub.spawner_class = CourseDockerSpawner
    spawner = c.CourseDockerSpawner
    gpu_image = docker.gpu_image or docker.student_image
    spawner.cpu_image = docker.student_image
    spawner.gpu_image = gpu_image
    spawner.image = docker.student_image
    spawner.allowed_images = sorted({docker.student_image, gpu_image})
    spawner.pull_policy = "never"  # our images are built on the server; a pull would ask Docker Hub
    spawner.gpu_devices = docker.gpu_devices
    spawner.gpu_users_per_device = docker.gpu_users_per_device
    spawner.mem_limit = docker.mem_limit
    spawner.cpu_limit = docker.cpu_limit
    spawner.shm_size = docker.shm_size
    spawner.pids_limit = docker.pids_limit
    spawner.network_name = docker.network
    if docker.network == "host":
        spawner.use_internal_ip = True  # no port publishing; get_ip_and_port answers for host networking
        spawner.ip = "127.0.0.1"
    spawner.prefix = "deepgrade-server"
    spawner.remove = True  # the home is a volume; a fresh container each start applies the chosen profile
    spawner.volumes = {"deepgrade-user-{username}": docker.home}
    spawner.read_only_volumes = {docker.datasets_source: docker.datasets_path, **docker.readonly}
    spawner.datasets_path = docker.datasets_path
    spawner.exchange_url = settings.exchange_url

    # Stop servers idle for DEEPGRADE_IDLE_TIMEOUT seconds, so GPUs and memory come back.
    c.JupyterHub.services = [*c.JupyterHub.services, {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={docker.idle_timeout}"],
    }]
    c.JupyterHub.load_roles = [*c.JupyterHub.load_roles, {
        "name": "idle-culler", "services": ["idle-culler"],
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    }]
