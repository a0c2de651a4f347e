#!/usr/bin/env bash
# Install Docker from Debian only when it is missing. CI runs as root.
#   ensure-docker.sh           the engine (docker.io: dockerd, containerd, runc); the Docker sandbox
#                              and Docker-mode hub tests start their own dockerd (--storage-driver=vfs)
#   ensure-docker.sh compose   also docker-compose (1.29.2), which checks docker-compose.yml
set -euo pipefail
needed=()
command -v dockerd >/dev/null 2>&1 || needed+=(docker.io)
if [ "${1:-}" = compose ]; then
  command -v docker-compose >/dev/null 2>&1 || needed+=(docker-compose)
fi
if [ ${#needed[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing ${needed[*]} (run as root or: sudo apt-get install ${needed[*]})" >&2
  exit 1
fi
echo "installing ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package scripts from starting a system-wide daemon; the tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
command -v dockerd >/dev/null 2>&1
if [ "${1:-}" = compose ]; then command -v docker-compose >/dev/null 2>&1; fi
