#!/bin/sh
# curve_cost.sh - what CURVE on the ZeroMQ links costs one edge (benchmark, not a test):
# bench/edge_bench --mode tput (100 devices x 64 frames in flight, the instant persister in the
# bench, acks through the ROUTER/DEALER path) with CURVE off and on, interleaved ROUNDS times so
# that a shared box's load hits both alike. Prints each run (acked frames/s, and the edge's CPU per
# acked frame, which a loaded box disturbs less), the median of each mode, the ratio, and the load
# average before and after beside the target. Run it in its own network namespace:
#
#   unshare -n -- sh -c 'ip link set lo up && bench/curve_cost.sh build-rel/bin'
#
# usage: bench/curve_cost.sh [BIN_DIR]   env: ROUNDS=5 SECONDS_EACH=10 PORT=21960
set -eu
B=${1:-build-rel/bin}
ROUNDS=${ROUNDS:-5}
SECONDS_EACH=${SECONDS_EACH:-10}
PORT=${PORT:-21960}
TMP=$(mktemp -d /tmp/curve_cost.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ "$r" -le "$ROUNDS" ]; do
    for c in 0 1; do
        out=$("$B/edge_bench" --edge-bin "$B/sluice-edge" --mode tput --conns 100 --window 64 \
            --seconds "$SECONDS_EACH" --port "$PORT" --curve "$c")
        fps=$(echo "$out" | sed -n 's/.*: \([0-9]*\) frames\/s acked.*/\1/p')
        cpu=$(echo "$out" | sed -n 's/^cpu: edge \([0-9]*\)%.*/\1/p')
        us=$(awk -v c="$cpu" -v f="$fps" 'BEGIN {printf "%.3f", c * 1e4 / f}')
        echo "$fps" >>"$TMP/curve$c"
        echo "$us" >>"$TMP/us$c"
        echo "round $r curve=$c: $fps frames/s, edge CPU $cpu% of one core = $us us per frame"
    done
    r=$((r + 1))
done
med() { sort -n "$1" | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
off=$(med "$TMP/curve0" | cut -d. -f1)
on=$(med "$TMP/curve1" | cut -d. -f1)
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "median of $ROUNDS: CURVE off $off frames/s, on $on frames/s = $(awk -v a="$on" -v b="$off" 'BEGIN {printf "%.0f", 100 * a / b}')% of plain"
echo "edge CPU per acked frame, median: off $(med "$TMP/us0") us, on $(med "$TMP/us1") us"
echo "target: CURVE on >= 500000 frames/s (the plain target of docs/performance.md (3)): $( [ "$on" -ge 500000 ] && echo met || echo NOT met)"
