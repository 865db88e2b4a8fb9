#!/usr/bin/env bash
# Installs the Debian tools the test suite drives for real: docker-compose (the static validation of
# docker-compose.yml, and the compose test); podman with runc, conmon, netavark/aardvark-dns,
# catatonit and iptables (the Docker API that docker-compose drives in
# tests/integration/test_compose_podman.py: no Docker engine is needed) and debootstrap (the
# stand-in base images, scripts/podman/standin-images.sh); chromium (the browser tests drive
# Debian's headless Chromium through Playwright; `playwright install` is never used) and wrk (the
# HTTP load generator of benchmarks/serving.py, which tests/integration/test_bench_serving.py runs
# on tiny durations); haproxy and iproute2 (tests/integration/test_multihost.py and
# benchmarks/scaling.py build hosts from network namespaces with `ip netns` and put Debian's haproxy
# in front of the inference replicas).
# Python tools come from pip; this covers what PyPI cannot give us cleanly. `make install` runs it.
#
# On a machine without apt-get (macOS, other distributions) it only warns: `make up` needs none of
# this, and the tests that need a tool name it when they run.
set -euo pipefail

have_compose() {
  command -v docker-compose >/dev/null 2>&1 && return 0
  command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1
}

have_chromium() {
  [ -x /usr/bin/chromium ]
}

have_wrk() {
  command -v wrk >/dev/null 2>&1
}

have_haproxy() {
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ]
}

have_ip() {
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ]
}

have_podman() {
  local tool
  for tool in podman runc conmon debootstrap iptables /usr/lib/podman/netavark \
              /usr/lib/podman/aardvark-dns /usr/libexec/podman/catatonit; do
    command -v "$tool" >/dev/null 2>&1 || return 1
  done
}

need=()
have_compose || need+=(docker-compose)
have_chromium || need+=(chromium fonts-dejavu-core)
have_wrk || need+=(wrk)
have_haproxy || need+=(haproxy)
have_ip || need+=(iproute2)
have_podman || need+=(podman runc conmon netavark aardvark-dns catatonit iptables debootstrap)
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "ensure-system-tools: not root and no sudo; please install: ${need[*]}" >&2
    exit 0
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-system-tools: no apt-get here; please install: ${need[*]} (or Docker's compose plugin)" \
       "before running the tests" >&2
  exit 0
fi
echo "ensure-system-tools: installing ${need[*]} from Debian" >&2
export DEBIAN_FRONTEND=noninteractive
# Wait for a dpkg lock held by another apt run instead of failing at once.
apt_install() {
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${need[@]}" >/dev/null
}
apt_install 2>/dev/null || { $SUDO apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null && apt_install; }
have_compose || { echo "ensure-system-tools: docker-compose still missing after apt-get" >&2; exit 1; }
have_chromium || { echo "ensure-system-tools: chromium still missing after apt-get" >&2; exit 1; }
have_wrk || { echo "ensure-system-tools: wrk still missing after apt-get" >&2; exit 1; }
have_haproxy || { echo "ensure-system-tools: haproxy still missing after apt-get" >&2; exit 1; }
have_ip || { echo "ensure-system-tools: ip (iproute2) still missing after apt-get" >&2; exit 1; }
have_podman || { echo "ensure-system-tools: podman (or runc, debootstrap, ...) still missing after apt-get" >&2; exit 1; }
