#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_01_hello_welcome: a good hello gets welcome{edge, hb, max} from the edge the device reached;
the device shows as online (retained status with edge and epoch) while connected and offline
after it leaves; a ping is answered with pong; a reconnect carries a newer epoch."""
from slstack import Stack, check, log, main, wait_for, PREFIX

PORT = 24050  # system_NN: 24000 + 50 * NN (system.cmake)


def scenario():
    with Stack(PORT, edges=2, edge_extra=("--hb", "7", "--max-frame", "4096")) as s:
        s.start()
        m = s.mqtt()
        for i in range(2):
            dev = "hello-%d" % i
            d = s.device(dev, edge=i)
            w = d.welcome
            log("welcome from edge%d: %r" % (i, w))
            check(w["edge"] == s.edge_ids[i], "welcome.edge %r, expected %r" % (w.get("edge"), s.edge_ids[i]))
            check(w["hb"] == 7, "welcome.hb %r, expected 7 (--hb 7)" % w.get("hb"))
            check(w["max"] == 4096, "welcome.max %r, expected 4096 (--max-frame 4096)" % w.get("max"))
            d.send({"t": "ping"})
            check(d.recv()["t"] == "pong", "ping not answered with pong")
            topic = "%s/%s/status" % (PREFIX, dev)
            st = wait_for(lambda: (m.last(topic) or {}).get("online") is True and m.last(topic),
                          "status online for %s" % dev)
            log("status while connected: %r" % st)
            check(st["edge"] == s.edge_ids[i], "status edge %r" % st["edge"])
            check(isinstance(st["epoch"], int) and st["epoch"] > 0, "status epoch %r" % st.get("epoch"))
            check(isinstance(st["at"], int) and st["at"] > 1.6e12, "status at %r (ms since epoch)" % st.get("at"))
            epoch1 = st["epoch"]
            d.close()
            st = wait_for(lambda: (m.last(topic) or {}).get("online") is False and m.last(topic),
                          "status offline for %s after close" % dev)
            log("status after close: %r" % st)
            check(st["epoch"] == epoch1, "offline status must carry the session's epoch")
            # reconnect on the other edge: a newer epoch, online there
            d2 = s.device(dev, edge=1 - i)
            st = wait_for(lambda: (m.last(topic) or {}).get("online") is True and m.last(topic)["epoch"] > epoch1
                          and m.last(topic), "status online again with a newer epoch")
            check(st["edge"] == s.edge_ids[1 - i], "status edge after reconnect %r" % st["edge"])
            d2.close()
            wait_for(lambda: (m.last(topic) or {}).get("online") is False, "offline after second close")
        m.close()
        # a fresh subscriber sees the retained offline status
        from slstack import retained_status
        rs = retained_status(s.mqtt_port, ["hello-0", "hello-1"])
        check(all(rs[d]["online"] is False for d in ("hello-0", "hello-1")), "retained status %r" % rs)
        log("retained: %r" % rs)


if __name__ == "__main__":
    main(scenario)
