#!/usr/bin/python3
"""edge_19_source_limits: the per-address and per-device limits of
docs/protocol.md §1, each refused with err{busy, retry_ms} while others go on:
connections without a hello from one address, connections from one address,
its connect rate, a ban for an address that keeps failing hellos (and its
end), a ban for a device whose authenticated sessions keep ending (counted
only after a valid hello), and the allow list (127.0.0.1 here) exempt from
the per-address limits."""
import time

from edgetest import main
from proc import check

PORT = 21380  # edge_NN: 21000 + 20 * NN (edge.cmake)
FLAGS = ["--allow-cidrs", "127.0.0.1/32", "--source-max-conns", "5", "--source-max-early", "3",
         "--source-connect-rate", "5", "--source-connect-burst", "10", "--source-hello-fails", "3",
         "--device-max-flaps", "3", "--ban-min-ms", "2000"]


def dev_from(e, src):
    """A device connecting from source address src."""
    return e.dev(src=src)


def refused(d, what):
    """The edge answers err{busy} with a retry_ms and closes."""
    m = d.expect_err("busy")
    check(isinstance(m.get("retry_ms"), int) and m["retry_ms"] > 0, "%s: no retry_ms in %r" % (what, m))
    return m["retry_ms"]


def scenario(e):
    # Connections without a hello: 3 from one address, the 4th is refused.
    early = [dev_from(e, "127.0.2.1") for _ in range(3)]
    time.sleep(0.2)
    refused(dev_from(e, "127.0.2.1"), "4th early connection")
    # Saying hello frees the early places; the address may then hold 5.
    for i, d in enumerate(early):
        d.login("src-%d" % i)
    more = []
    for i in range(2):
        d = dev_from(e, "127.0.2.1")
        d.login("src-more-%d" % i)
        more.append(d)
    refused(dev_from(e, "127.0.2.1"), "6th connection")
    # The allow-listed address is not limited: 20 from 127.0.0.1 at once.
    allowed = [e.dev() for _ in range(20)]
    for i, d in enumerate(allowed):
        d.login("allowed-%d" % i)
    check(e.metric('sluice_edge_refused_total{why="source_early"}') == 1, "early refusal counted")
    check(e.metric('sluice_edge_refused_total{why="source_conns"}') == 1, "conns refusal counted")

    # Connect rate: a burst of 10, then refused (connect and drop: churn does not help).
    for i in range(10):
        d = dev_from(e, "127.0.2.2")
        d.login("rate-%d" % i)
        d.close()
    retry = refused(dev_from(e, "127.0.2.2"), "11th connect in the burst")
    check(retry <= 1000, "retry_ms %d: the bucket refills at 5/s" % retry)

    # Failed hellos: 3 a minute are tolerated, the 4th starts a ban.
    for i in range(4):
        d = dev_from(e, "127.0.2.3")
        d.hello("liar", tok="0" * 64)
        d.expect_err("auth")
    retry = refused(dev_from(e, "127.0.2.3"), "banned address")
    check(1000 <= retry <= 2000, "ban retry_ms %d (ban 2 s)" % retry)
    check(e.metric('sluice_edge_bans_total{what="source"}') == 1, "source ban counted")
    d = dev_from(e, "127.0.2.4")  # its neighbour is not banned
    d.login("neighbour")
    time.sleep(retry / 1000 + 0.2)
    d = dev_from(e, "127.0.2.3")  # the ban ended
    d.login("honest-now")

    # A device whose sessions end more than 3 times a minute is held back,
    # counted only after valid hellos.
    for i in range(4):
        d = e.dev()
        d.login("flappy")
        d.close()
    time.sleep(0.3)  # the last close reaches the edge
    d = e.dev()
    d.hello("flappy")
    retry = refused(d, "flapping device")
    check(1000 <= retry <= 2000, "device ban retry_ms %d" % retry)
    check(e.metric('sluice_edge_bans_total{what="device"}') == 1, "device ban counted")
    other = e.dev()
    other.login("steady")  # another device from the same address is not held back
    # Bad tokens for a device id never ban that device (nobody can get a victim banned).
    for i in range(6):
        d = e.dev()
        d.hello("victim", tok="0" * 64)
        d.expect_err("auth")
    d = e.dev()
    d.login("victim")
    for x in early + more + allowed + [other, d]:
        x.close()


if __name__ == "__main__":
    main(scenario, PORT, FLAGS)
