#!/usr/bin/env bash
# bench/system_100k.sh: 100,000 simulated devices through the real stack on one box: a private
# PostgreSQL, one persister, 6 edges (one worker each: a process holds < 20,000 fds) and sluice-devsim in
# 6 processes over 127.0.0.2-200, 0.1 msg/s per device for 60 s, then --verify. Output in $D.
cd "$(dirname "$0")/.."; . scripts/stack.sh
B=${B:-build/release/bin}; D=${D:-/tmp/sl-100k}; mkdir -p $D
pg_start $D/pg 24900
dsn="host=127.0.0.1 port=24900 user=postgres dbname=sluice"
export SLUICE_FLEET_SECRET=big-fleet-secret-100k
pids=()
$B/sluice-persister --db "$dsn" --pull tcp://127.0.0.1:24901 --router tcp://127.0.0.1:24902 --metrics 127.0.0.1:24903 2>$D/persister.log & pids+=($!)
edges=""
for i in 0 1 2 3 4 5; do
  p=$((24910+i))
  $B/sluice-edge --listen 127.0.0.1:$p --edge-id big-$i --workers 1 --max-conns 19000 --allow-cidrs 127.0.0.0/8 \
    --persister-push tcp://127.0.0.1:24901 --persister-router tcp://127.0.0.1:24902 \
    --notifier-push tcp://127.0.0.1:24905 --notifier-router tcp://127.0.0.1:24906 --metrics 127.0.0.1:$((24920+i)) 2>$D/edge$i.log & pids+=($!)
  edges="$edges${edges:+,}127.0.0.1:$p"
done
sleep 2
/usr/bin/time -v $B/sluice-devsim --edges $edges --devices 100000 --procs 6 --rate 0.1 --duration 60 --ramp 10000 \
  --src-ips 127.0.0.2-127.0.0.200 --prefix big --verify "$dsn" --json $D/summary.json > $D/devsim.out 2> $D/devsim.err
echo devsim rc=$? >> $D/devsim.out
for i in 0 1 2 3 4 5; do curl -s 127.0.0.1:$((24920+i))/metrics | grep -E '^sluice_edge_connections_open|^process_resident' ; done > $D/edges.metrics
kill -TERM ${pids[@]}; wait
pg_stop $D/pg
