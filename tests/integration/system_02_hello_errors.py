#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_02_hello_errors: every refusal of docs/protocol.md sections 1-2 seen from a raw TCP device,
each answered with err{code, msg} and a close, while a well-behaved device on the same edge keeps
working (its data is still acked and stored)."""
import struct

import msgpack

from slstack import Stack, check, log, main, token

PORT = 24100  # system_NN: 24000 + 50 * NN (system.cmake)

MAXF = 1024


def scenario():
    with Stack(PORT, edges=1, edge_extra=("--max-frame", str(MAXF))) as s:
        s.start()
        good = s.device("good-1")
        seq = [0]

        def good_still_works():
            seq[0] += 1
            good.data(seq[0], {"n": seq[0]})
            good.expect("ack")

        cases = []

        def case(name, code, fn, login=False):
            cases.append((name, code, fn, login))

        p = lambda obj: msgpack.packb(obj, use_bin_type=True)  # noqa: E731
        # hello refusals
        case("bad token", "auth", lambda d: d.hello("errs-1", tok="0" * 64))
        case("token of another device", "auth", lambda d: d.hello("errs-1", tok=token("errs-2")))
        case("token of another secret", "auth", lambda d: d.hello("errs-1", tok=token("errs-1", "other")))
        case("dev with a space", "auth", lambda d: d.hello("bad dev"))
        case("dev of 65 chars", "auth", lambda d: d.hello("x" * 65))
        case("empty dev", "auth", lambda d: d.hello(""))
        case("v=2", "proto", lambda d: d.hello("errs-1", v=2))
        case("first frame data", "proto", lambda d: d.send({"t": "data", "seq": 1, "body": 1}))
        case("first frame ping", "proto", lambda d: d.send({"t": "ping"}))
        case("second hello", "proto", lambda d: d.hello(), login=True)
        case("device sends welcome", "proto", lambda d: d.send({"t": "welcome", "edge": "x", "hb": 1, "max": 9}),
             login=True)
        case("device sends ack", "proto", lambda d: d.send({"t": "ack", "seq": 1}), login=True)
        case("unknown t", "proto", lambda d: d.send({"t": "bogus"}), login=True)
        # frame refusals, before and after hello
        case("N=0 before hello", "frame", lambda d: d.raw(b"\0\0\0\0"))
        case("N=0 after hello", "frame", lambda d: d.raw(b"\0\0\0\0"), login=True)
        case("N=max+1 (header only)", "frame", lambda d: d.raw(struct.pack(">I", MAXF + 1)), login=True)
        case("N=4GiB-1", "frame", lambda d: d.raw(b"\xff\xff\xff\xff"))
        # decode refusals
        case("payload an array", "decode", lambda d: d.frame(p([1, 2, 3])))
        case("payload an int", "decode", lambda d: d.frame(p(7)), login=True)
        case("trailing bytes", "decode", lambda d: d.frame(p({"t": "ping"}) + b"\xc0"), login=True)
        case("non-string key", "decode", lambda d: d.frame(p({"t": "ping", 1: 2})), login=True)
        case("t not a string", "decode", lambda d: d.frame(p({"t": 5})), login=True)
        case("data without seq", "decode", lambda d: d.send({"t": "data", "body": 1}), login=True)
        case("data seq a string", "decode", lambda d: d.send({"t": "data", "seq": "1", "body": 1}), login=True)
        case("data seq 0", "decode", lambda d: d.send({"t": "data", "seq": 0, "body": 1}), login=True)
        case("data seq 2^63", "decode", lambda d: d.send({"t": "data", "seq": 2 ** 63, "body": 1}), login=True)
        case("hello without tok", "decode", lambda d: d.send({"t": "hello", "v": 1, "dev": "errs-1"}))
        case("declared size beyond frame", "decode", lambda d: d.frame(b"\xdf\x7f\xff\xff\xff"), login=True)
        case("nesting > 32", "decode",
             lambda d: d.frame(b"\x83\xa1t\xa4data\xa3seq\x01\xa4body" + b"\x91" * 40 + b"\x01"), login=True)

        for name, code, fn, login in cases:
            d = s.device("errs-1", login=False)
            if login:
                d.login()
            fn(d)
            m = d.expect_err(code)
            log("%-28s -> err{code:%s, msg:%r}, closed" % (name, code, m["msg"]))
            d.close()
            good_still_works()
        # N = max is accepted: a data frame padded to exactly max bytes
        d = s.device("errs-max")
        base = p({"t": "data", "seq": 1, "body": ""})
        body = "x" * (MAXF - len(base) - 2)  # str8 header grows by 2 bytes (a0 -> d9 nn / da nn nn)
        payload = p({"t": "data", "seq": 1, "body": body})
        while len(payload) < MAXF:
            body += "x"
            payload = p({"t": "data", "seq": 1, "body": body})
        check(len(payload) == MAXF, "could not build a %d-byte payload (%d)" % (MAXF, len(payload)))
        d.frame(payload)
        check(d.expect("ack")["seq"] == 1, "N=max frame not acked")
        log("N=max (%d bytes) accepted and acked" % MAXF)
        n = s.sql("select count(*) from telemetry where device_id='errs-1'")[0][0]
        check(n == 0, "a refused connection stored %d rows" % n)
        n = s.sql("select count(*) from telemetry where device_id='good-1'")[0][0]
        check(n == seq[0], "good device: %d rows for %d acks" % (n, seq[0]))
        log("%d refusal cases, good device acked and stored %d times" % (len(cases), n))


if __name__ == "__main__":
    main(scenario)
