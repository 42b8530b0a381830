#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/compose-test.sh - docker-compose.yml run for real: 3 edges behind HAProxy, 2 persisters.
# Engine: docker-compose 1.29 (Debian) against podman 4.3's Docker API socket, with netavark and
# aardvark-dns for service-name DNS (podman-compose 1.0.3 ignores --scale and mangles CMD
# healthchecks). Images: the Sluice image from deploy/Dockerfile, and stand-ins built from
# deploy/standins/ under the names of the official postgres:15, eclipse-mosquitto:2 and haproxy:2.6
# (no registry here). Then: devices (sluice-devsim on the host) connect through HAProxy on :7000;
# all three edges must carry devices; one edge is killed (SIGKILL); its devices must come back
# through the others; restarted, it must stay (nearly) empty until deploy/rebalance.py brings
# every edge within 10 % of the mean; every message acked and stored once (devsim, stopped after
# at least S seconds, --verify against the stack's PostgreSQL). One ok/FAIL line per check, exit 1
# if any fails. Root; not part of CI (minutes).
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
    -h|--help) sed -n '3,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
    f=${s%%:*}
    podman build --network host -q -t docker.io/library/$s -f deploy/standins/${f#eclipse-}.Dockerfile deploy/standins \
      >>"$dir/build.log" 2>&1
  done
  podman build --network host -q -f deploy/Dockerfile -t localhost/sluice:latest . >>"$dir/build.log" 2>&1
fi
# (again when a file is missing, admin.token in secrets made before it: it keeps the others)
[ -s deploy/secrets/fleet.secret ] && [ -s deploy/secrets/admin.token ] || deploy/make-secrets.sh compose >/dev/null 2>&1

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
# --scale notifier=3 as well: docker-compose 1.29 does not read the file's
# `scale: 3` once --scale is given for other services.
say "docker-compose up -d --scale edge=3 --scale persister=2 --scale notifier=3"
t0=$SECONDS
compose up -d --scale edge=3 --scale persister=2 --scale notifier=3 >"$dir/up.log" 2>&1 ||
  { cat "$dir/up.log"; exit 1; }
say "up in $((SECONDS - t0)) s"
healthy() { [ "$(podman inspect -f '{{.State.Health.Status}}' "$1" 2>/dev/null)" = healthy ]; }
for c in postgres_1 mosquitto_1 persister_1 persister_2 notifier_1 notifier_2 notifier_3 edge_1 edge_2 edge_3 lb_1 api_1; do
  check "$c healthy" wait_for 60 healthy ${project}_$c
done
ip() { podman inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
open_on() { curl -s "$(ip "$1"):9100/metrics" | awk '$1 == "sluice_edge_connections_open" {print $2}'; }
spread() { for e in 1 2 3; do printf '%s ' "edge_$e=$(open_on ${project}_edge_$e)"; done; }

dsn="host=$(ip ${project}_postgres_1) port=5432 user=sluice dbname=sluice password=$(cat deploy/secrets/pg.password)"
say "$devices devices for at least $duration s through HAProxy (127.0.0.1:7000)"
# Runs until stopped (SIGINT: it stops sending, waits for the acks, verifies), at least $duration s.
$bin/sluice-devsim --edges 127.0.0.1:7000 --secret-file deploy/secrets/fleet.secret --devices "$devices" --rate 1 \
  --duration 3600 --prefix ct-$$ --verify "$dsn" --json "$dir/devsim.json" >"$dir/devsim.log" 2>&1 &
devsim_pid=$!
t_devsim=$SECONDS
all_on_three() {
  local n
  for e in 1 2 3; do n=$(open_on ${project}_edge_$e); [ "${n:-0}" -gt 0 ] || return 1; done
}
total_open() { local s=0 n; for e in "$@"; do n=$(open_on ${project}_edge_$e); s=$((s + ${n:-0})); done; echo $s; }
check "all three edges carry devices ($(sleep 0; wait_for 30 all_on_three; spread))" all_on_three
# Each device's data goes to one notifier by hashing its id over the three: all three publish.
published() { curl -s "$(ip "$1"):9100/metrics" | awk '$1 ~ /^sluice_notifier_published_total/ {s += $2} END {print s + 0}'; }
ntf_spread() { for n in 1 2 3; do printf '%s ' "notifier_$n=$(published ${project}_notifier_$n)"; done; }
all_ntf_publish() { local n; for n in 1 2 3; do [ "$(published ${project}_notifier_$n)" -gt 0 ] || return 1; done; }
check "all three notifiers publish ($(wait_for 30 all_ntf_publish; ntf_spread))" all_ntf_publish
before=$(spread)
victim=${project}_edge_2
say "kill -9 $victim ($before)"
podman kill --signal KILL $victim >/dev/null
both_hold_all() { [ "$(total_open 1 3)" -ge "$devices" ]; }
t1=$SECONDS
check "its devices came back through edge_1 and edge_3 ($(wait_for 60 both_hold_all; echo "$(spread) after $((SECONDS - t1)) s"))" both_hold_all

# The killed edge restarted: HAProxy sends it new devices, but the others keep theirs.
ups() { podman logs ${project}_lb_1 2>&1 | grep -c 'edge.* is UP' || true; }
ups0=$(ups)
say "podman start $victim"
# (its stderr: podman's complaint that there is no systemd for health timers; the loop above runs them)
podman start $victim >/dev/null 2>>"$dir/start.log"
check "$victim healthy again" wait_for 60 healthy $victim
check "HAProxy saw it come back up" wait_for 30 sh -c "[ \$(podman logs ${project}_lb_1 2>&1 | grep -c 'edge.* is UP') -gt $ups0 ]"
victim_max=0
for _ in 1 2 3 4 5 6 7 8 9 10; do
  sleep 1
  n=$(open_on $victim); [ "${n:-0}" -le $victim_max ] || victim_max=${n:-0}
done
check "restarted, it stays (nearly) empty for 10 s (at most $victim_max devices; $(spread))" test $victim_max -le $((devices / 20))

# Rebalance from the host, on each edge's metrics port (container addresses).
urls=() && for e in 1 2 3; do urls+=("http://$(ip ${project}_edge_$e):9100"); done
say "deploy/rebalance.py --rate 20 ${urls[*]}"
rb=0
deploy/rebalance.py --token-file deploy/secrets/admin.token --rate 20 --settle 5 "${urls[@]}" >"$dir/rebalance.log" 2>&1 ||
  rb=$?
sed 's/^/    /' "$dir/rebalance.log"
check "rebalance.py exit 0 (balanced)" test $rb = 0
within10() {
  local s=0 n e c=()
  for e in 1 2 3; do n=$(open_on ${project}_edge_$e); c+=("${n:-0}"); s=$((s + ${n:-0})); done
  for n in "${c[@]}"; do [ $((n * 30)) -ge $((s * 9)) ] && [ $((n * 30)) -le $((s * 11)) ] || return 1; done
}
check "every edge within 10 % of the mean ($(spread))" within10

left=$((duration - (SECONDS - t_devsim)))
[ $left -le 0 ] || { say "devsim runs $left s more (--duration $duration)"; sleep $left; }
say "stopping devsim (it drains the acks, then --verify)"
kill -INT "$devsim_pid"
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
