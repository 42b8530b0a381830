#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/persister_upgrade.sh - a rolling upgrade of the persister under load, from an older version to this
# build, with kill -9 on both sides: the check that a schema change (docs/protocol.md §4) keeps old persisters
# working beside new ones. A check run by hand, not a test: it builds another version of the tree.
#
# OLD_REV (default 33aab91: the last commit before migration 007, session 15) is built in a git worktree in
# $D/old (or OLD=DIR names a directory holding its sluice-persister). A private PostgreSQL, one edge of this
# build pushing to two persister endpoints, and sluice-devsim (1,000 devices, 10 msg/s each, 44 s, resending
# what is not acked within 2 s). Timeline (seconds after devsim starts):
#    0  the OLD persister P1 alone: it made the schema of its version before devsim started
#    8  this build's persister P2 starts: it migrates (007 under P1's writes) and shares the batches
#   18  kill -9 P1: its batches in flight are resent by the devices, and stored once
#   22  P1 (OLD) again, on the migrated schema, beside P2
#   32  kill -9 P2; 36 P2 again
# Then devsim stops, drains and --verifies (every acked message stored exactly once), and the script checks the
# schema (version, device_id COLLATE "C"), that nothing went to telemetry_rejected or telemetry_conflicts, that
# both versions stored rows, and that both versions' command queues came back after the migration. Each persister's
# warnings are listed by event. Exit 0 only if all of it holds.
#
#   unshare -n -- sh -c 'ip link set lo up && bench/persister_upgrade.sh'
#   env: B=build/release/bin D=/tmp/sl-upgrade OLD_REV=33aab91 OLD=DIR
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/stack.sh
B=${B:-build/release/bin} D=${D:-/tmp/sl-upgrade} OLD_REV=${OLD_REV:-33aab91}
P=25950 # PostgreSQL P, P1 P+1..P+3, P2 P+4..P+6, the edge P+10 (metrics P+11)
say() { echo "persister_upgrade: $*"; }
mkdir -p "$D"
rm -f "$D"/*.log "$D/devsim.json"
if [ -z "${OLD:-}" ]; then
  if [ ! -x "$D/old/build/bin/sluice-persister" ] || [ "$(git -C "$D/old" rev-parse HEAD 2>/dev/null)" != "$(git rev-parse "$OLD_REV")" ]; then
    say "building the persister of $OLD_REV in $D/old"
    git worktree remove --force "$D/old" 2>/dev/null
    rm -rf "$D/old"
    git worktree add --detach "$D/old" "$OLD_REV" >/dev/null || exit 1
    cmake -S "$D/old" -B "$D/old/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$D/old-build.log" &&
      cmake --build "$D/old/build" -j2 --target sluice-persister >>"$D/old-build.log" || { say "build failed: $D/old-build.log"; exit 1; }
  fi
  OLD=$D/old/build/bin
fi
export SLUICE_FLEET_SECRET=upgrade-bench-fleet-secret
dsn="host=127.0.0.1 port=$P user=postgres dbname=sluice"
pids=() devsim=''
trap stack_cleanup EXIT
trap 'exit 1' INT TERM
q() { psql "$dsn" -tAc "$1"; }

persister() { # NAME BIN PORT: start it, its pid in the variable NAME
  "$2/sluice-persister" --db "$dsn" --pull tcp://127.0.0.1:$3 --router tcp://127.0.0.1:$(($3 + 1)) \
    --metrics 127.0.0.1:$(($3 + 2)) 2>>"$D/$1.log" &
  printf -v "$1" %s $!
  pids+=($!)
  say "  $1 started ($2, pid $!)"
}
stored() { # PORT: rows the persister on PORT has stored since it started
  curl -s -m 1 "127.0.0.1:$(($1 + 2))/metrics" | awk '$1 == "sluice_persister_rows_inserted_total" {print $2; f = 1} END {if (!f) print 0}'
}

pg_stop "$D/pg"
rm -rf "$D/pg"
pg_start "$D/pg" $P
persister p1 "$OLD" $((P + 1))
i=0
until [ "$(q "SELECT coalesce(max(version), 0) FROM schema_version" 2>/dev/null)" -gt 0 ] 2>/dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || { say "the old persister made no schema"; exit 1; }
  sleep 0.1
done
sleep 1
say "schema of $OLD_REV: version $(q "SELECT max(version) FROM schema_version"), telemetry_keys.device_id collation $(q "SELECT coalesce(collname, 'default') FROM pg_attribute a LEFT JOIN pg_collation c ON c.oid = a.attcollation WHERE attrelid = 'telemetry_keys'::regclass AND attname = 'device_id'")"
"$B/sluice-edge" --listen 127.0.0.1:$((P + 10)) --edge-id up-0 --workers 2 --allow-cidrs 127.0.0.0/8 \
  --persister-push tcp://127.0.0.1:$((P + 1)),tcp://127.0.0.1:$((P + 4)) \
  --persister-router tcp://127.0.0.1:$((P + 2)),tcp://127.0.0.1:$((P + 5)) \
  --notifier-push tcp://127.0.0.1:$((P + 7)) --notifier-router tcp://127.0.0.1:$((P + 8)) \
  --metrics 127.0.0.1:$((P + 11)) 2>>"$D/edge.log" &
pids+=($!)
sleep 1
"$B/sluice-devsim" --edges 127.0.0.1:$((P + 10)) --devices 1000 --rate 10 --duration 44 --ack-timeout-ms 2000 \
  --prefix "up$$" --verify "$dsn" --json "$D/devsim.json" >"$D/devsim.out" 2>"$D/devsim.log" &
devsim=$!
at() { # SECONDS: wait until devsim has run that long
  while [ "$(awk -v t0="$t0" -v n="$EPOCHREALTIME" 'BEGIN {print (n - t0 < '"$1"') ? 1 : 0}')" = 1 ]; do sleep 0.1; done
  say "t=$1 s: $(tail -n 1 "$D/devsim.log")"
}
t0=$EPOCHREALTIME
at 8
persister p2 "$B" $((P + 4))
at 18
say "  kill -9 p1 (stored $(stored $((P + 1))) rows)"
kill -KILL $p1
at 22
persister p1 "$OLD" $((P + 1))
at 32
say "  kill -9 p2 (stored $(stored $((P + 4))) rows); p1 has stored $(stored $((P + 1))) since its restart"
kill -KILL $p2
at 36
persister p2 "$B" $((P + 4))
wait $devsim
rc=$?
devsim=''
tail -n 1 "$D/devsim.log" | sed 's/^/    devsim: /'
say "devsim rc=$rc: $(/usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("sent %d acked %d resent %d; verify %s" % (s["sent"], s["acked"], s.get("resent", 0), json.dumps(s.get("verify"))))' "$D/devsim.json" 2>&1)"
p1_rows=$(stored $((P + 1))) p2_rows=$(stored $((P + 4)))
fail=0
check() { # WHAT GOT WANT
  if [ "$2" = "$3" ]; then say "ok   $1: $2"; else say "FAIL $1: $2, want $3"; fail=1; fi
}
check "devsim (every acked message stored exactly once)" "$rc" 0
check "schema version" "$(q "SELECT max(version) FROM schema_version")" "$(ls persister/migrations/*.sql | wc -l)"
check "telemetry_keys.device_id collation" "$(q "SELECT collname FROM pg_attribute a JOIN pg_collation c ON c.oid = a.attcollation WHERE attrelid = 'telemetry_keys'::regclass AND attname = 'device_id'")" C
check "rows in telemetry_rejected" "$(q "SELECT count(*) FROM telemetry_rejected")" 0
check "rows in telemetry_conflicts" "$(q "SELECT count(*) FROM telemetry_conflicts")" 0
check "keys without their row" "$(q "SELECT count(*) FROM telemetry_keys k WHERE NOT EXISTS (SELECT 1 FROM telemetry t WHERE t.device_id = k.device_id AND t.seq = k.seq)")" 0
check "the old persister stored rows after the migration" "$([ "${p1_rows%.*}" -gt 0 ] && echo yes || echo "no ($p1_rows)")" yes
# A session whose prepared statement a migration made stale fails on every execution: this build's command queue
# must reconnect after its first failure, and the old one's, which never would by itself, must have had its session
# ended by the migrating persister (persister/db.c reset_command_sessions, system_22_schema_change).
for n in p2 p1; do
  check "$n's command queue: failures in a row beyond the first" \
    "$(grep -cE 'event=cmdq_db_failed .*failures=[1-9][0-9]' "$D/$n.log")" 0
done
check "this build's persister stored rows" "$([ "${p2_rows%.*}" -gt 0 ] && echo yes || echo "no ($p2_rows)")" yes
for n in p1 p2; do
  say "$n's log: $(grep -c . "$D/$n.log") lines; warnings and errors by event: $(grep -E 'level=(warn|error)' "$D/$n.log" | grep -o 'event=[a-z_]*' | sort | uniq -c | awk '{printf "%s%s x%s", s, $2, $1; s=", "}')"
done
exit $fail
