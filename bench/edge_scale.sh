#!/bin/sh
# edge_scale.sh - several sluice-edge processes on one box holding idle
# authenticated connections together (benchmark, not a test).
#
# One process may hold at most 20,000 fds here, so each edge gets CONNS
# (default 19,000) devices from its own client process, each client on its
# own range of 127.0.0.x source addresses. One `edge_bench --mode peer`
# plays the persister (instant acks) and drains the notifier PUSH for all
# edges. Prints every edge's RSS before/after and the user-space bytes per
# idle authenticated connection.
#
# usage: bench/edge_scale.sh [BIN_DIR]   env: EDGES=5 CONNS=19000 PORT=21800
set -eu
B=${1:-build-edgeperf/bin}
EDGES=${EDGES:-5}
CONNS=${CONNS:-19000}
PORT=${PORT:-21800}
TMP=$(mktemp -d /tmp/edge_scale.XXXXXX)
PPID_=""
EPIDS=""
CPIDS=""
cleanup() {
    # Clients first (the edges then have nobody to drain), then the edges
    # (they exit once their disconnect envelopes reached the peer), the peer last.
    for group in "$CPIDS" "$EPIDS" "$PPID_"; do
        for p in $group; do kill "$p" 2>/dev/null || true; done
        for p in $group; do wait "$p" 2>/dev/null || true; done
    done
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

"$B/edge_bench" --mode peer --port "$PORT" &
PPID_=$!
export SLUICE_FLEET_SECRET=bench-fleet-secret
e=0
while [ "$e" -lt "$EDGES" ]; do
    P=$PORT
    "$B/sluice-edge" --listen "127.0.0.1:$((PORT + 10 + e))" --edge-id "scale-$e" --workers 2 \
        --persister-push "tcp://127.0.0.1:$((P + 1))" --persister-router "tcp://127.0.0.1:$((P + 2))" \
        --notifier-push "tcp://127.0.0.1:$((P + 3))" --notifier-router "tcp://127.0.0.1:$((P + 4))" \
        --max-conns "$((CONNS + 100))" --allow-cidrs 127.0.0.0/8 --metrics "" --log-level warn &
    EPIDS="$EPIDS $!"
    e=$((e + 1))
done
sleep 1
for p in $EPIDS; do echo "$p $(rss_kb "$p")" >>"$TMP/rss0"; done

T0=$(date +%s.%N)
e=0
for p in $EPIDS; do
    # 16 source addresses per client, disjoint between clients.
    "$B/edge_bench" --mode idle --external 1 --port "$((PORT + 10 + e))" --conns "$CONNS" \
        --src-base "$((e * 16))" --nsrc 16 --hold 3600 >"$TMP/client$e" 2>&1 &
    CPIDS="$CPIDS $!"
    e=$((e + 1))
done
# Wait until every client reports all of its connections welcomed.
while [ "$(cat "$TMP"/client* 2>/dev/null | grep -c '^held')" -lt "$EDGES" ]; do
    if grep -q -v '^held' "$TMP"/client* 2>/dev/null; then cat "$TMP"/client*; exit 1; fi
    sleep 0.5
done
T1=$(date +%s.%N)
sleep 2
total=0
sum0=0
sum1=0
e=0
for p in $EPIDS; do
    r0=$(awk -v p="$p" '$1 == p {print $2}' "$TMP/rss0")
    r1=$(rss_kb "$p")
    fds=$(ls "/proc/$p/fd" | wc -l)
    held=$(awk '/^held/ {print $2}' "$TMP/client$e")
    echo "edge $e (pid $p): $held connections, $fds fds open, RSS $r0 KiB -> $r1 KiB:" \
        "$(( (r1 - r0) * 1024 / held )) bytes/connection"
    total=$((total + held))
    sum0=$((sum0 + r0))
    sum1=$((sum1 + r1))
    e=$((e + 1))
done
echo "total: $total authenticated idle connections on $EDGES edges, all welcomed in" \
    "$(awk -v a="$T0" -v b="$T1" "BEGIN {printf \"%.1f\", b - a}") s; edges RSS $sum0 KiB -> $sum1 KiB:" \
    "$(( (sum1 - sum0) * 1024 / total )) bytes/connection"
free -m | awk '/^Mem:/ {print "box memory used (kernel socket buffers, clients, edges): " $3 " MiB"}'
