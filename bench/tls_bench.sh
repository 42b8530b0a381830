#!/bin/bash
# tls_bench.sh - the TLS figures of docs/performance.md ("TLS"), one command
# (benchmark, not a test). Run it inside its own network namespace:
#
#   unshare -n -- sh -c 'ip link set lo up && ulimit -n 20000 && bench/tls_bench.sh build-rel/bin'
#
# Sections (all by default; name some to run only those):
#   mem    (a) bytes per idle TLS connection: OpenSSL's heap per server SSL
#          with the edge's own tls.c (tls_bench --mode mem: after SSL_new,
#          after the handshake and one record each way, the session alone,
#          and one connection's allocations by OpenSSL call site), and the
#          edge's RSS with N idle devices of sluice-devsim, TLS vs plain.
#   hs     (b) the edge's CPU per handshake (utime + stime of /proc/PID/stat
#          over the run / handshakes): full with an ECDSA P-256 and with an
#          RSA-2048 key, resumed, and a plain TCP connect + close to subtract.
#   storm  (c) 19,000 TLS devices (sluice-devsim, 2 processes) on one edge;
#          the edge killed -9 and started again: seconds until all are
#          welcomed again, with shared ticket keys (resumption), without,
#          and plain TCP for reference; CPU of the edge and of devsim.
#   tput   (d) acked frames/s through one edge, plain vs TLS (devsim,
#          --rate 0: as fast as a window of 64 allows, instant peer).
#   lat    p99 ack latency of 20 steady TLS devices while tls_bench runs a
#          storm of full RSA handshakes, --tls-handshakes-per-wake 1, 8, 10000,
#          and without a storm.
#
# One `edge_bench --mode peer` plays persister and notifier (instant acks).
# Ports PORT..PORT+19 (default 21980: the benchmarks' block 21800-21999).
# Prints the load average first: the box may be shared. KEEP=1 keeps the
# work directory (logs, devsim summaries); EDGE_FLAGS="--early-max 4096"
# adds flags to every edge started; STORM=N and IDLE=N set the device counts.
set -u
B=${1:-build-rel/bin}
shift 2>/dev/null || true
SECTIONS=${*:-mem hs storm tput lat}
PORT=${PORT:-21980}
STORM=${STORM:-19000}
IDLE=${IDLE:-5000}
TMP=$(mktemp -d /tmp/tls_bench.XXXXXX)
HZ=$(getconf CLK_TCK)
PIDS=""
export SLUICE_FLEET_SECRET=tls-bench-fleet-secret
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null; done
    for p in $PIDS; do wait "$p" 2>/dev/null; done
    if [ -n "${KEEP:-}" ]; then echo "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

say() { echo "$*"; }
metric() { curl -s "http://127.0.0.1:$((PORT + 9))/metrics" | awk -v n="$1" '$1 == n {print $2; exit}'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tree_ticks() { # a process and its children (devsim's workers)
    local t=0 p
    for p in "$1" $(pgrep -P "$1"); do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done
    echo $t
}
secs() { echo "scale=1; $1 / $HZ" | bc; }
welcomed() { echo $(($(metric sluice_edge_connections_open) - $(metric sluice_edge_connections_early))); }
json() { /usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, d))' "$@"; }

# ---- certificates: a CA, the edge's (ECDSA P-256 and RSA-2048), a device's
req() { # name key-args ext... (signed by the CA unless name is ca)
    local n=$1 k=$2
    shift 2
    local ca=()
    [ "$n" != ca ] && ca=(-CA "$TMP/ca.pem" -CAkey "$TMP/ca.key")
    local ext=()
    for e in "$@"; do ext+=(-addext "$e"); done
    # shellcheck disable=SC2086
    openssl req -x509 -newkey $k -nodes -keyout "$TMP/$n.key" -out "$TMP/$n.pem" -days 2 -subj "/CN=$n" \
        "${ca[@]}" "${ext[@]}" 2>/dev/null || { echo "openssl req $n failed"; exit 2; }
}
EC="ec -pkeyopt ec_paramgen_curve:prime256v1"
req ca "$EC" basicConstraints=critical,CA:TRUE keyUsage=critical,keyCertSign
req edge-ec "$EC" subjectAltName=IP:127.0.0.1 basicConstraints=critical,CA:FALSE
req edge-rsa rsa:2048 subjectAltName=IP:127.0.0.1 basicConstraints=critical,CA:FALSE
req dev "$EC" basicConstraints=critical,CA:FALSE extendedKeyUsage=clientAuth
head -c 80 /dev/urandom >"$TMP/ticket.keys"

