#!/usr/bin/env bash
# Builds local stand-ins for the public base images digitflow's Dockerfile and docker-compose.yml
# name (python:3.11-slim-bookworm, redis:7.4-alpine, haproxy:2.6-alpine), for machines that reach
# Debian's package mirrors but no image registry. Each is Debian bookworm (debootstrap
# --variant=minbase, imported with `podman import`) plus the packages that image provides, tagged
# with the exact name the project uses, so `docker-compose build` / `up` find them locally.
#
#   export CONTAINERS_CONF=scripts/podman/containers.conf CONTAINERS_STORAGE_CONF=scripts/podman/storage.conf
#   bash scripts/podman/standin-images.sh
#
# Cached: an image is built only when it is missing, or when it is one of ours (label
# org.digitflow.standin) built from another version of its recipe. An image of that name that is
# not ours (a real one pulled earlier) is left alone and used. Runs on the same podman storage
# wait for each other (flock), so two test runs never build twice.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL=org.digitflow.standin

# The exact names the project uses, read from its files.
mapfile -t python_names < <(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$REPO/Dockerfile" | sort -u)
compose_image() {  # the image of docker-compose.yml whose name starts with $1
  sed -n "s/^[[:space:]]*image:[[:space:]]*\($1:[^[:space:]]\+\).*/\1/p" "$REPO/docker-compose.yml"
}
redis_name="$(compose_image redis)"
haproxy_name="$(compose_image haproxy)"
if [ "${#python_names[@]}" -ne 1 ] || [[ "${python_names[0]}" != python:3.11-* ]] \
   || [ -z "$redis_name" ] || [ -z "$haproxy_name" ]; then
  echo "standin-images: expected one python:3.11-* base in the Dockerfile, a redis and a haproxy" \
       "image in docker-compose.yml; found: ${python_names[*]:-none} / ${redis_name:-none} /" \
       "${haproxy_name:-none}" >&2
  exit 1
fi
# Fully qualified, as the Docker API and podman's short-name rules resolve these short names.
BASE_IMAGE="localhost/digitflow-standin/debian:bookworm-minbase"
IMAGES=("docker.io/library/${python_names[0]}" "docker.io/library/$redis_name"
        "docker.io/library/$haproxy_name")
CONTAINERFILES=(python.Containerfile redis.Containerfile haproxy.Containerfile)

# Recipe versions: bump BASE_RECIPE when build_base changes what it makes; an image built on the
# base also changes with its Containerfile (and the redis entrypoint).
BASE_RECIPE="$(echo "bookworm minbase ca-certificates, machine CA bundle, v1" | sha256sum | cut -c1-16)"
recipe_of() {  # $1 a Containerfile
  { echo "$BASE_RECIPE"; cat "$HERE/$1"; [ "$1" != redis.Containerfile ] || cat "$HERE/redis-entrypoint.sh"; } \
    | sha256sum | cut -c1-16
}

label_of() {  # the image's standin label ("" if not ours); fails if there is no such image
  local label
  label="$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null)" || return 1
  echo "${label/<no value>/}"
}

needs_build() {  # $1 image, $2 its recipe: true when missing, or ours from another recipe
  local label
  label="$(label_of "$1")" || return 0
  if [ -z "$label" ]; then
    echo "standin-images: $1 exists and is not a stand-in: using it" >&2
    return 1
  fi
  [ "$label" != "$2" ]
}

our_id() {  # the id of image $1 if it is one of our stand-ins, else nothing
  local label
  label="$(label_of "$1")" || return 0
  [ -z "$label" ] || podman image inspect --format '{{ .Id }}' "$1"
}

remove_if_replaced() {  # $1 the id one of our images had before; dropped once nothing tags it
  [ -n "$1" ] || return 0
  if [ -z "$(podman image inspect --format '{{ .RepoTags }}' "$1" 2>/dev/null | tr -d '[]')" ]; then
    podman rmi "$1" >/dev/null 2>&1 || true  # still used by a container: it stays
  fi
}

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT
trap 'exit 143' TERM INT  # through the EXIT trap

build_base() {
  work="$(mktemp -d "${TMPDIR:-/var/tmp}/digitflow-debootstrap.XXXXXX")"
  echo "standin-images: debootstrap bookworm (minbase) from $MIRROR" >&2
  debootstrap --variant=minbase --include=ca-certificates bookworm "$work/rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; return 1; }
  # The machine's CA bundle (and its local CAs, kept by a later update-ca-certificates), so that
  # pip and apt over https trust what this machine trusts.
  cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
  fi
  rm -rf "$work/rootfs/var/lib/apt/lists/"* "$work/rootfs/var/cache/apt/"*.bin \
         "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/log/"*.log
  tar -C "$work/rootfs" --numeric-owner -c . \
    | podman import -q --change "LABEL $LABEL=$BASE_RECIPE" --change 'CMD ["bash"]' \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        - "$BASE_IMAGE" >/dev/null
  rm -rf "$work"
}

build_on_base() {  # $1 image name, $2 Containerfile, $3 recipe
  echo "standin-images: building $1" >&2
  podman build -q --pull=never --build-arg "BASE=$BASE_IMAGE" --label "$LABEL=$3" \
    -f "$HERE/$2" -t "$1" "$HERE" >/dev/null
}

lock_dir="$(podman info --format '{{ .Store.GraphRoot }}')"
mkdir -p "$lock_dir"
exec 9>"$lock_dir/digitflow-standin.lock"
flock 9

old=()
for i in "${!IMAGES[@]}"; do
  recipe="$(recipe_of "${CONTAINERFILES[$i]}")"
  needs_build "${IMAGES[$i]}" "$recipe" || continue
  if needs_build "$BASE_IMAGE" "$BASE_RECIPE"; then
    old+=("$(our_id "$BASE_IMAGE")")
    build_base
  fi
  old+=("$(our_id "${IMAGES[$i]}")")
  build_on_base "${IMAGES[$i]}" "${CONTAINERFILES[$i]}" "$recipe"
done
for ((i = ${#old[@]} - 1; i >= 0; i--)); do remove_if_replaced "${old[$i]}"; done  # images, then base
echo "standin-images: ready: ${IMAGES[*]}" >&2
