#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_03_timeouts: no hello within --hello-timeout-ms, and silence past the idle timeout
(pings keep a connection alive until then): err{timeout}, and the disconnect says why."""
import time

from edgetest import main
from wire import DISCONNECT

PORT = 21060  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    d = e.dev(); d.expect_err("timeout")  # no hello within --hello-timeout-ms
    d = e.dev(); d.login("idle-1")
    # keep it alive past the idle timeout with pings, then go silent
    for _ in range(4):
        time.sleep(0.3)
        d.send({"t": "ping"})
        assert d.recv()["t"] == "pong"
    d.expect_err("timeout")
    disc = e.pers.wait(DISCONNECT, "idle-1")
    assert disc[0][9] == "timeout", disc


if __name__ == "__main__":
    main(scenario, PORT, ["--hello-timeout-ms", "300", "--idle-timeout-ms", "800"])
