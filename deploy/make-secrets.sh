#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# deploy/make-secrets.sh - create a deployment's secrets at deploy time (docs/security.md); the
# repository holds none that work.
#
#   deploy/make-secrets.sh compose [DIR] [--no-chown]
#       files for docker-compose.yml in DIR (default deploy/secrets, which git ignores); run as root:
#       each file belongs to the container user that reads it (10001 Sluice, 1883 Mosquitto), mode
#       600. --no-chown leaves them to you (mode 644 then, and the services warn about it).
#   SLUICE_DB='postgresql://USER:PASSWORD@HOST:5432/DB' deploy/make-secrets.sh k8s [NAMESPACE] | kubectl apply -f -
#       the Kubernetes Secrets deploy/k8s (and deploy/k8s/broker) mount, as YAML on stdout; the files
#       stay in deploy/secrets/k8s (SECRETS_DIR=... elsewhere): keep them, or the next run makes
#       new ones (a new fleet secret invalidates every device token).
#
# What it makes: a fleet secret (32 random bytes, hex), the MQTT passwords of sluice-notifier and
# operator with Mosquitto's password file, the CURVE key pairs of the persister, the notifier and
# the edges (one pair for all edges of the deployment, bound to the edge ids "sluice-edge-*" on
# Kubernetes, any edge id "*" with compose: docs/security.md "Keys"), and for compose the
# PostgreSQL password and the persister's conninfo (sluice-api uses it too), sluice-api's tokens
# file api.tokens (docs/api.md: one `operator rw` and one `viewer ro` token, random), and the edges'
# admin token admin.token (POST /admin/shed: deploy/rebalance.py --token-file DIR/admin.token).
# Files that exist are kept (rerunning changes nothing); delete one to make it anew. The operator's MQTT password:
# DIR/mqtt-operator.password, or the Secret sluice-mqtt-operator; the API tokens: DIR/api.tokens, or
# the Secret sluice-api (key tokens).
#
# Needs sluice-keys (SLUICE_KEYS=..., else on PATH, else build/release/bin) and mosquitto_passwd
# (MOSQUITTO_PASSWD=..., else on PATH: Debian's mosquitto package), e.g. from the images:
#   SLUICE_KEYS="docker run --rm -v $PWD:$PWD -w $PWD sluice:latest sluice-keys"
#   MOSQUITTO_PASSWD="docker run --rm -v $PWD:$PWD -w $PWD eclipse-mosquitto:2 mosquitto_passwd"
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}
shift || true

die() { echo "make-secrets: $*" >&2; exit 2; }
tool() { # NAME ENVVAR FALLBACK...
  local name=$1 var=$2; shift 2
  if [ -n "${!var:-}" ]; then echo "${!var}"; return; fi
  command -v "$name" >/dev/null && { echo "$name"; return; }
  for f in "$@"; do [ -x "$f" ] && { echo "$f"; return; }; done
  die "$name not found: set $var (see the top of $0)"
}
KEYS=$(tool sluice-keys SLUICE_KEYS "$top/build/release/bin/sluice-keys" "$top/build/bin/sluice-keys")
PASSWD=$(tool mosquitto_passwd MOSQUITTO_PASSWD /usr/bin/mosquitto_passwd)

