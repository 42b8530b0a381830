#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_19_api: sluice-api against the real stack, every reply checked against docs/api.yaml.
- tokens: none, unknown, read-only on a write (401, 401, 403), read-only and read-write reads;
- GET /v1/devices: keyset pages by id (prefix, limit, after), online filter from the sessions;
- GET /v1/devices/{id}: online, edge, last_seq, sessions; unknown 404; bad id 400;
- GET /v1/devices/{id}/telemetry: newest seq first, pages by before, from/to, bad values 400;
- DELETE /v1/devices/{id}/data: rows gone, then 404;
- errors: 404 path, 405 with Allow, 413 body, 429 with Retry-After (a second API with a small bucket);
- HTTPS with --tls-cert/--tls-key;
- SIGHUP re-reads --tokens-file: the new token works, a removed one gets 401; a broken or missing file
  keeps the tokens in use, with one error line each;
- /healthz, /readyz, /metrics on the API port; SIGTERM exits 0."""
import os
import signal
import subprocess
import time
import urllib.parse

import apitest
import certs
from apitest import RO, RW
from slstack import Stack, check, log, main, wait_for

PORT = 24950  # system_NN: 24000 + 50 * NN (system.cmake); APIs on PORT+8, +9 and (TLS) +14


def scenario():
    with Stack(PORT, edges=2) as s:
        s.start()
        api = apitest.Api(s, PORT + 8).start()
        t0_ms = int(time.time() * 1000)

        # devices: "live" stays connected on edge-a, "gone" on edge-b leaves, pg-0..4 for paging
        live = s.device("live", edge=0)
        for seq in range(1, 6):
            live.data(seq, {"n": seq})
        live.acks(range(1, 6))
        gone = s.device("gone", edge=1)
        gone.data(7, {"x": "y"})
        gone.acks([7])
        gone.close()
        for i in range(5):
            d = s.device("pg-%d" % i, edge=i % 2)
            d.data(1, {"i": i})
            d.acks([1])
            d.close()
        t1_ms = int(time.time() * 1000)

        def listed(q):
            st, out, _ = api.req("GET", "/v1/devices?" + q, token=RO)
            check(st == 200, "GET devices?%s: %d %r" % (q, st, out))
            return out
        wait_for(lambda: len(listed("limit=1000")["devices"]) == 7, "7 devices listed", 30)
        wait_for(lambda: [d["id"] for d in listed("online=true")["devices"]] == ["live"], "live alone online", 30)

        # ---- auth
        api.err("GET", "/v1/devices", 401, "unauthorized")
        h = api.err("GET", "/v1/devices", 401, "unauthorized", token="not-a-token-of-ours-at-all")
        check(h.get("www-authenticate") == "Bearer", "WWW-Authenticate: %r" % h)
        api.err("DELETE", "/v1/devices/gone/data", 403, "forbidden", token=RO)
        st, _, _ = api.req("GET", "/v1/devices", token=RW)
        check(st == 200, "a read-write token reads")
        log("ok: 401 without or with an unknown token, 403 read-only on a write")

        # ---- pagination
        pages, after = [], None
        while True:
            q = "prefix=pg-&limit=2" + ("&after=" + after if after else "")
            out = listed(q)
            pages.append([d["id"] for d in out["devices"]])
            after = out["next"]
            if after is None:
                break
            check(len(pages) < 10, "pagination does not end")
        check(pages == [["pg-0", "pg-1"], ["pg-2", "pg-3"], ["pg-4"]], "pages %r" % pages)
        check([d["id"] for d in listed("online=false&limit=3")["devices"]] == ["gone", "pg-0", "pg-1"],
              "offline page")
        check(listed("prefix=zz")["devices"] == [], "empty prefix result")
        api.err("GET", "/v1/devices?limit=0", 400, "bad_request", token=RO)
        api.err("GET", "/v1/devices?limit=1001", 400, "bad_request", token=RO)
        api.err("GET", "/v1/devices?online=yes", 400, "bad_request", token=RO)
        api.err("GET", "/v1/devices?after=" + urllib.parse.quote("a b"), 400, "bad_request", token=RO)
        log("ok: keyset pages by id, prefix, online filter, bad parameters 400")

        # ---- one device
        st, d, _ = api.req("GET", "/v1/devices/live", token=RO)
        check(st == 200 and d["online"] and d["edge"] == "edge-a" and d["last_seq"] == 5 and
              d["connected_since"] is not None and len(d["sessions"]) == 1 and
              d["sessions"][0]["disconnected_at"] is None, "live: %r" % d)
        st, d, _ = api.req("GET", "/v1/devices/gone", token=RO)
        check(st == 200 and not d["online"] and d["edge"] == "edge-b" and d["last_seq"] == 7 and
              d["connected_since"] is None and d["sessions"][0]["reason"] == "eof", "gone: %r" % d)
        api.err("GET", "/v1/devices/nobody", 404, "not_found", token=RO)
        api.err("GET", "/v1/devices/" + urllib.parse.quote("bad id"), 400, "bad_request", token=RO)
        log("ok: device detail with sessions, 404, 400")

        # ---- telemetry
        st, t, _ = api.req("GET", "/v1/devices/live/telemetry?limit=2", token=RO)
        check(st == 200 and [r["seq"] for r in t["rows"]] == [5, 4] and t["next_before"] == 4 and
              t["rows"][0]["body"] == {"n": 5} and t["rows"][0]["edge"] == "edge-a", "page 1 %r" % t)
        st, t, _ = api.req("GET", "/v1/devices/live/telemetry?limit=2&before=4", token=RO)
        check([r["seq"] for r in t["rows"]] == [3, 2], "page 2 %r" % t)
        st, t, _ = api.req("GET", "/v1/devices/live/telemetry?limit=2&before=2", token=RO)
        check([r["seq"] for r in t["rows"]] == [1] and t["next_before"] is None, "last page %r" % t)
        st, t, _ = api.req("GET", "/v1/devices/live/telemetry?from=%d&to=%d" % (t0_ms - 60000, t1_ms + 1), token=RO)
        check(len(t["rows"]) == 5, "from/to in ms: %r" % t)
        future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        st, t, _ = api.req("GET", "/v1/devices/live/telemetry?from=" + future, token=RO)
        check(st == 200 and t["rows"] == [], "nothing from the future: %r" % t)
        api.err("GET", "/v1/devices/live/telemetry?from=yesterday", 400, "bad_request", token=RO)
        api.err("GET", "/v1/devices/live/telemetry?before=0", 400, "bad_request", token=RO)
        api.err("GET", "/v1/devices/nobody/telemetry", 404, "not_found", token=RO)
        log("ok: telemetry newest first, pages by before, from/to")

        # ---- delete data
        st, out, _ = api.req("DELETE", "/v1/devices/gone/data", token=RW)
        check(st == 200 and out["deleted"]["telemetry"] == 1 and out["deleted"]["sessions"] == 1, "delete %r" % out)
        check(s.sql("select count(*) from telemetry where device_id='gone'")[0][0] == 0, "rows remain")
        check(s.sql("select count(*) from telemetry_keys where device_id='gone'")[0][0] == 0, "keys remain")
        api.err("GET", "/v1/devices/gone", 404, "not_found", token=RO)
        api.err("DELETE", "/v1/devices/gone/data", 404, "not_found", token=RW)
        log("ok: DELETE data")

        # ---- errors
        api.err("GET", "/v2/nothing", 404, "not_found", token=RO)
        h = api.err("POST", "/v1/devices", 405, "method_not_allowed", token=RW, body={})
        check(h.get("allow") == "GET", "Allow: %r" % h)
        api.err("POST", "/v1/devices/live/commands", 413, "too_large", token=RW, raw=b"{" + b" " * 70000 + b"}")
        api.err("POST", "/v1/devices/live/commands", 401, "unauthorized", raw=b"{" + b" " * 70000 + b"}")
        st, _, _ = api.req("GET", "/healthz")
        check(st == 200, "healthz")
        st, _, _ = api.req("GET", "/readyz")
        check(st == 200, "readyz")
        st, text, _ = api.req("GET", "/metrics")
        check(st == 200 and 'sluice_api_requests_total{route="devices",code="2xx"}' in text and
              'sluice_api_refused_total{reason="auth"}' in text and "sluice_build_info" in text, "metrics")
        log("ok: 404, 405 + Allow, 413, health, metrics")

        # ---- rate limit: a second API with a bucket of 3 and 1 request/s
        small = apitest.Api(s, PORT + 9, extra=("--rate", "1", "--burst", "3"), name="api-small").start()
        codes = [small.req("GET", "/v1/devices?limit=1", token=RO)[0] for _ in range(3)]
        check(codes == [200, 200, 200], "burst %r" % codes)
        h = small.err("GET", "/v1/devices?limit=1", 429, "rate_limited", token=RO)
        check(h.get("retry-after") == "1", "Retry-After %r" % h)
        st, _, _ = small.req("GET", "/v1/devices?limit=1", token=RW)
        check(st == 200, "another token has its own bucket")
        time.sleep(1.1)
        st, _, _ = small.req("GET", "/v1/devices?limit=1", token=RO)
        check(st == 200, "a token comes back after a second")
        log("ok: 429 with Retry-After, per token")

        # ---- HTTPS (--tls-cert/--tls-key): the client verifies the certificate
        ca = certs.make_ca(s.dir, "api-ca")
        cert, key = certs.make_cert(s.dir, "api", ca, ["IP:127.0.0.1"])
        os.chmod(key, 0o600)
        tls = apitest.Api(s, PORT + 14, name="api-tls", tls=(cert, key, ca)).start()
        st, out, _ = tls.req("GET", "/v1/devices?limit=2", token=RO)
        check(st == 200 and [d["id"] for d in out["devices"]] == ["live", "pg-0"], "over TLS %r" % out)
        plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                "http://127.0.0.1:%d/healthz" % (PORT + 14)], stdout=subprocess.PIPE)
        check(plain.stdout.decode() != "200", "plain HTTP on the TLS port answered 200")
        log("ok: HTTPS with a verified certificate")

        # ---- SIGHUP reloads --tokens-file: RW ("ops") is replaced by NEW, RO stays
        NEW = "reloaded-rw-token-0123456789abcdef"

        def write_tokens(text):
            tmp = api.tokens_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.chmod(tmp, 0o600)
            os.replace(tmp, api.tokens_path)  # as an editor or kubectl's projected volume does

        def status(token):
            return api.req("GET", "/v1/devices?limit=1", token=token)[0]

        check(status(RW) == 200 and status(NEW) == 401, "before the reload")
        write_tokens("ops rw %s\nview ro %s\n" % (NEW, RO))
        api.proc.signal(signal.SIGHUP)
        wait_for(lambda: status(NEW) == 200, "the reloaded token accepted")
        api.err("GET", "/v1/devices", 401, "unauthorized", token=RW)
        check(status(RO) == 200, "a token kept across the reload")
        api.err("DELETE", "/v1/devices/nobody/data", 404, "not_found", token=NEW)  # its scope: rw
        check("event=tokens_reloaded" in api.proc.output(), "no reload line")
        log("ok: SIGHUP reloads the tokens file")

        def errors(event):
            return [ln for ln in api.proc.output().splitlines() if event in ln]

        for broken, event in (("ops rw too-short\n", "event=tokens_bad"),  # under 16 bytes
                              (None, "event=file_unreadable")):
            if broken is None:
                os.unlink(api.tokens_path)
            else:
                write_tokens(broken)
            api.proc.signal(signal.SIGHUP)
            wait_for(lambda: errors(event), "the %s line" % event)
            check(len(errors(event)) == 1 and "then=kept" in errors(event)[0], "one error line: %r" % errors(event))
            check(status(NEW) == 200 and status(RO) == 200 and status(RW) == 401,
                  "after a bad reload (%s) the tokens in use changed" % event)
            check(api.proc.alive(), "sluice-api exited on a bad tokens file")
        log("ok: a broken or missing tokens file keeps the tokens in use")

        check(small.proc.stop(expect=0) == 0 and api.proc.stop(expect=0) == 0 and tls.proc.stop(expect=0) == 0,
              "exit codes")
        live.close()
        log("spec checked: %d (method, path, status)" % len(api.spec.checked | small.spec.checked))


if __name__ == "__main__":
    main(scenario)
