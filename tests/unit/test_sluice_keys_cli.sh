#!/bin/sh
# test_sluice_keys_cli.sh BIN - sluice-keys: a service pair and an edge pair
# (files, modes, the binding in the public certificate), no overwrite
# without --force, --show, and the usage errors.
set -u
BIN=${1:?usage: $0 path/to/sluice-keys}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM
fails=0
fail() { echo "FAIL $*"; fails=$((fails + 1)); }
ok() { echo "ok   $*"; }

umask 022 # the secret must come out 600 anyway
"$BIN" --out "$T/persister.key" >"$T/out" 2>"$T/err" || fail "service pair: rc=$? [$(cat "$T/err")]"
[ "$(stat -c %a "$T/persister.key_secret")" = 600 ] || fail "secret mode $(stat -c %a "$T/persister.key_secret")"
[ "$(stat -c %a "$T/persister.key")" = 644 ] || fail "public mode $(stat -c %a "$T/persister.key")"
grep -q 'secret-key' "$T/persister.key" && fail "the public certificate holds the secret key"
grep -q 'secret-key = "' "$T/persister.key_secret" || fail "no secret key in the secret file"
grep -q 'edge-id' "$T/persister.key" && fail "a service key with an edge binding"
pub=$(sed -n 's/^public-key //p' "$T/out")
grep -qF "public-key = \"$pub\"" "$T/persister.key" || fail "printed key [$pub] is not the certificate's"
ok "service pair"

"$BIN" --out "$T/edge.key" --edge-id 'sluice-edge-*' >/dev/null 2>"$T/err" || fail "edge pair: [$(cat "$T/err")]"
grep -q 'edge-id = "sluice-edge-\*"' "$T/edge.key" || fail "edge binding missing: [$(cat "$T/edge.key")]"
"$BIN" --show "$T/edge.key" >"$T/out" || fail "show rc"
grep -q '^edge-id sluice-edge-\*$' "$T/out" || fail "show: [$(cat "$T/out")]"
ok "edge pair, --show"

before=$(cat "$T/edge.key_secret")
"$BIN" --out "$T/edge.key" --edge-id e1 >/dev/null 2>"$T/err" && fail "overwrote without --force"
[ "$before" = "$(cat "$T/edge.key_secret")" ] || fail "secret changed without --force"
"$BIN" --out "$T/edge.key" --edge-id e1 --force >/dev/null 2>&1 || fail "--force"
[ "$before" != "$(cat "$T/edge.key_secret")" ] || fail "--force kept the old secret"
ok "no overwrite without --force"

for bad in 'a b' 'x*y' '"q"' ''; do
    if [ -n "$bad" ]; then
        "$BIN" --out "$T/bad.key" --edge-id "$bad" >/dev/null 2>&1
        [ $? = 2 ] || fail "edge id [$bad] accepted"
    fi
done
"$BIN" >/dev/null 2>&1; [ $? = 2 ] || fail "no arguments: want 2"
"$BIN" --show "$T/nope" >/dev/null 2>&1; [ $? = 1 ] || fail "--show missing file: want 1"
[ -e "$T/bad.key" ] && fail "a refused call wrote a file"
"$BIN" --help | grep -q SLUICE_EDGE_ID || fail "--help lacks the variables"
ok "usage errors"

[ $fails -eq 0 ] || { echo "$fails check(s) failed"; exit 1; }
echo "all sluice-keys checks passed"