rand() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# make DIR EDGE_BINDING: every file in DIR, kept if present.
make() {
  local d=$1 bound=$2 k
  mkdir -p "$d/edges"
  (
    umask 077
    [ -s "$d/fleet.secret" ] || rand 32 >"$d/fleet.secret"
    [ -s "$d/pg.password" ] || rand 18 >"$d/pg.password"
    [ -s "$d/mqtt-notifier.password" ] || rand 18 >"$d/mqtt-notifier.password"
    [ -s "$d/mqtt-operator.password" ] || rand 18 >"$d/mqtt-operator.password"
    [ -s "$d/api.tokens" ] || printf '# NAME SCOPE TOKEN (docs/api.md)\noperator rw %s\nviewer ro %s\n' \
      "$(rand 24)" "$(rand 24)" >"$d/api.tokens"
    [ -s "$d/admin.token" ] || rand 24 >"$d/admin.token"
  )
  for k in persister notifier; do
    [ -s "$d/$k.key_secret" ] || $KEYS --out "$d/$k.key" >/dev/null
  done
  [ -s "$d/edge.key_secret" ] || $KEYS --out "$d/edge.key" --edge-id "$bound" >/dev/null
  cp "$d/edge.key" "$d/edges/edge.key"
  (umask 077; : >"$d/mosquitto.passwd")
  $PASSWD -b "$d/mosquitto.passwd" sluice-notifier "$(cat "$d/mqtt-notifier.password")"
  $PASSWD -b "$d/mosquitto.passwd" operator "$(cat "$d/mqtt-operator.password")"
}

case $mode in
compose)
  dir=$top/deploy/secrets chown=1
  for a in "$@"; do
    case $a in
      --no-chown) chown= ;;
      -*) die "unknown option $a" ;;
      *) dir=$a ;;
    esac
  done
  make "$dir" '*'
  # The persister's conninfo, with the password compose gives PostgreSQL.
  (umask 077; echo "postgresql://sluice:$(cat "$dir/pg.password")@postgres:5432/sluice" >"$dir/db")
  if [ -n "$chown" ]; then
    [ "$(id -u)" = 0 ] || die "run as root (or pass --no-chown): the files must belong to the containers' users"
    chown 10001:10001 "$dir"/{fleet.secret,db,api.tokens,admin.token,mqtt-notifier.password,persister.key_secret,notifier.key_secret,edge.key_secret}
    chmod 600 "$dir"/{fleet.secret,db,api.tokens,admin.token,mqtt-notifier.password,persister.key_secret,notifier.key_secret,edge.key_secret}
    chown 1883:1883 "$dir/mosquitto.passwd"
    chmod 600 "$dir/mosquitto.passwd" "$dir/pg.password" "$dir/mqtt-operator.password"
  else
    chmod 644 "$dir"/*.password "$dir"/*.key_secret "$dir"/{fleet.secret,db,api.tokens,admin.token,mosquitto.passwd}
    echo "make-secrets: --no-chown: the files in $dir are readable by every local user" >&2
  fi
  chmod 644 "$dir"/*.key "$dir/edges/edge.key"
  echo "make-secrets: $dir ready for docker-compose.yml (operator's MQTT password: $dir/mqtt-operator.password," \
    "API tokens: $dir/api.tokens)" >&2
  ;;
k8s)
  ns=${1:-}
  [ -n "${SLUICE_DB:-}" ] || die "set SLUICE_DB to the persister's libpq conninfo (with its password)"
  work=${SECRETS_DIR:-$top/deploy/secrets/k8s}
  make "$work" 'sluice-edge-*'
  (umask 077; printf %s "$SLUICE_DB" >"$work/db")
  secret() { # NAME KEY=FILE...
    local name=$1 kv; shift
    printf -- '---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: %s\n' "$name"
    [ -n "$ns" ] && printf '  namespace: %s\n' "$ns"
    printf 'type: Opaque\ndata:\n'
    for kv in "$@"; do
      printf '  %s: %s\n' "${kv%%=*}" "$(base64 -w0 <"$work/${kv#*=}")"
    done
  }
  secret sluice-edge fleet.secret=fleet.secret curve.key_secret=edge.key_secret persister.key=persister.key \
    notifier.key=notifier.key admin.token=admin.token
  secret sluice-persister db=db curve.key_secret=persister.key_secret
  secret sluice-api db=db tokens=api.tokens
  secret sluice-notifier mqtt.password=mqtt-notifier.password curve.key_secret=notifier.key_secret db=db
  secret sluice-edge-certs edge.key=edge.key
  secret sluice-mosquitto passwd=mosquitto.passwd
  secret sluice-mqtt-operator password=mqtt-operator.password
  ;;
*)
  sed -n '3,24p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
  ;;
esac
