#!/usr/bin/env bash
# Builds local stand-ins for the two public base images digitflow's Dockerfile and
# docker-compose.yml name (python:3.11-slim-bookworm, redis:7.4-alpine), for machines that reach
# Debian's package mirrors but no image registry. Each is Debian bookworm (debootstrap
# --variant=minbase, imported with `podman import`) plus the packages that image provides, tagged
# with the exact name the project uses, so `docker-compose build` / `up` find them locally.
#
#   CONTAINERS_CONF=scripts/podman/containers.conf bash scripts/podman/standin-images.sh
#
# Cached: an image is built only when it is missing, or when it is one of ours (label
# org.digitflow.standin) built from an older version of these files. An image of that name that is
# not ours (a real one pulled earlier) is left alone and used. podman's storage is the one
# CONTAINERS_STORAGE_CONF (or podman's default) selects. Runs of this script on the same storage
# wait for each other (flock), so two test runs never build twice.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
LABEL=org.digitflow.standin

# The exact names the project uses, read from its files.
mapfile -t python_names < <(sed -n 's/^FROM[[:space:]]\+\([^[:space:]]\+\).*/\1/p' "$REPO/Dockerfile" | sort -u)
redis_name="$(sed -n 's/^[[:space:]]*image:[[:space:]]*\(redis:[^[:space:]]\+\).*/\1/p' "$REPO/docker-compose.yml")"
if [ "${#python_names[@]}" -ne 1 ] || [[ "${python_names[0]}" != python:3.11-* ]] || [ -z "$redis_name" ]; then
  echo "standin-images: expected one python:3.11-* base in the Dockerfile and a redis image in" \
       "docker-compose.yml; found: ${python_names[*]:-none} / ${redis_name:-none}" >&2
  exit 1
fi
# Fully qualified, as the Docker API and podman's short-name rules resolve these short names.
PYTHON_IMAGE="docker.io/library/${python_names[0]}"
REDIS_IMAGE="docker.io/library/$redis_name"
BASE_IMAGE="localhost/digitflow-standin/debian:bookworm-minbase"

# Version of the recipe: a change to the Containerfiles, the entrypoint or BASE_RECIPE (bump it
# when build_base changes what it makes) rebuilds our images.
BASE_RECIPE="bookworm minbase ca-certificates, machine CA bundle, v1"
RECIPE="$( (echo "$BASE_RECIPE"; cat "$HERE/python.Containerfile" "$HERE/redis.Containerfile" \
             "$HERE/redis-entrypoint.sh") | sha256sum | cut -c1-16)"

label_of() {  # prints the image's standin label ("" if not ours); fails if there is no such image
  podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null
}

needs_build() {  # true when $1 is missing, or ours but from another recipe
  local label
  label="$(label_of "$1")" || return 0
  label="${label/<no value>/}"
  if [ -z "$label" ]; then
    echo "standin-images: $1 exists and is not a stand-in: using it" >&2
    return 1
  fi
  [ "$label" != "$RECIPE" ]
}

work=""
trap '[ -z "$work" ] || rm -rf "$work"' EXIT

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
    | podman import -q --change "LABEL $LABEL=$RECIPE" --change 'CMD ["bash"]' \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        - "$BASE_IMAGE" >/dev/null
  rm -rf "$work"
}

build_on_base() {  # $1 image name, $2 Containerfile
  echo "standin-images: building $1" >&2
  podman build -q --pull=never --build-arg "BASE=$BASE_IMAGE" --label "$LABEL=$RECIPE" \
    -f "$HERE/$2" -t "$1" "$HERE" >/dev/null
}

remove_if_replaced() {  # $1 the id one of our images had before this run; dropped once untagged
  [ -n "$1" ] || return 0
  if [ -z "$(podman image inspect --format '{{ .RepoTags }}' "$1" 2>/dev/null | tr -d '[]')" ]; then
    podman rmi "$1" >/dev/null 2>&1 || true  # still used by a container: stays
  fi
}

our_id() {  # the id of image $1 if it is one of our stand-ins, else nothing
  local label
  label="$(label_of "$1")" || return 0
  [ -z "${label/<no value>/}" ] || podman image inspect --format '{{ .Id }}' "$1"
}

lock_dir="$(podman info --format '{{ .Store.GraphRoot }}')"
mkdir -p "$lock_dir"
exec 9>"$lock_dir/digitflow-standin.lock"
flock 9

if needs_build "$PYTHON_IMAGE" || needs_build "$REDIS_IMAGE"; then
  old=("$(our_id "$PYTHON_IMAGE")" "$(our_id "$REDIS_IMAGE")" "$(our_id "$BASE_IMAGE")")
  if needs_build "$BASE_IMAGE"; then build_base; fi
  if needs_build "$PYTHON_IMAGE"; then build_on_base "$PYTHON_IMAGE" python.Containerfile; fi
  if needs_build "$REDIS_IMAGE"; then build_on_base "$REDIS_IMAGE" redis.Containerfile; fi
  for id in "${old[@]}"; do remove_if_replaced "$id"; done
fi
echo "standin-images: ready: $PYTHON_IMAGE $REDIS_IMAGE" >&2
