#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_15_record: --record writes what devices sent and got, exactly as read (split and
coalesced reads, a bad frame, garbage), mode 0600; sluice-replay plays it back
against a second edge with the same results and the same reads."""
import os
import time

import proc
import wire
from edgetest import Edge, by_conn, conn_of_dev, dump, main, replay_bin
from proc import wait_for
from wire import DATA, DISCONNECT

PORT = 21300  # edge_NN: 21000 + 20 * NN (edge.cmake)


def ack_each(peer, entries):
    """Ack each data entry in a batch of its own (as a device saw them, one by one)."""
    for x in entries:
        peer.ack([x])


def data_entries(peer):
    return [(x[3], x[5], x[12]) for x in peer.find(DATA)]


def record_traffic(e):
    """Three connections: one with a split and a coalesced read, one ending
    in a bad frame, one sending garbage before any hello."""
    a = e.dev(); a.login("rec-a")
    a.send({"t": "data", "seq": 1, "body": {"temp": 20.5}})
    ack_each(e.pers, e.pers.wait(DATA, "rec-a"))
    assert a.recv() == {"t": "ack", "seq": 1}
    f2 = wire.encode({"t": "data", "seq": 2, "body": "split across two reads"})
    a.raw(f2[:7]); time.sleep(0.2); a.raw(f2[7:])
    ack_each(e.pers, e.pers.wait(DATA, "rec-a", count=2)[1:])
    assert a.recv() == {"t": "ack", "seq": 2}
    a.raw(wire.encode({"t": "data", "seq": 3, "body": [1, 2]}) +
          wire.encode({"t": "data", "seq": 4, "body": b"\x00\x01"}))
    ack_each(e.pers, e.pers.wait(DATA, "rec-a", count=4)[2:])
    assert [a.recv()["seq"] for _ in range(2)] == [3, 4]
    a.close()
    e.pers.wait(DISCONNECT, "rec-a")
    b = e.dev(); b.login("rec-b")
    b.send({"t": "data", "seq": 10, "body": "b"})
    ack_each(e.pers, e.pers.wait(DATA, "rec-b"))
    assert b.recv() == {"t": "ack", "seq": 10}
    b.raw(wire.encode([1, 2]))  # a frame whose payload is not a map
    b.expect_err("decode")
    g = e.dev(); g.raw(b"\0\0\0\0"); g.expect_err("frame")


def replay(binary, e, rec, log, *extra):
    """Run sluice-replay of rec against edge e, playing its persister (ack
    what arrives) until the replay exits; returns what it printed."""
    p = proc.Proc("replay", [replay_bin(binary), "--edge", "127.0.0.1:%d" % e.port, "--progress-s", "1"]
                  + list(extra) + [rec], log).start(wait=False)
    acked = set()

    def pump():
        e.pers.poll(20)
        new = [x for h, x in e.pers.entries if x[0] == DATA and (x[3], x[4], x[5]) not in acked]
        for x in new:
            acked.add((x[3], x[4], x[5]))
        ack_each(e.pers, new)
    wait_for(lambda: not p.alive(), "sluice-replay to exit", 120, pump=pump, interval=0.001)
    out = p.output()
    assert p.wait() == 0, out
    return out


def scenario(binary, base, d):
    rec, rec2 = os.path.join(d, "a.rec"), os.path.join(d, "b.rec")
    with open(rec, "w") as f:  # an existing file keeps its mode on O_TRUNC: the edge must fix it
        f.write("old")
    os.chmod(rec, 0o644)
    e = Edge(binary, base, os.path.join(d, "edge.log"), ["--record", rec])
    try:
        record_traffic(e)
        sent = data_entries(e.pers)
        assert e.metric("sluice_edge_record_bytes_total") > 0
        assert e.metric("sluice_edge_record_dropped_total") == 0
    finally:
        rc = e.stop()
    assert rc == 0
    assert os.stat(rec).st_mode & 0o777 == 0o600, oct(os.stat(rec).st_mode)

    lines = dump(binary, rec)
    assert lines[-1][1] == "end" and lines[-1][2] == "reason=shutdown", lines[-1]
    conns = by_conn(lines)
    assert len(conns) == 3, conns
    a = conn_of_dev(conns, "rec-a")
    kinds = [k for k, r in a]
    assert kinds == ["open", "in", "out", "in", "out", "in", "in", "out", "in", "out", "out", "close"], a
    assert '"t":"hello"' in a[1][1] and '"dev":"rec-a"' in a[1][1] and '"t":"welcome"' in a[2][1]
    assert '"seq":1' in a[3][1] and a[4][1].endswith('{"t":"ack","seq":1}')
    assert a[5][1] == "n=7 +partial", a[5]                       # the split frame, first read
    assert '"seq":2' in a[6][1] and '"body":"split across two reads"' in a[6][1]
    assert '"seq":3' in a[8][1] and '"seq":4' in a[8][1], a[8]    # two frames, one read
    assert a[11][1] == "reason=eof"
    b = conn_of_dev(conns, "rec-b")
    assert [k for k, r in b] == ["open", "in", "out", "in", "out", "in", "out", "close"], b
    assert b[5][1].endswith(" [1,2]") and '"code":"decode"' in b[6][1] and b[7][1] == "reason=decode", b
    g = [v for v in conns.values() if v[0][1].endswith(" dev=-")][0]
    assert [k for k, r in g] == ["open", "in", "out", "close"], g
    assert g[1][1] == "n=4 bad-frame(len=0)" and '"code":"frame"' in g[2][1] and g[3][1] == "reason=frame", g

    # Replay against a fresh edge (recording too, to compare the reads).
    e2 = Edge(binary, base + 10, os.path.join(d, "edge2.log"), ["--record", rec2])
    try:
        out = replay(binary, e2, rec, os.path.join(d, "replay.log"), "--device", "rec-b")
        assert [dev for dev, s, b in data_entries(e2.pers)] == ["rec-b"], out
        assert "summary connections=1 " in out and "summary result=same" in out, out
        e2.pers.entries.clear()
        out = replay(binary, e2, rec, os.path.join(d, "replay.log"))
        got = data_entries(e2.pers)
        assert sorted(got) == sorted(sent), (got, sent)
        assert "summary connections=3 " in out and "summary result=same" in out, out
        summ = {l.split()[2]: l for l in out.splitlines() if l.startswith("conn ")}
        assert "back: welcome=1 ack=4 recorded: welcome=1 ack=4" in summ["dev=rec-a"], out
        assert "back: welcome=1 ack=1 err:decode=1 recorded: welcome=1 ack=1 err:decode=1" in summ["dev=rec-b"], out
        assert "back: err:frame=1 recorded: err:frame=1" in summ["dev=-"], out
    finally:
        e2.stop()
    # The replay read as the device wrote: the same chunks, in the same order.
    c1, c2 = by_conn(dump(binary, rec)), by_conn(dump(binary, rec2, "--device", "rec-a"))
    chunks = lambda c: [r.split(" ")[0] for k, r in c if k == "in"]
    assert len(c2) == 1, c2  # rec-a was replayed by the second run only
    for c in c2.values():
        assert chunks(c) == chunks(conn_of_dev(c1, "rec-a")), (chunks(c), c1)


if __name__ == "__main__":
    main(scenario, PORT)
