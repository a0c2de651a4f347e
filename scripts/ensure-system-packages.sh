#!/usr/bin/env bash
# Install the Debian packages the tests need, only when they are missing (CI runs as root).
set -euo pipefail
needed=()
command -v bwrap >/dev/null 2>&1 || needed+=(bubblewrap)          # the grading sandbox
command -v chromium >/dev/null 2>&1 || needed+=(chromium)          # browser tests (Playwright)
command -v npm >/dev/null 2>&1 || needed+=(npm)                    # configurable-http-proxy
if [ ${#needed[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${needed[*]} (run as root or: sudo apt-get install ${needed[*]})" >&2
  exit 1
fi
echo "installing system packages: ${needed[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || true
apt-get install -y -qq "${needed[@]}" >/dev/null
