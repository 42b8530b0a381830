#!/usr/bin/env bash
# deploy/smoke.sh - build the Sluice image with podman and run the whole stack from it:
# PostgreSQL and Mosquitto on the host (127.0.0.1), then persister, notifier, one edge and
# devsim, each in its own container (--network host), configured only through SLUICE_*
# variables as in docker-compose.yml. Checks: non-root processes, /healthz and /readyz,
# data on MQTT, devsim --verify (no missing or duplicate rows), and a clean exit on
# `podman stop` (SIGTERM) within the grace period. Exits 1 if any check fails.
# Needs root, podman, PostgreSQL 15 and Mosquitto (scripts/deps); takes a few minutes.
# Not part of CI. Everything it starts is removed on exit; state lives in $SMOKE_DIR.
#
#   deploy/smoke.sh [--no-build] [--devices N] [--duration S] [--rate R]
set -euo pipefail
cd "$(dirname "$0")/.."
build=1 devices=300 duration=20 rate=5
while [ $# -gt 0 ]; do
  case $1 in
    --no-build) build= ;;
    --devices) devices=$2; shift ;;
    --duration) duration=$2; shift ;;
    --rate) rate=$2; shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "smoke: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
# shellcheck source=scripts/stack.sh
. scripts/stack.sh

image=localhost/sluice:latest
dir=${SMOKE_DIR:-/tmp/sluice-smoke}
grace=30 # compose's stop_grace_period; each service is configured to finish well within it
PGPORT=26432 MQTTPORT=26883 EDGE=127.0.0.1:26700
names=(sluice-smoke-devsim sluice-smoke-edge sluice-smoke-notifier sluice-smoke-persister)
dsn="postgresql://postgres@127.0.0.1:$PGPORT/sluice"
fails=0

