#!/bin/sh
# As the official image: `redis-server ...` runs as the redis user in /data, listening on every interface
# without protected mode (the container network is the boundary).
set -e
if [ "${1#-}" != "$1" ]; then set -- redis-server "$@"; fi
if [ "$1" = "redis-server" ]; then
  chown -R redis:redis /data
  shift
  exec setpriv --reuid=redis --regid=redis --init-groups redis-server --bind "0.0.0.0 ::" --protected-mode no \
    --dir /data "$@"
fi
exec "$@"