"$B/edge_bench" --mode peer --port "$PORT" >"$TMP/peer.log" 2>&1 &
PEER=$!
PIDS="$PEER"
EP=""
NEDGE=0
start_edge() { # key [extra flags...]
    local key=$1
    shift
    # An edge id of its own each time: the peer's ROUTER would not take a
    # second DEALER with the identity of one it still has (a killed edge).
    NEDGE=$((NEDGE + 1))
    "$B/sluice-edge" --listen "127.0.0.1:$((PORT + 10))" --listen-tls "127.0.0.1:$((PORT + 11))" \
        --tls-cert "$TMP/$key.pem" --tls-key "$TMP/$key.key" --edge-id "tls-bench-$NEDGE" --workers 2 \
        --persister-push "tcp://127.0.0.1:$((PORT + 1))" --persister-router "tcp://127.0.0.1:$((PORT + 2))" \
        --notifier-push "tcp://127.0.0.1:$((PORT + 3))" --notifier-router "tcp://127.0.0.1:$((PORT + 4))" \
        --metrics "127.0.0.1:$((PORT + 9))" --allow-cidrs 127.0.0.0/8 --device-rate 0 --max-conns 19500 \
        --log-level warn ${EDGE_FLAGS:-} "$@" >>"$TMP/edge.log" 2>&1 &
    EP=$!
    PIDS="$PIDS $EP"
    for _ in $(seq 100); do
        [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$((PORT + 9))/readyz")" = 200 ] && return
        sleep 0.1
    done
    echo "the edge did not get ready"; cat "$TMP/edge.log"; exit 1
}
stop_edge() {
    kill "$EP" 2>/dev/null
    wait "$EP" 2>/dev/null
}
wait_welcomed() { # n timeout_s: prints the seconds it took, or "timeout"
    local t0 t
    t0=$(date +%s.%N)
    while :; do
        [ "$(welcomed 2>/dev/null || echo 0)" -ge "$1" ] 2>/dev/null && break
        t=$(echo "$(date +%s.%N) - $t0" | bc)
        if [ "$(echo "$t > $2" | bc)" = 1 ]; then echo timeout; return; fi
        sleep 0.05
    done
    echo "$(date +%s.%N) - $t0" | bc | awk '{printf "%.2f", $1}'
}
devsim() { # name args...: in the background, $DS its pid
    local n=$1
    shift
    "$B/sluice-devsim" --prefix "$n" --json "$TMP/$n.json" --log-level warn "$@" >/dev/null 2>"$TMP/$n.err" &
    DS=$!
    PIDS="$PIDS $DS"
}
TLS=(--tls-ca "$TMP/ca.pem")

say "tls_bench.sh: $(date -u +%FT%TZ) $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
    "OpenSSL $(openssl version | cut -d' ' -f2)"

for section in $SECTIONS; do
case $section in
mem)
    say "== (a) idle bytes per TLS connection (target <= 8 KiB; plain TCP ~432 B)"
    for v in "" "--keep-buffers 1" "--tls12 1" "--client-ca $TMP/ca.pem --dev-cert $TMP/dev.pem --dev-key $TMP/dev.key"; do
        # shellcheck disable=SC2086
        "$B/tls_bench" --mode mem --conns 5000 --cert "$TMP/edge-ec.pem" --key "$TMP/edge-ec.key" \
            --ca "$TMP/ca.pem" $v | sed 's/^/  /'
    done
    say "  one TLS 1.3 connection by OpenSSL call site (bytes incl. 8 B malloc header; one-off algorithm"
    say "  fetches of the process's first handshake left out):"
    "$B/tls_bench" --mode mem --conns 1 --cert "$TMP/edge-ec.pem" --key "$TMP/edge-ec.key" --ca "$TMP/ca.pem" \
        --trace 1 | grep '^trace' | grep -v -e core_namemap -e lhash -e sparse_array -e property \
        -e core_algorithm -e kdf_meth -e mac_meth -e 'stack.c:19[0-9]' -e 'stack.c:229' |
        awk '{split($2,p,"="); split($3,b,"="); split($4,s,"="); k=p[2] " " s[2]; n[k]++; t[k]+=b[2]}
             END {for (k in n) printf "    %-9s %-55s %3d x -> %5d B\n", substr(k,1,index(k," ")-1),
                  substr(k,index(k," ")+1), n[k], t[k]}' | sort -k1,1 -k6,6nr
    for mode in plain tls; do
        start_edge edge-ec
        sleep 1
        r0=$(rss_kb "$EP")
        if [ $mode = tls ]; then port=$((PORT + 11)); extra=("${TLS[@]}"); else port=$((PORT + 10)); extra=(); fi
        devsim idle-$mode --edges "127.0.0.1:$port" --devices "$IDLE" --rate 0.0001 --duration 3600 \
            --ramp 500 --src-ips 127.0.0.2-127.0.0.101 "${extra[@]}"
        took=$(wait_welcomed "$IDLE" 120)
        sleep 2
        r1=$(rss_kb "$EP")
        say "  edge RSS, $IDLE idle $mode devices (devsim): $r0 -> $r1 KiB = $(( (r1 - r0) * 1024 / IDLE ))" \
            "B/connection (all welcomed in $took s)"
        kill -INT "$DS"; wait "$DS" 2>/dev/null
        stop_edge
    done
    ;;
