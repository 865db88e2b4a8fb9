#!/usr/bin/env bash
# Installs the Debian tools the test suite drives for real (docker-compose for static validation of
# the compose file). Python tools come from pip; this covers what PyPI cannot give us cleanly.
set -euo pipefail
need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-tools: please install: ${need[*]}" >&2
  exit 1
fi
echo "ensure-system-tools: installing ${need[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
