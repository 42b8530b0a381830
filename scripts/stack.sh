# SPDX-License-Identifier: Apache-2.0
# scripts/stack.sh - start and stop the local Sluice stack (sourced by scripts/demo).
# PostgreSQL and Mosquitto run as root-started daemons without systemd, in a private
# directory with their own ports (see ../shared/ENV-NOTES.md for why each step is as it is).

PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

# pg_start DIR PORT: initdb on first use, then start; idempotent.
pg_start() {
  local dir=$1 port=$2
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  if ! runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1" start >/dev/null
  fi
  psql -h 127.0.0.1 -p "$port" -U postgres -tAc "select 1 from pg_database where datname='sluice'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "create database sluice" >/dev/null
}

pg_stop() {
  local dir=$1
  [ -f "$dir/data/postmaster.pid" ] || return 0
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
}

# stack_cleanup: a bench script's EXIT trap. SIGTERM to $devsim (unless empty) and to every pid in the
# array pids, wait for them, stop the PostgreSQL in $D/pg.
stack_cleanup() {
  [ -z "${devsim:-}" ] || kill -TERM "$devsim" 2>/dev/null
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  wait 2>/dev/null
  pg_stop "$D/pg"
}

# mqtt_setup DIR PORT: the broker's files in DIR: mosquitto.conf (listener on 127.0.0.1:PORT, a
# password file, deploy/mosquitto.acl, no anonymous clients), passwd, and the plain passwords of its
# two users in notifier.password and operator.password (made once, 0600; kept across runs).
# message_size_limit as deploy/mosquitto.conf (the notifier's largest payload, notifier/ntf.h).
# Needs mosquitto_passwd. tests/integration/notifier_07_mqtt_acl.py runs a broker from exactly these.
mqtt_setup() {
  local dir=$1 port=$2 u
  local top; top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  mkdir -p "$dir"
  chmod 755 "$dir"
  for u in notifier operator; do
    [ -s "$dir/$u.password" ] || (umask 077; head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$dir/$u.password")
  done
  rm -f "$dir/passwd"
  (umask 077; : >"$dir/passwd")
  mosquitto_passwd -b "$dir/passwd" sluice-notifier "$(cat "$dir/notifier.password")"
  mosquitto_passwd -b "$dir/passwd" operator "$(cat "$dir/operator.password")"
  cp "$top/deploy/mosquitto.acl" "$dir/acl"
  # Mosquitto runs as user mosquitto (it drops root): its files are its own, private.
  chown mosquitto "$dir/passwd" "$dir/acl" 2>/dev/null || chmod 644 "$dir/passwd" "$dir/acl"
  cat >"$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous false
password_file $dir/passwd
acl_file $dir/acl
message_size_limit 1048576
persistence false
max_inflight_messages 0
max_queued_messages 100000
log_dest stderr
CONF
  chmod 644 "$dir/mosquitto.conf"
}

# mqtt_start DIR PORT: mqtt_setup, then Mosquitto in the foreground (as root it drops to user
# mosquitto and exits if its files sit in root-only folders), logging to DIR/mosquitto.log.
mqtt_start() {
  local dir=$1 port=$2
  mqtt_setup "$dir" "$port"
  mosquitto -c "$dir/mosquitto.conf" 2>>"$dir/mosquitto.log" &
  echo $! >"$dir/mosquitto.pid"
}
