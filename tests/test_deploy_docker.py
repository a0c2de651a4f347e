"""The single-GPU-server deployment, for real: a hub in Docker mode, DockerSpawner, the engine.

A real hub (``tests/hubtools.Hub``, ``DEEPGRADE_HUB_MODE=docker``) starts student servers as
containers in the session's private dockerd (``tests/dockertools.py``). No registry is
reachable, so the student image is a skeleton root made with ``docker import``; the host's
system, interpreter and this checkout are bind-mounted read-only at the same paths
(``DEEPGRADE_STUDENT_READONLY``), the image's metadata (user, home, command, environment) is
what ``hub/images/student/Dockerfile`` sets. The daemon runs with ``--bridge=none``, so the
containers use the host's network (``DEEPGRADE_DOCKER_NETWORK=host``) to reach the hub on
127.0.0.1. This daemon has no GPU: a GPU server is refused with the daemon's own words, which
proves the device request reached it, and the request bodies in the daemon's debug log show
which device each server asked for.

The Docker sandbox that grades submissions (``--network none`` and its limits, proven from
inside the container) is tested in ``tests/test_docker_sandbox.py``; the Compose file is
checked with Debian's docker-compose 1.29.2 and parsed here.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import types
from pathlib import Path

import pandas as pd
import pytest
import yaml
from tornado import web
from traitlets.config import Config

import datasets
from autograders.assignment import repo_root
from autograders.docker_sandbox import SKELETON_DIRS
from hub.docker import CourseDockerSpawner, _apply_profile, host_config
from tests.dockertools import GPU_ERROR, Engine
from tests.hubtools import PASSWORD, Hub, Session

STUDENT_IMAGE = "deepgrade-student:test"
COURSE = "keras-intro"
DATASETS = "/opt/deepgrade/data/public"
MEMORY = 1024**3  # DEEPGRADE_MEM_LIMIT=1G

# Runs in the student's kernel, inside the container.
INSIDE = """
import os, pathlib
print("uid", os.getuid())
for name in ("memory/memory.limit_in_bytes", "memory.max"):
    path = pathlib.Path("/sys/fs/cgroup", name)
    if path.exists():
        print("memory limit", path.read_text().strip())
data = pathlib.Path(os.environ["DEEPGRADE_PUBLIC_DATA"])
print("datasets", data, sorted(p.name for p in data.iterdir())[:3])
try:
    (data / "mine.txt").write_text("x")
    print("datasets writable")
except OSError as exc:
    print("datasets", "read-only" if exc.errno == 30 else exc)
pathlib.Path.home().joinpath("notes.txt").write_text("kept")
print("home", pathlib.Path.home(), "writable")
print("profile", os.environ.get("DEEPGRADE_PROFILE"))
print("shm", os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize)
"""


def build_student_image(engine: Engine, tag: str = STUDENT_IMAGE) -> None:
    """A skeleton root with the student image's metadata; the system comes from read-only mounts."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in (*SKELETON_DIRS, "home", "home/jovyan"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            if name == "home/jovyan":  # a new home volume copies this owner, as with the real image
                info.uid, info.gid = 1000, 100
            tar.addfile(info)
        for name in ("bin", "sbin", "lib", "lib64", "lib32"):
            if (Path("/") / name).is_symlink():
                info = tarfile.TarInfo(name)
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(Path("/") / name)
                tar.addfile(info)
    repo, venv = repo_root(), Path(sys.prefix)
    config = os.pathsep.join(str(repo / "hub" / "config" / kind) for kind in ("student", "common"))
    changes = ["USER 1000:100", "WORKDIR /home/jovyan", "ENV HOME=/home/jovyan",
               f"ENV PATH={venv / 'bin'}:/usr/bin:/bin", f"ENV PYTHONPATH={repo}",
               f"ENV JUPYTER_CONFIG_PATH={config}", f'CMD ["{venv / "bin" / "jupyterhub-singleuser"}"]']
    args = [arg for change in changes for arg in ("--change", change)]
    result = engine.docker("import", *args, "-", tag, input=buf.getvalue())
    assert result.returncode == 0, result.stderr.decode()


def _readonly_system() -> str:
    """What the skeleton needs from the host: system, interpreter, this checkout (with its .venv)."""
    paths = {"/usr", "/etc", str(Path(sys.base_prefix).resolve()), str(repo_root())}
    return ",".join(sorted(p for p in paths if not p.startswith("/usr/")))


