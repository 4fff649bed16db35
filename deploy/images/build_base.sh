#!/usr/bin/env bash
# Build the offline base image (Debian bookworm minbase + python3, the host's CA bundle) and import it as $1
# (default headwater-base:bookworm). No registry is reachable here, so every image starts from this one.
# The root filesystem tarball is cached in $HEADWATER_IMAGE_CACHE (default /var/cache/headwater-images), outside
# the repository; a rerun only re-imports it (seconds) and does nothing when the image already exists.
set -euo pipefail
tag="${1:-headwater-base:bookworm}"
cache="${HEADWATER_IMAGE_CACHE:-/var/cache/headwater-images}"
tarball="$cache/base-bookworm.tar"
if docker image inspect "$tag" >/dev/null 2>&1; then
  exit 0
fi
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  rootfs="$(mktemp -d "$cache/rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  echo "debootstrap bookworm into $rootfs (about 3 minutes) ..." >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" >&2
  # pip inside a build goes through the same TLS-inspecting proxy as the host: trust the same roots.
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  ln -sf python3 "$rootfs/usr/bin/python"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
  tar -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
fi
docker import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' -c 'CMD ["python3"]' \
  "$tarball" "$tag" >/dev/null
