"""The Kubernetes deployment, as files: the Zero to JupyterHub values and our own manifests.

No cluster or helm here, so these tests read the YAML and check what a broken edit would break:
the CPU and GPU profiles, pinned images and chart version, the culler, per-user storage,
closed sign-up, workers that take a GPU and read their URLs from Secrets, persistent PostgreSQL
and Redis, and that the hub, the workers and the user pods agree on the shared volume and on
where the exchange listens. The hub's extraConfig is executed against a chart-like config, the
way z2jh runs it, to show it keeps the chart's idle culler and gives services reachable URLs.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from traitlets.config import Config

from autograders.assignment import repo_root

K8S = repo_root() / "hub" / "kubernetes"
GPU = "nvidia.com/gpu"
POD_IP = "10.1.2.3"


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return documents("values.yaml")[0]


@pytest.fixture(scope="module")
def manifests() -> list[dict[str, Any]]:
    return [d for name in ("state.yaml", "workers.yaml") for d in documents(name)]


def find(manifests: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def profile(values: dict[str, Any], slug: str) -> dict[str, Any]:
    found = [p for p in values["singleuser"]["profileList"] if p.get("slug") == slug]
    assert len(found) == 1, f"expected one profile with slug {slug!r}"
    return found[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def secret_ref(entry: Any) -> tuple[str, str] | None:
    """(secret, key) when an env entry (list form or z2jh dict form) reads from a Secret."""
    ref = (entry or {}).get("valueFrom", {}).get("secretKeyRef") if isinstance(entry, dict) else None
    return (ref["name"], ref["key"]) if ref else None


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


# -- chart version and images ------------------------------------------------------------------
def test_chart_version_is_pinned_in_one_place_and_quoted_in_the_values() -> None:
    version = (K8S / "Chart-version").read_text().strip()
    assert re.fullmatch(r"4\.\d+\.\d+", version), f"chart version {version!r}: expected an exact 4.x.y"
    text = (K8S / "values.yaml").read_text()
    assert f"jupyterhub/jupyterhub version {version}" in text, "the comment in values.yaml names another version"
    assert '--version "$(cat hub/kubernetes/Chart-version)"' in text


def image_references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every image a file names: `image: name:tag` strings and z2jh's `{name, tag}` mappings."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}"
            if key == "image" and isinstance(value, str):
                yield here, value
            elif key == "image" and isinstance(value, dict) and "name" in value:
                yield here, f"{value['name']}:{value.get('tag', '')}"
            else:
                yield from image_references(value, here)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from image_references(item, f"{path}[{index}]")


@pytest.mark.parametrize("name", ["values.yaml", "state.yaml", "workers.yaml"])
def test_every_image_is_pinned(name: str) -> None:
    found = [ref for doc in documents(name) for ref in image_references(doc)]
    assert found, f"no images found in {name}"
    for where, image in found:
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}{where}: {image!r} has no tag"
        assert tag and tag != "latest", f"{name}{where}: {image!r} is not pinned"


def test_the_deployment_uses_the_three_deepgrade_images_and_the_databases(
        values: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    images = {image.rpartition(":")[0].rsplit("/", 1)[-1]
              for doc in [values, *manifests] for _, image in image_references(doc)}
    assert {"deepgrade-hub", "deepgrade-student", "postgres", "redis"} <= images


# -- profiles ----------------------------------------------------------------------------------
def test_gpu_profile_takes_one_gpu_on_a_gpu_node(values: dict[str, Any]) -> None:
    override = profile(values, "gpu")["kubespawner_override"]
    assert override["extra_resource_limits"] == {GPU: "1"}
    assert any("nvidia.com/gpu" in key for key in override["node_selector"]), "no GPU node selector"
    assert any(t.get("key") == GPU and t.get("effect") == "NoSchedule" for t in override["tolerations"])
    cpu_image = "{name}:{tag}".format(**values["singleuser"]["image"])
    dependencies = tomllib.loads((repo_root() / "pyproject.toml").read_text())["project"]["dependencies"]
    if any(d.startswith("tensorflow-cpu") for d in dependencies):
        assert override.get("image", cpu_image) != cpu_image, \
            "the GPU profile runs the CPU image, whose tensorflow-cpu cannot use the GPU"


def test_cpu_profile_is_the_default_and_requests_no_gpu(values: dict[str, Any]) -> None:
    cpu = profile(values, "cpu")
    assert cpu.get("default") is True
    override = cpu.get("kubespawner_override", {})
    assert GPU not in override.get("extra_resource_limits", {})
    assert not any("nvidia" in key for key in override.get("node_selector", {}))
    assert GPU not in values["singleuser"].get("extraResource", {}).get("limits", {}), \
        "a GPU limit for every server would also apply to the CPU profile"


# -- user servers --------------------------------------------------------------------------------
def test_idle_servers_are_culled(values: dict[str, Any]) -> None:
    cull = values["cull"]
    assert cull["enabled"] is True
    assert 0 < cull["timeout"] <= 4 * 3600


def test_each_user_gets_a_home_volume_and_the_data_read_only(values: dict[str, Any]) -> None:
    storage = values["singleuser"]["storage"]
    assert storage["type"] == "dynamic", "homes must be a volume per user, kept across restarts"
    assert re.fullmatch(r"\d+Gi", storage["capacity"])
    assert storage["homeMountPath"]
    volumes = {v["name"]: v for v in storage["extraVolumes"]}
    (mount,) = [m for m in storage["extraVolumeMounts"] if m["name"] in volumes]
    claim = volumes[mount["name"]]["persistentVolumeClaim"]
    assert mount["readOnly"] is True and claim["readOnly"] is True
    assert claim["claimName"] == "deepgrade-public-data", "user pods must see only the public splits"
    assert values["singleuser"]["extraEnv"]["DEEPGRADE_PUBLIC_DATA"] == mount["mountPath"]


def test_sign_up_is_not_open(values: dict[str, Any]) -> None:
    config = values["hub"]["config"]
    assert config["JupyterHub"]["authenticator_class"] == "hub.auth.RosterAuthenticator"
    assert config["NativeAuthenticator"]["open_signup"] is False
    assert values["hub"]["extraEnv"]["DEEPGRADE_SIGNUP"] in ("approval", "closed")


def test_https_is_on(values: dict[str, Any]) -> None:
    https = values["proxy"]["https"]
    assert https["enabled"] is True
    assert https["type"] in ("letsencrypt", "secret", "manual")
    if https["type"] == "letsencrypt":
        assert https["hosts"] and https["letsencrypt"]["contactEmail"]


# -- the hub and its services ----------------------------------------------------------------------
def test_hub_database_is_postgres_with_the_password_from_a_secret(values: dict[str, Any]) -> None:
    db, env = values["hub"]["db"], values["hub"]["extraEnv"]
    assert db["type"] == "postgres"
    assert not urlparse(db["url"]).password, "no password in the values file"
    assert not db.get("password")
    assert secret_ref(env["PGPASSWORD"]) == ("deepgrade-secrets", "postgres-password")
    assert secret_ref(env["DEEPGRADE_DB_URL"]) == ("deepgrade-secrets", "db-url")
    assert secret_ref(env["DEEPGRADE_BROKER_URL"]) == ("deepgrade-secrets", "broker-url")
    assert env["DEEPGRADE_QUEUE"] == "celery"


def test_the_exchange_port_is_the_same_everywhere(values: dict[str, Any]) -> None:
    """User pods call the exchange at DEEPGRADE_EXCHANGE_URL: the hub Service must expose that
    port, and both network policies must let the call through."""
    url = urlparse(values["singleuser"]["extraEnv"]["DEEPGRADE_EXCHANGE_URL"])
    assert url.hostname == "hub" and url.path == "/services/exchange/"
    assert url.port in [p["port"] for p in values["hub"]["service"]["extraPorts"]]
    hub_in = [port for rule in values["hub"]["networkPolicy"]["ingress"] for port in rule["ports"]
              if any(f.get("podSelector", {}).get("matchLabels", {}).get("component") == "singleuser-server"
                     for f in rule["from"])]
    assert any(p["port"] <= url.port <= p.get("endPort", p["port"]) for p in hub_in)
    user_out = [port for rule in values["singleuser"]["networkPolicy"]["egress"] for port in rule["ports"]]
    assert any(p["port"] <= url.port <= p.get("endPort", p["port"]) for p in user_out)


def run_extra_config(values: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Config:
    """Execute hub.extraConfig the way z2jh does, after a chart-like config with the idle culler."""
    monkeypatch.setenv("DEEPGRADE_SERVICE_HOST", POD_IP)
    monkeypatch.setenv("DEEPGRADE_HOME", str(tmp_path))
    monkeypatch.delenv("DEEPGRADE_EXCHANGE_URL", raising=False)
    monkeypatch.delenv("DEEPGRADE_SERVICE_PORT", raising=False)
    c = Config()
    c.JupyterHub.services = [{"name": "jupyterhub-idle-culler", "command": ["python3", "-m", "jupyterhub_idle_culler"]}]
    c.JupyterHub.load_roles = [{"name": "jupyterhub-idle-culler", "services": ["jupyterhub-idle-culler"],
                                "scopes": ["list:users", "read:servers", "delete:servers"]}]
    for key, code in sorted(values["hub"]["extraConfig"].items()):
        exec(compile(code, key, "exec"), {"c": c})
    return c


def test_extra_config_keeps_the_culler_and_gives_services_pod_urls(
        values: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    c = run_extra_config(values, monkeypatch, tmp_path)
    services = {s["name"]: s for s in c.JupyterHub.services}
    assert "jupyterhub-idle-culler" in services, "the course policy dropped the chart's culler"
    assert "jupyterhub-idle-culler" in {r["name"] for r in c.JupyterHub.load_roles}
    assert "exchange" in services
    assert c.JupyterHub.authenticator_class == "hub.auth.RosterAuthenticator"
    assert c.NativeAuthenticator.open_signup is False
    proxy_rule = [rule for rule in values["hub"]["networkPolicy"]["ingress"]
                  if any(f.get("podSelector", {}).get("matchLabels", {}).get("component") == "proxy"
                         for f in rule["from"])]
    (allowed,) = [p for rule in proxy_rule for p in rule["ports"]]
    exchange_port = values["hub"]["service"]["extraPorts"][0]["targetPort"]
    for name, service in services.items():
        if "url" not in service:
            continue
        url = urlparse(service["url"])
        assert url.hostname == POD_IP, f"service {name} listens on {url.hostname}, unreachable from other pods"
        assert allowed["port"] <= url.port <= allowed["endPort"], f"the proxy may not reach {name}"
    assert urlparse(services["exchange"]["url"]).port == exchange_port
    formgraders = [s for s in services.values() if s.get("environment", {}).get("JUPYTERHUB_DEFAULT_URL")]
    assert formgraders, "no formgrader services"
    for service in formgraders:
        assert service["environment"]["DEEPGRADE_EXCHANGE_URL"].startswith(f"http://{POD_IP}:{exchange_port}/")
    assert any((tmp_path / "courses").iterdir()), "prepare_courses laid out no course folders"


# -- workers, volumes and databases ------------------------------------------------------------------
def test_workers_take_a_gpu_and_read_their_urls_from_secrets(manifests: list[dict[str, Any]]) -> None:
    worker = find(manifests, "Deployment", "deepgrade-worker")
    spec = pod_spec(worker)
    (container,) = spec["containers"]
    assert container["command"][:2] == ["deepgrade", "worker"]
    assert container["resources"]["limits"][GPU] == "1"
    assert any("nvidia.com/gpu" in key for key in spec["nodeSelector"])
    assert any(t["key"] == GPU for t in spec["tolerations"])
    env = env_of(container)
    assert env["DEEPGRADE_QUEUE"]["value"] == "celery"
    assert secret_ref(env["DEEPGRADE_DB_URL"]) == ("deepgrade-secrets", "db-url")
    assert secret_ref(env["DEEPGRADE_BROKER_URL"]) == ("deepgrade-secrets", "broker-url")
    assert "value" not in env["DEEPGRADE_DB_URL"] and "value" not in env["DEEPGRADE_BROKER_URL"]
    assert env["DEEPGRADE_SANDBOX"]["value"] == "bubblewrap", "the process sandbox would expose hidden data"


def test_workers_and_hub_share_deepgrade_home_and_only_workers_see_hidden_data(
        values: dict[str, Any], manifests: list[dict[str, Any]]) -> None:
    worker = find(manifests, "Deployment", "deepgrade-worker")
    spec, (container,) = pod_spec(worker), pod_spec(worker)["containers"]
    env = env_of(container)
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]
              if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    home = env["DEEPGRADE_HOME"]["value"]
    assert claims[mounts[home]["name"]] == "deepgrade-home"
    hub = values["hub"]
    hub_claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in hub["extraVolumes"]
                  if "persistentVolumeClaim" in v}
    hub_mounts = {m["mountPath"]: m["name"] for m in hub["extraVolumeMounts"]}
    assert hub["extraEnv"]["DEEPGRADE_HOME"] == home
    assert hub_claims[hub_mounts[home]] == "deepgrade-home"
    home_claim = find(manifests, "PersistentVolumeClaim", "deepgrade-home")
    assert home_claim["spec"]["accessModes"] == ["ReadWriteMany"], "hub and workers run on different nodes"
    # the hidden data: read-only, in the workers only
    data = mounts[env["DEEPGRADE_DATA_MIRROR"]["value"]]
    assert data["readOnly"] is True and claims[data["name"]] == "deepgrade-datasets"
    user_claims = {v["persistentVolumeClaim"]["claimName"] for v in values["singleuser"]["storage"]["extraVolumes"]}
    assert "deepgrade-datasets" not in user_claims
    # one split secret for the hub and every worker, from a Secret user pods never mount
    secret_file = env["DEEPGRADE_SPLIT_SECRET"]["value"]
    assert hub["extraEnv"]["DEEPGRADE_SPLIT_SECRET"] == secret_file
    worker_secret = next(v for v in spec["volumes"] if v["name"] == mounts[str(Path(secret_file).parent)]["name"])
    hub_secret = next(v for v in hub["extraVolumes"] if v["name"] == hub_mounts[str(Path(secret_file).parent)])
    assert worker_secret["secret"]["secretName"] == hub_secret["secret"]["secretName"] == "deepgrade-split-secret"
    user_volumes = str(values["singleuser"])
    assert "deepgrade-split-secret" not in user_volumes and "DEEPGRADE_SPLIT_SECRET" not in user_volumes
    # the sandbox's scratch space is the node's disk, inside DEEPGRADE_HOME where the code puts it
    scratch = mounts[f"{home}/grading"]
    assert any(v["name"] == scratch["name"] and "emptyDir" in v for v in spec["volumes"])


@pytest.mark.parametrize(("name", "data_dir"), [("deepgrade-postgresql", "/var/lib/postgresql/data"),
                                                ("deepgrade-redis", "/data")])
def test_databases_keep_their_data_on_a_volume(manifests: list[dict[str, Any]], name: str, data_dir: str) -> None:
    stateful = find(manifests, "StatefulSet", name)
    templates = {t["metadata"]["name"]: t for t in stateful["spec"]["volumeClaimTemplates"]}
    (container,) = pod_spec(stateful)["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    assert mount["name"] in templates
    assert templates[mount["name"]]["spec"]["resources"]["requests"]["storage"]
    find(manifests, "Service", name)
    password = "POSTGRES_PASSWORD" if "postgres" in name else "REDIS_PASSWORD"
    assert secret_ref(env_of(container)[password]) is not None


def test_redis_persists_and_requires_the_password(manifests: list[dict[str, Any]]) -> None:
    (container,) = pod_spec(find(manifests, "StatefulSet", "deepgrade-redis"))["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"


def test_both_databases_exist(manifests: list[dict[str, Any]], values: dict[str, Any]) -> None:
    """The hub's database (hub.db.url) is created next to the course store's."""
    hub_db = urlparse(values["hub"]["db"]["url"]).path.lstrip("/")
    init = find(manifests, "ConfigMap", "deepgrade-postgresql-init")
    assert any(f"CREATE DATABASE {hub_db} " in sql for sql in init["data"].values())
    (container,) = pod_spec(find(manifests, "StatefulSet", "deepgrade-postgresql"))["containers"]
    assert env_of(container)["POSTGRES_DB"]["value"] != hub_db


def test_the_public_data_job_fills_the_volume_user_pods_mount(manifests: list[dict[str, Any]]) -> None:
    job = find(manifests, "Job", "deepgrade-public-data")
    spec, (container,) = pod_spec(job), pod_spec(job)["containers"]
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    code = container["command"][-1]
    compile(code, "public-data", "exec")
    # the public rows are the complement of the hidden ones: the job reads the workers' split secret
    secrets = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
    secret_file = Path(env_of(container)["DEEPGRADE_SPLIT_SECRET"]["value"])
    assert secrets[mounts[str(secret_file.parent)]["name"]] == "deepgrade-split-secret"
    (target,) = re.findall(r'materialize\("([^"]+)"', code)
    assert claims[mounts[target]["name"]] == "deepgrade-public-data" and not mounts[target].get("readOnly")
    source = mounts[env_of(container)["DEEPGRADE_DATA_MIRROR"]["value"]]
    assert source["readOnly"] is True and claims[source["name"]] == "deepgrade-datasets"
    assert "hidden=True" not in code and "--hidden" not in code
