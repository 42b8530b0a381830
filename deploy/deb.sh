#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/deb.sh - build the Debian package sluice_<version>_<arch>.deb with CPack
# (cmake/install.cmake) in build/deb (Release, prefix /usr, no tests), and show its
# metadata and dependencies. With --install (root: apt) it then installs it with
# `apt-get install ./sluice_*.deb`, checks that every program runs (--version) and
# that client/example.c builds with `pkg-config sluice-client` against /usr;
# --remove purges the package again at the end (leave the machine as it was).
# --container installs it instead in a fresh debian:bookworm-slim container (podman, the
# host's network for the apt mirror; deploy/base-images.sh makes the image) and runs every program.
#
#   deploy/deb.sh [--install [--remove] | --container] [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/deb do_install='' do_remove='' do_container=''
while [ $# -gt 0 ]; do
  case $1 in
    --install) do_install=1 ;;
    --remove) do_remove=1 ;;
    --container) do_container=1 ;;
    --build-dir) build=$2; shift ;;
    -h|--help) sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "deb: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
programs=(sluice-edge sluice-persister sluice-notifier sluice-api sluice-devsim sluice-replay sluice-token sluice-keys)

echo "deb: building in $build (Release, prefix /usr)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DSL_BUILD_TESTS=OFF -DCMAKE_INSTALL_PREFIX=/usr >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
rm -f "$build"/sluice_*.deb
(cd "$build" && cpack -G DEB >/dev/null)
deb=$(ls "$build"/sluice_*.deb)
echo "deb: $deb ($(du -k "$deb" | cut -f1) KiB)"
dpkg-deb --field "$deb" Package Version Architecture Depends Recommends | sed 's/^/  /'
dpkg-deb --contents "$deb" | awk '{print "  " $6 ($7 ? " " $7 " " $8 : "")}' | grep -v '/$'
if [ -n "$do_container" ]; then
  echo "deb: apt-get install in a fresh debian:bookworm-slim container"
  # shellcheck disable=SC2016 # expanded in the container
  podman run --rm --network host -v "$PWD/$build:/deb:ro" docker.io/library/debian:bookworm-slim sh -c '
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -qq --no-install-recommends /deb/'"$(basename "$deb")"' >/dev/null 2>&1 ||
      { echo "FAIL apt-get install"; exit 1; }
    fail=0
    for p in '"${programs[*]}"'; do
      if out=$($p --version 2>&1); then echo "ok   $out"; else echo "FAIL $p: $out"; fail=1; fi
    done
    exit $fail'
  exit $?
fi
[ -n "$do_install" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then echo "deb: --install needs root (apt)" >&2; exit 1; fi
echo "deb: apt-get install ./$deb"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "./$deb" >/dev/null
fail=0
for p in "${programs[@]}"; do
  if out=$("/usr/bin/$p" --version 2>&1); then echo "ok   $out"; else echo "FAIL /usr/bin/$p --version: $out"; fail=1; fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck disable=SC2046 # pkg-config prints flags, split on purpose
if cc -o "$tmp/example" /usr/share/doc/sluice/examples/example.c $(pkg-config --cflags --libs sluice-client) &&
   ldd "$tmp/example" | grep -q 'libsluice-client.so.0 => /'; then
  echo "ok   example.c built with pkg-config sluice-client $(pkg-config --modversion sluice-client), linked to $(ldd "$tmp/example" | awk '/libsluice-client/ {print $3}')"
else
  echo "FAIL example.c against the installed library"; fail=1
fi
if [ -n "$do_remove" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q sluice >/dev/null
  echo "deb: removed the package again"
fi
exit $fail
