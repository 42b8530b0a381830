#!/bin/sh
# test_sluice_token_cli.sh BIN - sluice-token's command line.
#
# Expected tokens were computed with the openssl CLI, e.g.
#   printf %s pump-0001 | openssl dgst -sha256 -hmac demo-fleet-secret
#   printf %s pump-0001 | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(printf 'demo-fleet-secret\n' | xxd -p)
#   printf %s pump-0001 | openssl dgst -sha256 -hmac other-secret
set -u
BIN=${1:?usage: $0 path/to/sluice-token}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT INT TERM

DEMO=2f69869769f64c9cf3b504339d23b608d44ca12a5faa67cc106781be780b0abc      # key "demo-fleet-secret"
DEMO_NL=99df3be06f749d2efc9772dcad22a68aefbe6ff63783c9f2bf91135e152cff37   # key "demo-fleet-secret\n"
OTHER=854766eade43a0c508b5e7d388072cef9797dacdc26823bd4abf954c6da8868a     # key "other-secret"

fails=0
# check NAME WANT_RC WANT_STDOUT CMD...: run CMD, compare exit status and exact stdout.
check() {
    name=$1 want_rc=$2 want_out=$3
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    out=$(cat "$T/out"; echo x)   # keep trailing newlines visible
    want=$(printf '%s' "$want_out"; echo x)
    if [ "$rc" != "$want_rc" ] || [ "$out" != "$want" ]; then
        echo "FAIL $name: rc=$rc (want $want_rc) stdout=[$(cat "$T/out")] stderr=[$(cat "$T/err")]"
        fails=$((fails + 1))
    else
        echo "ok   $name"
    fi
}
# An error must say something on stderr, on exactly one line.
check_err_line() {
    n=$(wc -l <"$T/err")
    if [ "$n" -ne 1 ]; then
        echo "FAIL $1: want one stderr line, got $n: [$(cat "$T/err")]"
        fails=$((fails + 1))
    fi
}

NL='
'
# secret from the environment, exact bytes
check env 0 "$DEMO$NL" env SLUICE_FLEET_SECRET=demo-fleet-secret "$BIN" pump-0001
check env-other 0 "$OTHER$NL" env SLUICE_FLEET_SECRET=other-secret "$BIN" pump-0001
# a newline in the env var is part of the secret (exact bytes)
check env-newline 0 "$DEMO_NL$NL" env SLUICE_FLEET_SECRET="demo-fleet-secret$NL" "$BIN" pump-0001

# secret files: without and with one trailing newline give the same token;
# with two, only one is stripped
printf 'demo-fleet-secret' >"$T/s0"
printf 'demo-fleet-secret\n' >"$T/s1"
printf 'demo-fleet-secret\n\n' >"$T/s2"
check file-no-nl 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/s0" pump-0001
check file-nl 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/s1" pump-0001
check file-two-nl 0 "$DEMO_NL$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/s2" pump-0001
check file-eq-form 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file="$T/s1" pump-0001
check file-after-dev 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" pump-0001 --secret-file "$T/s1"
# the flag beats the environment
check flag-beats-env 0 "$DEMO$NL" env SLUICE_FLEET_SECRET=other-secret "$BIN" --secret-file "$T/s1" pump-0001

# a secret file other users may read: the token, and one warning on stderr;
# a private one: nothing on stderr
chmod 644 "$T/s1"
check file-open 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/s1" pump-0001
check_err_line file-open
grep -q 'event=secret_file_open' "$T/err" || { echo "FAIL file-open: no warning: [$(cat "$T/err")]"; fails=$((fails + 1)); }
chmod 600 "$T/s1"
check file-private 0 "$DEMO$NL" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/s1" pump-0001
[ -s "$T/err" ] && { echo "FAIL file-private: stderr [$(cat "$T/err")]"; fails=$((fails + 1)); }

# --help: exit 0, usage on stdout mentioning the env var
"$BIN" --help >"$T/out" 2>"$T/err"
rc=$?
if [ $rc -ne 0 ] || ! grep -q SLUICE_FLEET_SECRET "$T/out" || ! grep -q -- --secret-file "$T/out"; then
    echo "FAIL help: rc=$rc out=[$(cat "$T/out")]"
    fails=$((fails + 1))
else
    echo "ok   help"
fi

# errors: exit 2, nothing on stdout, one line on stderr
check no-secret 2 "" env -u SLUICE_FLEET_SECRET "$BIN" pump-0001
check_err_line no-secret
grep -q SLUICE_FLEET_SECRET "$T/err" || { echo "FAIL no-secret: stderr does not name the env var"; fails=$((fails + 1)); }
check no-dev 2 "" env SLUICE_FLEET_SECRET=x "$BIN"
check_err_line no-dev
check bad-dev-space 2 "" env SLUICE_FLEET_SECRET=x "$BIN" "pump 1"
check_err_line bad-dev-space
check bad-dev-slash 2 "" env SLUICE_FLEET_SECRET=x "$BIN" "a/b"
check bad-dev-65 2 "" env SLUICE_FLEET_SECRET=x "$BIN" \
    AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
check dev-64 0 "b03b504dd620c9574aeb30bb59a65f7fca1c0036adc1105ebe400dade5d81de4$NL" \
    env SLUICE_FLEET_SECRET=demo-fleet-secret "$BIN" AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA._:-
check empty-dev 2 "" env SLUICE_FLEET_SECRET=x "$BIN" ""
check two-devs 2 "" env SLUICE_FLEET_SECRET=x "$BIN" a b
check unknown-opt 2 "" env SLUICE_FLEET_SECRET=x "$BIN" --bogus pump-0001
check_err_line unknown-opt
check missing-file 2 "" env SLUICE_FLEET_SECRET=x "$BIN" --secret-file "$T/nope" pump-0001
check_err_line missing-file
check file-arg-missing 2 "" env SLUICE_FLEET_SECRET=x "$BIN" pump-0001 --secret-file
: >"$T/empty"
check empty-secret-file 2 "" env -u SLUICE_FLEET_SECRET "$BIN" --secret-file "$T/empty" pump-0001
check empty-env 2 "" env SLUICE_FLEET_SECRET= "$BIN" pump-0001

if [ $fails -ne 0 ]; then
    echo "$fails check(s) failed"
    exit 1
fi
echo "all sluice-token checks passed"