@pytest.fixture(scope="module")
def docker_hub(engine: Engine, tmp_path_factory: pytest.TempPathFactory):
    build_student_image(engine)
    hub = Hub.create(tmp_path_factory.mktemp("docker-hub"))
    hub.env.update({
        "DEEPGRADE_HUB_MODE": "docker", "DOCKER_HOST": engine.host, "DEEPGRADE_SIGNUP": "closed",
        "DEEPGRADE_STUDENT_IMAGE": STUDENT_IMAGE, "DEEPGRADE_DOCKER_NETWORK": "host",
        "DEEPGRADE_MEM_LIMIT": "1G", "DEEPGRADE_CPU_LIMIT": "1", "DEEPGRADE_GPU_DEVICES": "0,1",
        "DEEPGRADE_DATASETS_VOLUME": str(datasets.public_root()), "DEEPGRADE_DATASETS_PATH": DATASETS,
        "DEEPGRADE_STUDENT_READONLY": _readonly_system(),
    })
    roster = hub.data / "roster.csv"  # one command for everyone: each CLI start costs seconds
    roster.write_text("username,role,course,password\n" + "".join(
        f"{name},student,{COURSE},{PASSWORD}\n" for name in ("alice", "bob", "carol")))
    hub.cli("users", "import", str(roster))
    hub.start()
    yield hub
    try:
        for name in ("alice", "bob", "carol"):
            Session(hub, name, hub.token(name)).request("DELETE", f"/hub/api/users/{name}/server")
    finally:
        hub.stop()
        for name in ("alice", "bob", "carol"):  # servers outlive the hub in Docker mode
            engine.docker("rm", "--force", f"deepgrade-server-{name}")


def test_cpu_profile_runs_a_kernel_in_a_limited_container(docker_hub: Hub, engine: Engine) -> None:
    alice = Session(docker_hub, "alice", docker_hub.token("alice"))
    alice.start_server()
    container = engine.inspect("deepgrade-server-alice")
    assert container is not None and container["State"]["Running"], "no running container in the daemon"
    assert container["Config"]["Image"] == STUDENT_IMAGE
    host = container["HostConfig"]
    assert host["Memory"] == MEMORY
    assert host["CpuQuota"] == host["CpuPeriod"] == 100_000  # DEEPGRADE_CPU_LIMIT=1
    assert host["ShmSize"] == 1024**3 and host["PidsLimit"] == 4096
    assert "no-new-privileges" in host["SecurityOpt"]
    assert not host.get("DeviceRequests"), host.get("DeviceRequests")  # the CPU profile asks for no GPU
    mounts = {m["Destination"]: m for m in container["Mounts"]}
    assert mounts[DATASETS]["RW"] is False and mounts[DATASETS]["Source"] == str(datasets.public_root())
    assert mounts["/home/jovyan"]["Type"] == "volume" and mounts["/home/jovyan"]["Name"] == "deepgrade-user-alice"
    assert mounts["/home/jovyan"]["RW"] is True

    out = alice.run_code(INSIDE)
    assert "uid 1000" in out, out
    assert f"memory limit {MEMORY}" in out, out  # the kernel sees the limit the hub set
    assert "datasets read-only" in out and "keras-intro" in out, out
    assert "home /home/jovyan writable" in out and "profile cpu" in out, out
    assert f"shm {1024**3}" in out, out

    # nbgrader's assignment list in the container reaches the exchange service through the hub
    listing = alice.get("/user/alice/assignments", params={"course_id": COURSE})
    assert listing.status_code == 200 and listing.json()["success"], listing.text[:500]
    # the idle culler runs as a hub service, and its scopes let it list the servers it may stop
    assert re.search(r"200 GET /hub/api/users\?state=\S* \(idle-culler@", docker_hub.log.read_text())


def _spawn_error(hub: Hub, name: str, options: dict) -> str:
    """Spawn through the REST API; once the spawn has failed, the hub log's error line for it."""
    session = Session(hub, name, hub.token(name))
    session.post(f"/hub/api/users/{name}/server", json=options)  # 500 (no details) when it fails at once
    marker = f"error starting {name}'s server"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = [line for line in hub.log.read_text().splitlines() if marker in line]
        if lines:
            return lines[-1]
        server = session.get(f"/hub/api/users/{name}").json().get("servers", {}).get("")
        assert not (server and server.get("ready")), f"the GPU server of {name} started"
        time.sleep(0.5)
    raise TimeoutError(f"the GPU server of {name} neither failed nor started")


