#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_07_cmd: a command from the notifier reaches the device; that its frame was written
(cmd_sent) and its result go to the notifier and, since 0.2, to the persister too (its
command store: docs/api.md); a command for a gone device is answered undeliverable."""
import time

import msgpack

from edgetest import cmd, main
from wire import CMD_SENT, CONNECT, DISCONNECT, RES, UNDELIVERABLE

PORT = 21140  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev(); d.login("cmd-1")
    conn = e.noti.wait(CONNECT, "cmd-1")[0]
    assert conn[8].startswith("127.0.0.1:"), conn
    e.noti.reply([cmd(conn, "c1", msgpack.packb({"op": "reboot"}))], conn)
    m = d.recv()
    assert m["t"] == "cmd" and m["id"] == "c1" and m["body"] == {"op": "reboot"}, m
    d.send({"t": "res", "id": "c1", "ok": True, "body": {"done": 1}})
    res = e.noti.wait(RES, "cmd-1")[0]
    assert res[10] == "c1" and res[11] is True and msgpack.unpackb(res[12]) == {"done": 1}, res
    # cmd_sent and res go to both services (0.2: the persister keeps the command store)
    sent = e.noti.wait(CMD_SENT, "cmd-1")[0]
    assert sent[10] == "c1" and sent[4] == conn[4], sent
    pres = e.pers.wait(RES, "cmd-1")[0]
    assert pres[10] == "c1" and pres[11] is True and msgpack.unpackb(pres[12]) == {"done": 1}, pres
    assert e.pers.wait(CMD_SENT, "cmd-1")[0][10] == "c1"
    time.sleep(0.2)
    assert len(e.pers.find(RES)) == 1 and len(e.noti.find(RES)) == 1, "one res each"
    d.close()
    e.noti.wait(DISCONNECT, "cmd-1")
    e.noti.reply([cmd(conn, "c2", msgpack.packb(1))], conn)
    u = e.noti.wait(UNDELIVERABLE, "cmd-1")[0]
    assert u[10] == "c2" and u[9] == "disconnected", u


if __name__ == "__main__":
    main(scenario, PORT, [])
