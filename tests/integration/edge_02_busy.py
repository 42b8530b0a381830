#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_02_busy: at --max-conns a new connection gets err{busy}; a slot freed is usable again."""
from edgetest import main
from proc import wait_for

PORT = 21040  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    a = e.dev(); a.login("busy-1")
    b = e.dev(); b.login("busy-2")
    c = e.dev(); c.expect_err("busy")
    a.close()
    wait_for(lambda: e.metric("sluice_edge_connections_open") == 1, "slot freed")
    d = e.dev(); d.login("busy-3")


if __name__ == "__main__":
    main(scenario, PORT, ["--max-conns", "2"])