def _created(engine: Engine, container: str) -> list[dict]:
    return [body for url, body in engine.requests_logged("/containers/create") if f"name={container}" in url]


def test_gpu_profile_sends_a_device_request_the_engine_answers(docker_hub: Hub, engine: Engine) -> None:
    answer = _spawn_error(docker_hub, "bob", {"profile": "gpu"})
    assert GPU_ERROR in answer, answer[-2000:]
    (bob,) = _created(engine, "deepgrade-server-bob")
    assert bob["HostConfig"]["DeviceRequests"] == [
        {"Driver": "", "Count": 0, "DeviceIDs": ["0"], "Capabilities": [["gpu"]], "Options": {}}]
    assert engine.inspect("deepgrade-server-bob") is None  # the failed server is cleaned up

    # bob's failed spawn gave device 0 back, so carol gets it too
    assert GPU_ERROR in _spawn_error(docker_hub, "carol", {"profile": "gpu"})
    (carol,) = _created(engine, "deepgrade-server-carol")
    assert carol["HostConfig"]["DeviceRequests"][0]["DeviceIDs"] == ["0"]
    # and the CPU server's request carried none
    assert all(not body["HostConfig"].get("DeviceRequests") for body in _created(engine, "deepgrade-server-alice"))


def test_spawn_page_offers_the_profiles_and_options_are_checked(docker_hub: Hub) -> None:
    page = docker_hub.login("carol").get(f"{docker_hub.url}/hub/spawn", timeout=60)
    assert page.status_code == 200 and 'name="profile" value="cpu" checked' in page.text, page.text[-2000:]
    assert 'value="gpu"' in page.text and "(1 GB memory, 1 CPU)" in page.text
    carol = Session(docker_hub, "carol", docker_hub.token("carol"))
    unknown = carol.post("/hub/api/users/carol/server", json={"profile": "tpu"})
    assert unknown.status_code == 400 and "unknown profile" in unknown.text, unknown.text
    foreign = carol.post("/hub/api/users/carol/server", json={"image": "evil/miner:1"})
    assert foreign.status_code >= 400 and "not in allowed list" in foreign.text, foreign.text


# -- GPU assignment, the policy alone (no engine needed) ----------------------------------------

def _spawner(user: str, **config) -> CourseDockerSpawner:
    # a stand-in for JupyterHub's User: the spawner needs only its name here
    return CourseDockerSpawner(user=types.SimpleNamespace(name=user), **config)


def test_each_gpu_server_gets_its_own_device_until_all_are_taken() -> None:
    spawners = [_spawner(f"gpu-{n}", gpu_devices=["0", "1"], gpu_users_per_device=1) for n in range(3)]
    try:
        assert [s._lease_gpu() for s in spawners[:2]] == ["0", "1"]
        with pytest.raises(web.HTTPError, match="All 2 GPU"):
            spawners[2]._lease_gpu()
        with pytest.raises(web.HTTPError, match="All 2 GPU"):  # said before the spawn starts
            _apply_profile(spawners[2], {"profile": "gpu"})
        _apply_profile(spawners[2], {"profile": "cpu"})  # a CPU server is still fine
        spawners[1].clear_state()  # a server stops: its device is free again
        assert spawners[2]._lease_gpu() == "1"
        spawners[0].gpu_device = "0"
        assert [r["DeviceIDs"] for r in host_config(spawners[0])["device_requests"]] == [["0"]]
        # after a hub restart, a running GPU server keeps its device and counts against it
        spawners[0].clear_state()
        spawners[0].load_state({"object_id": "abc", "gpu_device": "0"})
        late = _spawner("gpu-late", gpu_devices=["0", "1"], gpu_users_per_device=1)
        spawners.append(late)
        with pytest.raises(web.HTTPError, match="All 2 GPU"):
            late._lease_gpu()
        # time-sharing: two servers per device, still spread over both devices first
        late.gpu_users_per_device = 2
        assert late._lease_gpu() == "0"
    finally:
        for spawner in spawners:
            spawner.clear_state()
    assert CourseDockerSpawner._gpu_leases == {}


def test_without_a_device_list_the_driver_picks_one_gpu() -> None:
    spawner = _spawner("any-gpu")
    spawner.gpu_device = spawner._lease_gpu()
    request = host_config(spawner)["device_requests"][0]
    assert (request["Count"], request["DeviceIDs"], request["Capabilities"]) == (1, [], [["gpu"]])
    spawner.clear_state()
    assert "device_requests" not in host_config(spawner)


