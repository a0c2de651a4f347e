"""JupyterHub configuration for deepgrade.

One file for every deployment: the course policy (sign-in, groups, roles, services,
limits) is shared, and ``DEEPGRADE_HUB_MODE`` picks how servers are started:

- ``local`` (default, what ``make hub`` runs): local processes, SQLite, configurable-http-proxy;
- ``docker`` (``docker-compose.yml``): DockerSpawner containers with CPU and GPU profiles,
  see ``hub/docker.py``;
- ``kubernetes`` follows in its own module.
"""

from hub.policy import HubSettings, apply_course_policy

c = get_config()  # noqa: F821
settings = HubSettings()
apply_course_policy(c, settings)

if settings.mode == "local":
    from hub import local

    local.configure(c, settings)
elif settings.mode == "docker":
    from hub import docker

    docker.configure(c, settings)
else:
    raise SystemExit(f"DEEPGRADE_HUB_MODE={settings.mode!r} is not a deployment mode: use 'local' or 'docker'")
