#!/usr/bin/env bash
# Install a Docker engine (Debian's docker.io: dockerd, containerd, runc) only when dockerd is missing.
# The Docker sandbox tests start their own dockerd (--storage-driver=vfs) from it. CI runs as root.
set -euo pipefail
if command -v dockerd >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing the Docker engine (run as root or: sudo apt-get install docker.io)" >&2
  exit 1
fi
echo "installing the Docker engine: docker.io"
export DEBIAN_FRONTEND=noninteractive
# policy-rc.d keeps the package scripts from starting a system-wide daemon; the tests start their own.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq || true
apt-get install -y -qq --no-install-recommends docker.io >/dev/null
command -v dockerd >/dev/null 2>&1