def _load_config(env: dict[str, str]) -> Config:
    """jupyterhub_config.py as JupyterHub loads it, with ``env`` set."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        config = Config()
        exec(compile((repo_root() / "jupyterhub_config.py").read_text(), "jupyterhub_config.py", "exec"),
             {"get_config": lambda: config, "__name__": "jupyterhub_config"})
        return config
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_docker_mode_configuration_and_unknown_modes(tmp_path: Path) -> None:
    env = {"DEEPGRADE_HOME": str(tmp_path), "DEEPGRADE_HUB_MODE": "docker", "DEEPGRADE_STUDENT_IMAGE": "s:1",
           "DEEPGRADE_STUDENT_GPU_IMAGE": "s-gpu:1", "DEEPGRADE_HUB_API_IP": "0.0.0.0",
           "DEEPGRADE_HUB_CONNECT_HOST": "hub", "DEEPGRADE_SIGNUP": "closed"}
    c = _load_config(env)
    spawner = c.CourseDockerSpawner
    assert c.JupyterHub.spawner_class is CourseDockerSpawner
    assert sorted(spawner.allowed_images) == ["s-gpu:1", "s:1"] and spawner.pull_policy == "never"
    assert spawner.volumes == {"deepgrade-user-{username}": "/home/jovyan"}
    assert spawner.read_only_volumes == {"deepgrade-datasets": DATASETS}
    assert spawner.network_name == "deepgrade-users"
    assert (c.JupyterHub.hub_ip, c.JupyterHub.hub_connect_ip) == ("0.0.0.0", "hub")
    assert c.NativeAuthenticator.enable_signup is False
    assert "idle-culler" in [s["name"] for s in c.JupyterHub.services]
    with pytest.raises(SystemExit, match="not a deployment mode"):
        _load_config({**env, "DEEPGRADE_HUB_MODE": "swarm"})


# -- what the Dockerfiles bake in -------------------------------------------------------------------

BAKE = repo_root() / "hub" / "images" / "bake_datasets.py"


def test_images_get_public_rows_and_only_the_worker_gets_full_files(tmp_path: Path) -> None:
    sys.path.insert(0, str(BAKE.parent))
    try:
        from bake_datasets import used_datasets
    finally:
        sys.path.remove(str(BAKE.parent))
    assert "keras-intro/banknotes" in used_datasets(repo_root() / "assignments")

    public, full, cache = tmp_path / "public", tmp_path / "full", tmp_path / "cache"
    env = {**os.environ, "PYTHONPATH": str(repo_root()), "DEEPGRADE_CACHE": str(cache)}
    bake = subprocess.run([sys.executable, str(BAKE), "--public", str(public), "--full", str(full),
                           "keras-intro/banknotes"], env=env, capture_output=True, text=True, timeout=300)
    assert bake.returncode == 0, bake.stderr
    entry = datasets.get_registry()["keras-intro/banknotes"]
    shown = pd.read_csv(public / "keras-intro" / "banknotes.csv")
    whole = pd.read_csv(full / entry.file)
    hidden = datasets.hidden_split("keras-intro/banknotes")
    assert len(shown) + len(hidden) == len(whole) and len(hidden) > 0
    # exactly the public rows: the hidden ones never reach a student image
    pd.testing.assert_frame_equal(shown, datasets.public_split("keras-intro/banknotes"), check_dtype=False)
    assert datasets.sha256_file(full / entry.file) == entry.sha256

    # the student side: a read-only public folder, no mirror, an empty cache, and it still loads
    public.chmod(0o555)
    for folder in public.rglob("*"):
        folder.chmod(0o555 if folder.is_dir() else 0o444)
    student = subprocess.run(
        [sys.executable, "-c", "import sys, datasets; print(datasets.public_path('keras-intro/banknotes', "
                               "root=sys.argv[1]))", str(public)],
        env={**env, "DEEPGRADE_DATA_MIRROR": "", "DEEPGRADE_CACHE": str(tmp_path / "empty")},
        capture_output=True, text=True, timeout=120)
    assert student.returncode == 0 and student.stdout.strip() == str(public / "keras-intro" / "banknotes.csv"), \
        student.stderr
    assert not (tmp_path / "empty").exists()


# -- the Compose file ------------------------------------------------------------------------------

COMPOSE = repo_root() / "docker-compose.yml"
GPU_OVERRIDE = repo_root() / "docker-compose.gpu.yml"
ENV_EXAMPLE = repo_root() / "hub" / "deploy" / "env.example"


def _compose_config(env: Path, *files: Path) -> dict:
    """``docker-compose config``: the files as Compose resolves them, or a failed assertion with its words."""
    args = [arg for f in files for arg in ("-f", str(f))]
    result = subprocess.run(["docker-compose", "--project-directory", str(repo_root()), *args, "--env-file", str(env),
                             "config"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def compose_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped example .env, with docker-compose installed when missing."""
    install = subprocess.run(["bash", str(repo_root() / "scripts" / "ensure-docker.sh"), "compose"],
                             capture_output=True, text=True)
    if install.returncode != 0 or not shutil.which("docker-compose"):
        pytest.skip(f"no docker-compose: ensure-docker.sh said: {(install.stderr or install.stdout).strip()}")
    env = tmp_path_factory.mktemp("compose") / ".env"
    env.write_text(ENV_EXAMPLE.read_text())
    return env


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's volumes, in Compose's short or long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def test_compose_file_is_accepted_and_pins_state_and_tags(compose_env: Path) -> None:
    config = _compose_config(compose_env, COMPOSE)
    raw = yaml.safe_load(COMPOSE.read_text())
    services = config["services"]
    assert {"hub", "postgres", "redis", "worker", "proxy"} <= set(services)
    for name, service in services.items():
        image = service.get("image", "")
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: image {image!r} has no tag"
        assert not image.endswith(":latest"), f"{name}: {image}"
    # state lives in named volumes
    named = {key: value.get("name", key) for key, value in config["volumes"].items()}
    for service, target in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data"),
                            ("hub", "/srv/deepgrade/hub"), ("hub", "/srv/deepgrade/courses"),
                            ("worker", "/srv/deepgrade/courses"), ("proxy", "/data")):
        source = _mounts(services[service]).get(target)
        assert source in named and named[source].startswith("deepgrade-"), (service, target, source)
    hub = services["hub"]["environment"]
    assert hub["DEEPGRADE_SIGNUP"] == "closed" and hub["DEEPGRADE_HUB_MODE"] == "docker"
    assert hub["DEEPGRADE_HUB_DB_URL"].startswith("postgresql") and hub["DEEPGRADE_DB_URL"].startswith("postgresql")
    assert hub["DEEPGRADE_HUB_DB_URL"] != hub["DEEPGRADE_DB_URL"]
    # the formgraders (hub) and the workers grade into the same PostgreSQL gradebooks
    gradebook = services["worker"]["environment"]["DEEPGRADE_GRADEBOOK_URL"]
    assert gradebook == hub["DEEPGRADE_GRADEBOOK_URL"] and gradebook.startswith("postgresql") and "{course}" in gradebook
    assert hub["DEEPGRADE_DOCKER_NETWORK"] == config["networks"]["users"]["name"]
    assert hub["DEEPGRADE_DATASETS_VOLUME"] == named["datasets"]
    worker = services["worker"]
    assert worker["environment"]["DEEPGRADE_QUEUE"] == "celery"
    assert worker["environment"]["DEEPGRADE_BROKER_URL"].startswith("redis://")
    assert worker["environment"]["DEEPGRADE_SANDBOX"] == "docker"
    # scalable: `docker-compose up --scale worker=N` needs no fixed name and no host port
    assert "container_name" not in raw["services"]["worker"] and "ports" not in raw["services"]["worker"]
    # only the proxy is published, and the databases have no route out
    assert [name for name, service in raw["services"].items() if service.get("ports")] == ["proxy"]
    assert config["networks"]["backend"]["internal"] is True
    assert set(services["postgres"]["networks"]) == set(services["redis"]["networks"]) == {"backend"}


def test_gpu_override_reserves_gpus_for_workers(compose_env: Path) -> None:
    worker = _compose_config(compose_env, COMPOSE, GPU_OVERRIDE)["services"]["worker"]
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["driver"] == "nvidia"


def test_compose_refuses_a_missing_secret(compose_env: Path, tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("".join(line + "\n" for line in compose_env.read_text().splitlines()
                           if not line.startswith("POSTGRES_PASSWORD=")))
    result = subprocess.run(["docker-compose", "--project-directory", str(repo_root()), "-f", str(COMPOSE),
                             "--env-file", str(env), "config"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr, result.stderr
