#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/edge_rebalance.sh - one edge of two killed and restarted under 16,000 devices, then
# deploy/rebalance.py (issue 15 item 5; benchmark, not a test).
#
# A private PostgreSQL, one sluice-persister, edges A and B (2 workers each, an admin token) and
# sluice-devsim with --edges A,B (device i starts on edge i % 2 and fails over to the other when
# its edge goes; 2 processes: one may hold at most 20,000 files) over 127.0.0.2-41, 0.2 msg/s a
# device. Once all are connected and acks flow: kill -9 B and scrape sluice_edge_connections_open
# of A every 100 ms until A holds every device (the failover time); restart B and watch it stay
# empty for HOLD seconds; run deploy/rebalance.py --rate RATE and scrape both every 100 ms until
# both are within 10 % of the mean (the rebalance time); then stop devsim (it drains: every
# message must be acked) and let it --verify against PostgreSQL (every acked message stored
# exactly once). Prints a progress line a second and a summary; exit 0 only if nothing was lost
# and the fleet ended balanced.
#
# Run it in its own network namespace (ports 25930-25949, files in $D):
#   unshare -n -- sh -c 'ip link set lo up && bench/edge_rebalance.sh'
#   env: B=build/release/bin D=/tmp/sl-rebalance DEVICES=16000 RATE=2000 HOLD=10
#        EARLY_MAX=N: the edges' --early-max (default theirs, 1024 a worker; docs/performance.md says why
#        8192 fails over four times faster)
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/stack.sh
B=${B:-build/release/bin} D=${D:-/tmp/sl-rebalance} DEVICES=${DEVICES:-16000} RATE=${RATE:-2000} HOLD=${HOLD:-10}
early=() && [ -z "${EARLY_MAX:-}" ] || early=(--early-max "$EARLY_MAX")
P=25930 # PostgreSQL P, persister P+1..P+3, edges listen P+10/P+11, metrics P+12/P+13
rm -rf "$D/devsim.json" "$D"/*.log "$D/scrape"
mkdir -p "$D"
export SLUICE_FLEET_SECRET=rebalance-bench-fleet-secret
printf 'rebalance-bench-admin-token-0123456789\n' >"$D/admin-token"
chmod 600 "$D/admin-token"
dsn="host=127.0.0.1 port=$P user=postgres dbname=sluice"
pids=() devsim=''
trap stack_cleanup EXIT
trap 'exit 1' INT TERM
now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
say() { echo "edge_rebalance: $*"; }
opens() { curl -s -m 1 "127.0.0.1:$1/metrics" | awk '$1 == "sluice_edge_connections_open" {print $2; f = 1} END {if (!f) print 0}'; }
a_n() { opens $((P + 12)); }
b_n() { opens $((P + 13)); }

edge() { # NAME INDEX: start edge NAME, its pid in edge_pid
  "$B/sluice-edge" --listen 127.0.0.1:$((P + 10 + $2)) --edge-id "rb-$1" --workers 2 --max-conns 19000 \
    --allow-cidrs 127.0.0.0/8 --admin-token-file "$D/admin-token" --metrics 127.0.0.1:$((P + 12 + $2)) "${early[@]}" \
    --persister-push tcp://127.0.0.1:$((P + 1)) --persister-router tcp://127.0.0.1:$((P + 2)) \
    --notifier-push tcp://127.0.0.1:$((P + 4)) --notifier-router tcp://127.0.0.1:$((P + 5)) 2>>"$D/edge-$1.log" &
  edge_pid=$!
  pids+=("$edge_pid")
  local i=0
  until curl -sf -m 1 "127.0.0.1:$((P + 12 + $2))/readyz" >/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || { say "edge $1 not ready"; exit 1; }
    sleep 0.1
  done
}

say "PostgreSQL, persister, edges A and B (files in $D)"
pg_start "$D/pg" $P
"$B/sluice-persister" --db "$dsn" --pull tcp://127.0.0.1:$((P + 1)) --router tcp://127.0.0.1:$((P + 2)) \
  --metrics 127.0.0.1:$((P + 3)) 2>"$D/persister.log" &
pids+=($!)
edge A 0
edge B 1
b_pid=$edge_pid

say "$DEVICES devices (sluice-devsim, --edges A,B, 0.2 msg/s each)"
"$B/sluice-devsim" --edges 127.0.0.1:$((P + 10)),127.0.0.1:$((P + 11)) --devices "$DEVICES" --procs 2 \
  --src-ips 127.0.0.2-127.0.0.41 --rate 0.2 --ramp 4000 --duration 3600 --prefix "rb$$" \
  --verify "$dsn" --json "$D/devsim.json" >"$D/devsim.out" 2>"$D/devsim.log" &
devsim=$!
t=$(now)
until [ $(($(a_n) + $(b_n))) -ge "$DEVICES" ]; do
  kill -0 $devsim 2>/dev/null || { say "devsim died"; tail -5 "$D/devsim.log"; exit 1; }
  say "  connecting: A=$(a_n) B=$(b_n) ($(since "$t") s)"
  sleep 1
done
say "all connected in $(since "$t") s: A=$(a_n) B=$(b_n); 5 s of traffic"
sleep 5
tail -n 1 "$D/devsim.log" | sed 's/^/    devsim: /'

# -- kill -9 B: how long until A holds every device
before_b=$(b_n)
kill -KILL "$b_pid"
wait "$b_pid" 2>/dev/null
t_kill=$(now)
say "kill -9 edge B (it held $before_b); scraping A every 100 ms"
next=1
while :; do
  a=$(a_n)
  echo "$(since "$t_kill") A=$a" >>"$D/scrape"
  [ "$a" -lt "$DEVICES" ] || break
  el=$(since "$t_kill")
  if awk -v e="$el" -v n=$next 'BEGIN {exit !(e >= n)}'; then say "  A=$a ($el s)"; next=$((next + 1)); fi
  awk -v e="$el" 'BEGIN {exit !(e > 120)}' && { say "A never got every device back"; exit 1; }
  sleep 0.1
done
failover=$(since "$t_kill")
say "A holds all $DEVICES devices $failover s after the kill"
# Why a device took longer than its 1 s backoff: what A refused or closed early on the way.
curl -s -m 1 "127.0.0.1:$((P + 12))/metrics" | awk '/^sluice_edge_(refused|early_evicted|errors|connections_closed)_total/ && $2 > 0 {
  printf "%s%s", s, $1 "=" $2; s = " "} END {if (s) print ""}' | sed 's/^/    A: /'

# -- restart B: it stays empty
edge B 1
say "edge B restarted; watching it for $HOLD s"
b_max=0
for ((i = 1; i <= HOLD; i++)); do
  sleep 1
  a=$(a_n) b=$(b_n)
  [ "$b" -le "$b_max" ] || b_max=$b
  say "  $i s: A=$a B=$b"
done
say "restarted B held at most $b_max devices in $HOLD s"

# -- rebalance: how long until both are within 10 % of the mean
t_reb=$(now)
deploy/rebalance.py --token-file "$D/admin-token" --rate "$RATE" http://127.0.0.1:$((P + 12)) \
  http://127.0.0.1:$((P + 13)) >"$D/rebalance.log" 2>&1 &
reb=$!
t_bal=''
while kill -0 $reb 2>/dev/null || [ -z "$t_bal" ]; do
  a=$(a_n) b=$(b_n)
  echo "$(since "$t_reb") A=$a B=$b" >>"$D/scrape"
  if [ -z "$t_bal" ] && awk -v a="$a" -v b="$b" 'BEGIN {m = (a + b) / 2; exit !(m > 0 && a - m <= m / 10 && m - a <= m / 10)}'; then
    t_bal=$(since "$t_reb")
    say "  both within 10 % of the mean after $t_bal s: A=$a B=$b"
  fi
  kill -0 $reb 2>/dev/null || [ -n "$t_bal" ] || break
  sleep 0.1
done
rc_reb=0
wait $reb || rc_reb=$?
sed 's/^/    /' "$D/rebalance.log"
reb_s=$(since "$t_reb")
sleep 2
a=$(a_n) b=$(b_n)
say "rebalance.py exit $rc_reb after $reb_s s; 2 s later A=$a B=$b"

# -- stop devsim: it drains, then verifies
say "stopping devsim (drain, then --verify)"
kill -INT $devsim
rc_dev=0
wait $devsim || rc_dev=$?
devsim=''
tail -n 3 "$D/devsim.log" | sed 's/^/    /'
python3 - "$D/devsim.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
v = s["verify"] or {}
print("    devsim: sent %d acked %d resent %d reconnects %d; verify ok=%s found %s missing %s duplicates %s" % (
    s["sent"], s["acked"], s["resent"], s["reconnects"], v.get("ok"), v.get("found"), v.get("missing"),
    v.get("duplicates")))
PY
balanced=0
awk -v a="$a" -v b="$b" 'BEGIN {m = (a + b) / 2; exit !(m > 0 && a - m <= m / 10 && m - a <= m / 10)}' && balanced=1
echo
echo "devices $DEVICES, edges' --early-max ${EARLY_MAX:-default}: failover to A ${failover} s after kill -9 of B; restarted B held <= $b_max in $HOLD s;"
echo "rebalance (--rate $RATE): within 10 % after ${t_bal:-never} s, rebalance.py exit $rc_reb in $reb_s s (A=$a B=$b);"
echo "devsim exit $rc_dev (0: every message acked, --verify: each stored exactly once)"
[ $rc_dev = 0 ] && [ $rc_reb = 0 ] && [ $balanced = 1 ]
