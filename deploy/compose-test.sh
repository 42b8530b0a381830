#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/compose-test.sh - docker-compose.yml run for real: 3 edges behind HAProxy, 2 persisters.
# Engine: docker-compose 1.29 (Debian) against podman 4.3's Docker API socket, with netavark and
# aardvark-dns for service-name DNS (podman-compose 1.0.3 ignores --scale and mangles CMD
# healthchecks). Images: the Sluice image from deploy/Dockerfile, and stand-ins built from
# deploy/standins/ under the names of the official postgres:15, eclipse-mosquitto:2 and haproxy:2.6
# (no registry here). Then: devices (sluice-devsim on the host) connect through HAProxy on :7000;
# all three edges must carry devices; one edge is killed (SIGKILL); its devices must come back
# through the others, every message acked and stored once (devsim --verify against the stack's
# PostgreSQL). One ok/FAIL line per check, exit 1 if any fails. Root; not part of CI (minutes).
#
#   deploy/compose-test.sh [--no-build] [--keep] [--devices N] [--duration S]
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 keep='' devices=90 duration=40
while [ $# -gt 0 ]; do
  case $1 in
    --no-build) build= ;;
    --keep) keep=1 ;;
    --devices) devices=$2; shift ;;
    --duration) duration=$2; shift ;;
    -h|--help) sed -n '3,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "compose-test: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
project=sluicetest
dir=${COMPOSE_TEST_DIR:-/tmp/sluice-compose-test}
bin=build/release/bin
fails=0 api_pid='' ticker_pid='' devsim_pid=''

say() { echo "compose-test: $*"; }
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
wait_for() { # SECONDS COMMAND...: poll every 0.5 s
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

[ "$(id -u)" = 0 ] || { say "run as root (podman)"; exit 2; }
for t in podman docker-compose haproxy; do
  command -v $t >/dev/null || { say "$t missing (apt-get install podman docker-compose netavark aardvark-dns haproxy)"; exit 2; }
done
if [ ! -f /etc/containers/containers.conf ]; then
  say "write /etc/containers/containers.conf first (runc, ulimits): deploy/README.md, Build"
  exit 2
fi
[ -x $bin/sluice-devsim ] || { say "build first: cmake -S . -B build/release && cmake --build build/release"; exit 2; }
mkdir -p "$dir"

compose() { DOCKER_HOST=unix://$dir/podman.sock docker-compose -p $project "$@"; }
cleanup() {
  [ -z "$devsim_pid" ] || kill "$devsim_pid" 2>/dev/null || true
  if [ -z "$keep" ]; then compose down -v --remove-orphans >"$dir/down.log" 2>&1 || true; fi
  [ -z "$ticker_pid" ] || kill "$ticker_pid" 2>/dev/null || true
  [ -z "$api_pid" ] || kill "$api_pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

if [ -n "$build" ]; then
  say "building images (base images, stand-ins, sluice; a few minutes the first time)"
  deploy/base-images.sh >"$dir/build.log" 2>&1
  for s in postgres:15 eclipse-mosquitto:2 haproxy:2.6; do
    podman build --network host -q -t docker.io/library/$s -f deploy/standins/${s%%:*}.Dockerfile deploy/standins \
      >>"$dir/build.log" 2>&1
  done
  podman build --network host -q -f deploy/Dockerfile -t localhost/sluice:latest . >>"$dir/build.log" 2>&1
fi
[ -s deploy/secrets/fleet.secret ] || deploy/make-secrets.sh compose >/dev/null 2>&1

# The Docker API, and health checks: podman runs them from systemd timers, and there is no
# systemd here, so a loop runs them (compose's depends_on: service_healthy waits on them).
podman system service --time=0 "unix://$dir/podman.sock" >"$dir/api.log" 2>&1 &
api_pid=$!
wait_for 10 test -S "$dir/podman.sock"
(while :; do
  for c in $(podman ps -q --filter label=com.docker.compose.project=$project); do
    podman healthcheck run "$c" >/dev/null 2>&1 || true
  done
  sleep 2
done) &
ticker_pid=$!

compose down -v --remove-orphans >"$dir/down.log" 2>&1 || true
say "docker-compose up -d --scale edge=3 --scale persister=2"
t0=$SECONDS
compose up -d --scale edge=3 --scale persister=2 >"$dir/up.log" 2>&1 || { cat "$dir/up.log"; exit 1; }
say "up in $((SECONDS - t0)) s"
healthy() { [ "$(podman inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ]; }
for c in postgres_1 mosquitto_1 persister_1 persister_2 notifier_1 edge_1 edge_2 edge_3 lb_1; do
  check "$c healthy" wait_for 60 healthy ${project}_$c
done
ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
open_on() { curl -s "$(ip "$1"):9100/metrics" | awk '$1 == "sluice_edge_connections_open" {print $2}'; }
spread() { for e in 1 2 3; do printf '%s ' "edge_$e=$(open_on ${project}_edge_$e)"; done; }

dsn="host=$(ip ${project}_postgres_1) port=5432 user=sluice dbname=sluice password=$(cat deploy/secrets/pg.password)"
say "$devices devices for $duration s through HAProxy (127.0.0.1:7000)"
$bin/sluice-devsim --edges 127.0.0.1:7000 --secret-file deploy/secrets/fleet.secret --devices "$devices" --rate 1 \
  --duration "$duration" --prefix ct-$$ --verify "$dsn" --json "$dir/devsim.json" >"$dir/devsim.log" 2>&1 &
devsim_pid=$!
all_on_three() {
  local n
  for e in 1 2 3; do n=$(open_on ${project}_edge_$e); [ "${n:-0}" -gt 0 ] || return 1; done
}
total_open() { local s=0 n; for e in "$@"; do n=$(open_on ${project}_edge_$e); s=$((s + ${n:-0})); done; echo $s; }
check "all three edges carry devices ($(sleep 0; wait_for 30 all_on_three; spread))" all_on_three
before=$(spread)
victim=${project}_edge_2
say "kill -9 $victim ($before)"
podman kill --signal KILL $victim >/dev/null
both_hold_all() { [ "$(total_open 1 3)" -ge "$devices" ]; }
t1=$SECONDS
check "its devices came back through edge_1 and edge_3 ($(wait_for 60 both_hold_all; echo "$(spread) after $((SECONDS - t1)) s"))" both_hold_all
code=0
wait "$devsim_pid" || code=$?
devsim_pid=''
tail -n 2 "$dir/devsim.log" | sed 's/^/    /'
check "devsim exited 0: every message acked, --verify found none missing, none twice (exit $code)" test $code = 0
check "devsim reconnected the victim's devices (reconnects > 0)" \
  python3 -c "import json,sys; sys.exit(0 if json.load(open('$dir/devsim.json'))['reconnects'] > 0 else 1)"
check "HAProxy saw edge_2 go down" sh -c "podman logs ${project}_lb_1 2>&1 | grep -q 'edge.* is DOWN'"
if [ $fails -gt 0 ]; then say "FAILED: $fails checks (logs: $dir, compose logs: DOCKER_HOST=unix://$dir/podman.sock docker-compose -p $project logs)"; exit 1; fi
say "passed"
