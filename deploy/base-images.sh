#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/base-images.sh - make the two Debian base images deploy/Dockerfile starts
# from (debian:bookworm and debian:bookworm-slim) on a machine that has an apt
# mirror but no image registry, and tag them under the names the Dockerfile uses,
# so `podman build` never tries to pull. Root, podman and debootstrap needed.
# Skips an image that already exists unless --force is given.
#
#   deploy/base-images.sh [--force] [--mirror URI]
set -euo pipefail
force='' mirror=''
while [ $# -gt 0 ]; do
  case $1 in
    --force) force=1 ;;
    --mirror) mirror=$2; shift ;;
    -h|--help) sed -n '3,9p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "base-images: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
full=docker.io/library/debian:bookworm
slim=docker.io/library/debian:bookworm-slim
if [ -z "$force" ] && podman image exists "$full" && podman image exists "$slim"; then
  echo "base-images: $full and $slim exist (--force remakes them)"
  exit 0
fi

# The host's own apt sources (deb822) are what the images get too: same mirror,
# same suites (bookworm, -updates, -security), so builds see the host's versions.
sources=/etc/apt/sources.list.d/debian.sources
if [ -z "$mirror" ]; then
  mirror=$(sed -n 's/^URIs:[[:space:]]*//p' "$sources" 2>/dev/null | head -n1)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

work=$(mktemp -d /tmp/sluice-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
root=$work/root
echo "base-images: debootstrap bookworm from $mirror (about 30 s)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
if [ -f "$sources" ]; then
  rm -f "$root/etc/apt/sources.list"
  cp "$sources" "$root/etc/apt/sources.list.d/debian.sources"
fi
# As in the official images: no package lists or caches baked in, and apt's
# docker-clean hook so that later layers do not keep them either.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG

import() { # DIR NAME
  tar --numeric-owner -C "$1" -c . | podman import -q --change 'CMD ["bash"]' - "$2" >/dev/null
  echo "base-images: $2 ($(podman image inspect --format '{{.Size}}' "$2") bytes)"
}
import "$root" "$full"

# slim = the same system with documentation, man pages and translations left out,
# now and for every package installed later (the official slim images' dpkg rules).
cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
CFG
find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* "$root"/usr/share/lintian/*
import "$root" "$slim"
