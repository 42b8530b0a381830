#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_12_drain: SIGTERM: /readyz fails, every device gets err{draining}, exit 0."""
import signal

from edgetest import main
from proc import wait_for

PORT = 21240  # edge_NN: 21000 + 20 * NN (edge.cmake)


def scenario(e):
    ds = [e.dev() for _ in range(5)]
    for i, d in enumerate(ds):
        d.login("dr-%d" % i)
    e.proc.signal(signal.SIGTERM)
    wait_for(lambda: e.http("/readyz")[0] != 200, "readyz failing")
    for d in ds:
        d.expect_err("draining")
    assert e.proc.wait(30) == 0


if __name__ == "__main__":
    main(scenario, PORT, ["--drain-rate", "20"])