say() { echo "smoke: $*"; }
pass() { echo "  ok   $*"; }
fail() { echo "  FAIL $*"; fails=$((fails + 1)); }
check() { # DESCRIPTION COMMAND...: one line, ok or FAIL
  local what=$1; shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
wait_for() { # SECONDS COMMAND...: poll every 0.2 s until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@"; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.2
  done
}

# Leftovers of an earlier run (even one killed with -9) go first, so reruns start clean.
cleanup() {
  podman rm -f -i -t 0 "${names[@]}" >/dev/null 2>&1 || true
  if [ -f "$dir/mqtt/mosquitto.pid" ]; then kill "$(cat "$dir/mqtt/mosquitto.pid")" 2>/dev/null || true; fi
  pg_stop "$dir/pg"
}
finish() {
  local rc=$?
  trap - EXIT INT TERM HUP
  if [ $rc -ne 0 ] || [ $fails -ne 0 ]; then
    for n in "${names[@]}"; do
      podman container exists "$n" 2>/dev/null || continue
      echo "--- last log lines of $n"
      podman logs --tail 15 "$n" 2>&1 | sed 's/^/    /'
    done
  fi
  cleanup
  rm -rf "$dir"
  if [ $fails -ne 0 ]; then
    say "FAILED: $fails checks failed"
    exit 1
  elif [ $rc -ne 0 ]; then
    say "FAILED: stopped early (exit $rc)"
    exit 1
  fi
  say "all checks passed"
}
cleanup
rm -rf "$dir"
trap finish EXIT
trap 'exit 1' INT TERM HUP

if [ -n "$build" ]; then
  deploy/base-images.sh
  say "building $image from deploy/Dockerfile"
  mkdir -p "$dir"
  podman build -q -f deploy/Dockerfile -t "$image" . >/dev/null 2>"$dir/build.log" ||
    { tail -n 30 "$dir/build.log"; exit 1; }
fi
podman image exists "$image" || { say "no image $image (run without --no-build)"; exit 1; }
say "image $image: $(podman image inspect -f '{{.Size}}' "$image" | awk '{printf "%.1f MB", $1 / 1e6}')"

mkdir -p "$dir/devsim"
chmod 755 "$dir"
say "PostgreSQL on 127.0.0.1:$PGPORT, Mosquitto on 127.0.0.1:$MQTTPORT ($dir)"
pg_start "$dir/pg" $PGPORT
mqtt_start "$dir/mqtt" $MQTTPORT
# The containers run as uid 10001: the secrets and devsim's state must be theirs. The broker
# (scripts/stack.sh mqtt_setup) takes only its users: the notifier logs in from a file.
head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/fleet.secret"
cp "$dir/mqtt/notifier.password" "$dir/mqtt-notifier.password"
chown 10001:10001 "$dir/fleet.secret" "$dir/mqtt-notifier.password" "$dir/devsim"
chmod 400 "$dir/fleet.secret" "$dir/mqtt-notifier.password"

# What docker-compose.yml and deploy/k8s give every container: the ulimits, a read-only
# root file system (no tmpfs either: Docker and Kubernetes add none), no capabilities,
# no privilege escalation.
confine=(--network host --ulimit nofile=20000:20000 --ulimit nproc=32768:32768
  --read-only --read-only-tmpfs=false --cap-drop ALL --security-opt no-new-privileges)
run() { # NAME COMMAND [podman options...]: a detached service container, as compose runs it
  local name=$1 cmd=$2; shift 2
  podman run -d --name "sluice-smoke-$name" --stop-timeout $grace "${confine[@]}" "$@" "$image" "$cmd" >/dev/null
}
say "starting persister, notifier and edge containers"
run persister sluice-persister -e SLUICE_DB="$dsn" -e SLUICE_PULL=tcp://127.0.0.1:26701 \
  -e SLUICE_ROUTER=tcp://127.0.0.1:26702 -e SLUICE_METRICS=127.0.0.1:26801
run notifier sluice-notifier -e SLUICE_BROKER=tcp://127.0.0.1:$MQTTPORT -e SLUICE_CLIENT_ID=sluice-smoke \
  -e SLUICE_PULL=tcp://127.0.0.1:26711 -e SLUICE_ROUTER=tcp://127.0.0.1:26712 -e SLUICE_METRICS=127.0.0.1:26802 \
  -e SLUICE_USERNAME=sluice-notifier -e SLUICE_PASSWORD_FILE=/run/secrets/mqtt_password \
  -v "$dir/mqtt-notifier.password:/run/secrets/mqtt_password:ro"
run edge sluice-edge -e SLUICE_LISTEN=$EDGE -e SLUICE_EDGE_ID=smoke-edge-0 \
  -e SLUICE_PERSISTER_PUSH=tcp://127.0.0.1:26701 -e SLUICE_PERSISTER_ROUTER=tcp://127.0.0.1:26702 \
  -e SLUICE_NOTIFIER_PUSH=tcp://127.0.0.1:26711 -e SLUICE_NOTIFIER_ROUTER=tcp://127.0.0.1:26712 \
  -e SLUICE_SECRET_FILE=/run/secrets/fleet_secret -e SLUICE_METRICS=127.0.0.1:26803 \
  -v "$dir/fleet.secret:/run/secrets/fleet_secret:ro"

http_ok() { curl -fsS -o /dev/null --max-time 2 "http://$1"; }
running() { [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# Every process in the container (the notifier's publisher children too) runs as 10001.
non_root() {
  uids=$(podman top "$1" huser 2>/dev/null | tail -n +2 | sort -u | tr '\n' ' ')
  [ "$uids" = "10001 " ]
}
check_non_root() {
  if wait_for 10 non_root "$1"; then pass "$1 processes run as uid 10001, not root"
  else fail "$1 processes run as uid 10001, not root (host uids: ${uids:-no process})"; fi
}
logged() { podman logs "$1" 2>&1 | grep -q -- "$2"; }

say "checking the services (up to 30 s each)"
for svc in persister:26801 notifier:26802 edge:26803; do
  n=sluice-smoke-${svc%%:*} port=${svc##*:}
  check "$n is running" wait_for 10 running "$n"
  check "$n logged event=start" wait_for 10 logged "$n" "event=start"
  check_non_root "$n"
  check "$n /healthz answers 200 on 127.0.0.1:$port" wait_for 30 http_ok "127.0.0.1:$port/healthz"
  check "$n /readyz answers 200 on 127.0.0.1:$port" wait_for 30 http_ok "127.0.0.1:$port/readyz"
done
[ $fails -eq 0 ] || exit 1

mosquitto_sub -h 127.0.0.1 -p $MQTTPORT -u operator -P "$(cat "$dir/mqtt/operator.password")" -t 'devices/+/data' -C 1 -W $((duration + 60)) >"$dir/mqtt-data.txt" 2>&1 &
sub=$!
say "devsim: $devices devices x $rate msg/s for $duration s against $EDGE, with --verify"
# devsim keeps its per-process records in a mkdtemp() directory under /tmp.
podman run -d --name sluice-smoke-devsim "${confine[@]}" --tmpfs /tmp \
  -e SLUICE_EDGES=$EDGE -e SLUICE_DEVICES="$devices" -e SLUICE_RATE="$rate" -e SLUICE_DURATION="$duration" \
  -e SLUICE_PREFIX=smoke -e SLUICE_FLEET_SECRET="$(cat "$dir/fleet.secret")" -e SLUICE_STATE_DIR=/state \
  -e SLUICE_VERIFY="$dsn" -e SLUICE_JSON=/state/summary.json -v "$dir/devsim:/state" \
  "$image" sluice-devsim >/dev/null
check_non_root sluice-smoke-devsim
code=$(podman wait sluice-smoke-devsim)
check "devsim exited 0 (every message acked, verify passed; got $code)" test "$code" = 0
summary() { # prints acked, unacked, verify.ok, missing, duplicates from devsim's JSON
  /usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); v=s["verify"] or {}
print(s["acked"], s["unacked"], v.get("ok"), v.get("missing"), v.get("duplicates"))' "$dir/devsim/summary.json"
}
if read -r acked unacked vok missing dups < <(summary 2>/dev/null); then
  say "devsim: acked=$acked unacked=$unacked verify ok=$vok missing=$missing duplicates=$dups"
  check "devsim acked messages (acked=$acked > 0, unacked=$unacked = 0)" test "$acked" -gt 0 -a "$unacked" = 0
  check "verify: no missing rows ($missing) and no duplicates ($dups)" \
    test "$vok" = True -a "$missing" = 0 -a "$dups" = 0
else
  fail "devsim wrote its JSON summary"
fi
rows=$(psql "$dsn" -tAc "select count(*) from telemetry where device_id like 'smoke-%'" 2>/dev/null || echo 0)
check "PostgreSQL holds the rows (telemetry: $rows)" test "${rows:-0}" -gt 0
check "data reached MQTT through the notifier (devices/+/data)" wait_for 10 test -s "$dir/mqtt-data.txt"
kill "$sub" 2>/dev/null || true

# SIGTERM in the order an operator would stop them: devices' side first.
say "podman stop (SIGTERM, grace $grace s) edge, notifier, persister"
for svc in edge:"event=drain_begin event=exit" notifier:"event=stop" persister:"event=stopped"; do
  n=sluice-smoke-${svc%%:*}
  t0=$(date +%s%N)
  podman stop -t $grace "$n" >/dev/null
  ms=$((($(date +%s%N) - t0) / 1000000))
  code=$(podman inspect -f '{{.State.ExitCode}}' "$n")
  check "$n stopped in $ms ms with exit code $code (0 expected; 137 = killed at the grace period)" \
    test "$code" = 0
  for line in ${svc#*:}; do
    check "$n logged its drain/exit line ($line)" logged "$n" "$line"
  done
done