hs)
    say "== (b) edge CPU per handshake (per core = 1 / that; the client runs on the same box)"
    for key in edge-ec edge-rsa; do
        start_edge "$key"
        for m in "--plain 1" "" "--resume 1"; do
            # shellcheck disable=SC2086
            "$B/tls_bench" --mode hs --edge "127.0.0.1:$((PORT + 11))" --ca "$TMP/ca.pem" --conc 32 --seconds 8 \
                --edge-pid "$EP" $m | sed "s/^/  key=$key /"
        done
        stop_edge
    done
    ;;
storm)
    say "== (c) reconnect storm: $STORM devices on one edge, the edge killed -9 and restarted; the devices"
    say "   (sluice-devsim, 2 processes) come back after their 1 s minimum reconnect delay, all at once"
    for keys in shared none plain; do
        kf=()
        [ $keys = shared ] && kf=(--tls-ticket-keys "$TMP/ticket.keys")
        if [ $keys = plain ]; then port=$((PORT + 10)); extra=(); else port=$((PORT + 11)); extra=("${TLS[@]}"); fi
        start_edge edge-ec "${kf[@]}"
        devsim storm-$keys --edges "127.0.0.1:$port" --devices "$STORM" --rate 0.0001 --duration 3600 \
            --ramp 500 --src-ips 127.0.0.2-127.0.0.101 "${extra[@]}"
        took=$(wait_welcomed "$STORM" 300)
        say "  $keys: $STORM devices connected at --ramp 500 in $took s"
        sleep 2
        kill -9 "$EP"; wait "$EP" 2>/dev/null
        d0=$(tree_ticks "$DS")
        start_edge edge-ec "${kf[@]}"
        cpu0=$(cpu_ticks "$EP")
        took=$(wait_welcomed "$STORM" 300)
        cpu1=$(cpu_ticks "$EP")
        d1=$(tree_ticks "$DS")
        say "  $keys (ticket keys: $([ $keys = shared ] && echo shared || echo none)): after kill -9 + restart all" \
            "$STORM welcomed again in $took s; handshakes $(metric sluice_edge_tls_handshakes_total), resumed" \
            "$(metric sluice_edge_tls_resumed_total), failed $(metric sluice_edge_tls_failed_total), early evicted" \
            "$(metric sluice_edge_early_evicted_total), closed timeout" \
            "$(metric 'sluice_edge_connections_closed_total{reason="timeout"}'); CPU edge $(secs $((cpu1 - cpu0))) s," \
            "devsim $(secs $((d1 - d0))) s"
        kill -INT "$DS"; wait "$DS" 2>/dev/null
        stop_edge
    done
    ;;
tput)
    say "== (d) acked frames/s, 100 devices x window 64, 64 B bodies, instant peer"
    start_edge edge-ec
    for mode in plain tls; do
        if [ $mode = tls ]; then port=$((PORT + 11)); extra=("${TLS[@]}"); else port=$((PORT + 10)); extra=(); fi
        c0=$(cpu_ticks "$EP")
        devsim tput-$mode --edges "127.0.0.1:$port" --devices 100 --rate 0 --window 64 --duration 10 --ramp 0 \
            "${extra[@]}"
        wait "$DS"
        c1=$(cpu_ticks "$EP")
        acked=$(json "$TMP/tput-$mode.json" acked)
        say "  $mode: $(json "$TMP/tput-$mode.json" acked_per_s) acked/s, p50 $(json "$TMP/tput-$mode.json" \
            "latency_ms['p50']") ms, p99 $(json "$TMP/tput-$mode.json" "latency_ms['p99']") ms;" \
            "edge CPU $(echo "scale=3; ($c1 - $c0) * 1000000 / $HZ / $acked" | bc) us/frame"
    done
    stop_edge
    ;;
lat)
    say "== steady devices during a handshake storm: 20 TLS devices x 50 msg/s, ack latency"
    for run in "none 8" "rsa 1" "rsa 8" "rsa 10000"; do
        set -- $run
        start_edge edge-rsa --tls-handshakes-per-wake "$2"
        devsim lat --edges "127.0.0.1:$((PORT + 11))" --devices 20 --rate 50 --duration 12 --ramp 0 "${TLS[@]}"
        sleep 1
        hs=""
        if [ "$1" = rsa ]; then
            "$B/tls_bench" --mode hs --edge "127.0.0.1:$((PORT + 11))" --ca "$TMP/ca.pem" --conc 200 --seconds 10 \
                >"$TMP/storm.out" &
            hs=$!
        fi
        wait "$DS"
        [ -n "$hs" ] && wait "$hs"
        say "  storm=$1 per-wake=$2: p50 $(json "$TMP/lat.json" "latency_ms['p50']") ms, p99" \
            "$(json "$TMP/lat.json" "latency_ms['p99']") ms, p99.9 $(json "$TMP/lat.json" "latency_ms['p999']") ms," \
            "max $(json "$TMP/lat.json" "latency_ms['max']") ms, acked $(json "$TMP/lat.json" acked)" \
            "$([ -n "$hs" ] && sed -n 's/.*per_s=\([0-9]*\).*/(storm: \1 handshakes\/s)/p' "$TMP/storm.out")"
        stop_edge
    done
    ;;
*) echo "unknown section $section"; exit 2 ;;
esac
done
say "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
