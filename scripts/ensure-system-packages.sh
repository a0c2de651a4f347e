#!/usr/bin/env bash
# Install the Debian packages deepgrade needs, only when they are missing (CI runs as root).
#   ensure-system-packages.sh hub    what `make hub` needs: the sandbox and the proxy's npm
#   ensure-system-packages.sh test   also the browser, Redis and PostgreSQL the tests use
set -euo pipefail
purpose="${1:-test}"
needed=()
command -v bwrap >/dev/null 2>&1 || needed+=(bubblewrap)    # the grading sandbox and student servers
command -v npm >/dev/null 2>&1 || needed+=(npm)             # configurable-http-proxy
if [ "$purpose" = test ]; then
  command -v chromium >/dev/null 2>&1 || needed+=(chromium) # browser tests (Playwright)
  command -v redis-server >/dev/null 2>&1 || needed+=(redis-server) # the Celery queue backend's tests
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || needed+=(postgresql) # the PostgreSQL store and gradebook tests
fi
if [ ${#needed[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${needed[*]} (run as root or: sudo apt-get install ${needed[*]})" >&2
  exit 1
fi
echo "installing system packages: ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq "${needed[@]}" >/dev/null
