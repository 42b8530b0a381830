#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""notifier_17_payload_limit: the brokers' message_size_limit (issue 11 item 5; docs/protocol.md section 5).
Every shipped Mosquitto config, and the test brokers (mqtttest.MESSAGE_SIZE_LIMIT), cap a publish's payload
at the notifier's largest (NTF_PAYLOAD_MAX, 1 MiB). Against such a broker, with an MQTT 3.1.1 operator:
 - a command under the limit is routed to the edge holding the device;
 - a command of exactly the limit reaches the notifier (its body is over 64 KiB: result bad_command);
 - a command one byte over it is acked by the broker and dropped: never routed, no result at all (the
   operator sees nothing), while the next command goes through;
 - a device's result whose JSON would pass the limit is published as {"ok":false,"error":"too_big"} (the
   broker would drop the real one unseen), one just under it whole.
"""
import json
import time

import msgpack

from mqtttest import MESSAGE_SIZE_LIMIT as LIMIT
from ntftest import CMD, CONNECT, RES, Env, check, entry, publish, wait_for

BROKER, NTF = 23341, 23342  # notifier_NN: 23000 + 20 * NN (notifier.cmake)
DEV = "big-1"


def cmd_of_size(cid, size):
    """A command JSON payload of exactly size bytes: its body a string of x."""
    pre, post = '{"id":"%s","body":"' % cid, '"}'
    s = pre + "x" * (size - len(pre) - len(post)) + post
    assert len(s) == size
    return s


def main():
    check(LIMIT == 1048576, "test brokers' limit %r" % LIMIT)
    with Env(BROKER, NTF) as env:
        env.ntf.start()
        sub = env.sub(["devices/%s/#" % DEV])
        a = env.edge("edge-a:7000")
        a.heartbeat()
        t0 = time.time_ns()
        a.send(entry(CONNECT, 3, 7, DEV, epoch=t0, at_ns=t0, peer="10.0.0.1:5000"))
        wait_for(lambda: sub.received("devices/%s/status" % DEV), "online status", pump=env.pump)

        def result(cid):
            return sub.received("devices/%s/cmd/%s/result" % (DEV, cid))

        # Under the limit: routed.
        small = {"id": "c-small", "body": "y" * 60000}
        publish(BROKER, "devices/%s/cmd" % DEV, json.dumps(small))
        c = wait_for(lambda: a.received(CMD, id="c-small"), "c-small at the edge", pump=env.pump)[0]
        check(msgpack.unpackb(c["body"]) == small["body"], "c-small body")
        print("ok: a command of %d bytes routed" % len(json.dumps(small)))

        # Exactly the limit: reaches the notifier, which refuses its 1 MiB body.
        publish(BROKER, "devices/%s/cmd" % DEV, cmd_of_size("c-limit", LIMIT))
        r = wait_for(lambda: result("c-limit"), "result of c-limit", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "bad_command"}, "c-limit result %r" % r)
        print("ok: a command of exactly %d bytes reaches the notifier (bad_command)" % LIMIT)

        # One byte over: the broker acks it (publish returns) and drops it.
        publish(BROKER, "devices/%s/cmd" % DEV, cmd_of_size("c-over", LIMIT + 1))
        publish(BROKER, "devices/%s/cmd" % DEV, json.dumps({"id": "c-after", "body": 1}))
        wait_for(lambda: a.received(CMD, id="c-after"), "c-after at the edge", pump=env.pump)
        end = time.monotonic() + 2
        while time.monotonic() < end:
            env.pump()
            time.sleep(0.05)
        check(not a.received(CMD, id="c-over"), "c-over was routed")
        check(not result("c-over"), "c-over got a result: %r" % result("c-over"))
        print("ok: a command of %d bytes dropped by the broker: not routed, no result" % (LIMIT + 1))

        # Results: one whose JSON is over the limit becomes too_big, one just under is published whole.
        big = "\x01" * 200000  # JSON: \u0001 each, 1.2 MB
        a.send(entry(RES, 3, 7, DEV, epoch=t0, at_ns=time.time_ns(), id="c-small", ok=True, body=msgpack.packb(big)))
        r = wait_for(lambda: result("c-small"), "result of c-small", pump=env.pump)
        check(r[0][0] == {"ok": False, "error": "too_big"}, "c-small result %r" % (r[0][0],)[:200])
        fits = "z" * (LIMIT - len('{"ok":true,"body":""}'))
        a.send(entry(RES, 3, 7, DEV, epoch=t0, at_ns=time.time_ns(), id="c-after", ok=True,
                     body=msgpack.packb(fits)))
        r = wait_for(lambda: result("c-after"), "result of c-after", pump=env.pump)
        check(r[0][0] == {"ok": True, "body": fits}, "c-after result (%d chars)" % len(str(r[0][0])))
        print("ok: a result over the limit published as too_big, one of exactly %d bytes whole" % LIMIT)
    print("PASS")


if __name__ == "__main__":
    main()
