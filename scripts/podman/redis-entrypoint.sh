#!/bin/sh
# Entrypoint of the redis stand-in image, doing what digitflow's compose file relies on from the
# official image's: options alone mean `redis-server <options>`; the server listens to other
# containers (protected mode off, since no password is configured); it owns /data and never runs
# as root. Anything else is run as given.
set -eu
if [ "${1#-}" != "$1" ]; then
    set -- redis-server "$@"
fi
if [ "$1" = "redis-server" ]; then
    set -- "$@" --protected-mode no
    if [ "$(id -u)" = "0" ]; then
        find /data ! -user redis -exec chown redis:redis {} +
        exec setpriv --reuid=redis --regid=redis --init-groups "$@"
    fi
fi
exec "$@"
