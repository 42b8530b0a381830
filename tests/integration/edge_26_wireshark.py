#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""edge_26_wireshark: the Wireshark dissector (deploy/wireshark/sluice.lua) reads the device protocol in a live
capture of a test run (dumpcap on loopback) and in the same traffic exported from a recording by
`sluice-replay --pcap`: every message in order (hello/welcome/data/ack/ping/pong/cmd/res/err), a frame split across
two reads reassembled once, two frames in one read both shown, the token masked (never in clear in the decoded
tree), a payload that is not a map and an empty frame flagged, and in the export every TCP checksum right and no
malformed packet. Needs tshark and dumpcap (scripts/deps: tshark)."""
import os
import signal
import subprocess
import time

import msgpack

import proc
import wire
from edgetest import Edge, cmd, main, replay_bin, token
from wire import CONNECT, DATA, DISCONNECT, RES

PORT = 21520  # edge_NN: 21000 + 20 * NN (edge.cmake)
LUA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "deploy", "wireshark", "sluice.lua")
FIELDS = ["tcp.stream", "sluice.type", "sluice.dev", "sluice.tok", "sluice.seq", "sluice.code", "sluice.id"]

# what each connection says, in order, as (type, detail)
EXPECTED = {
    "ws-a": [("hello", "ws-a"), ("welcome", ""), ("data", "1"), ("ack", "1"), ("data", "2"), ("ack", "2"),
             ("data", "3"), ("data", "4"), ("ack", "3"), ("ack", "4"), ("ping", ""), ("pong", ""),
             ("cmd", "c1"), ("res", "c1")],
    "ws-b": [("hello", "ws-b"), ("welcome", ""), ("?", "not a map"), ("err", "decode")],
    "-": [("?", "empty frame"), ("err", "frame")],
}


def traffic(e):
    a = e.dev(); a.login("ws-a")
    a.send({"t": "data", "seq": 1, "ts": 1700000000000, "body": {"temp": 20.5}})
    e.pers.ack(e.pers.wait(DATA, "ws-a"))
    assert a.recv() == {"t": "ack", "seq": 1}
    f2 = wire.encode({"t": "data", "seq": 2, "body": "split across two reads"})
    a.raw(f2[:7]); time.sleep(0.2); a.raw(f2[7:])
    e.pers.ack(e.pers.wait(DATA, "ws-a", count=2)[1:])
    assert a.recv() == {"t": "ack", "seq": 2}
    a.raw(wire.encode({"t": "data", "seq": 3, "body": [1, 2]}) + wire.encode({"t": "data", "seq": 4, "body": b"\0"}))
    d34 = e.pers.wait(DATA, "ws-a", count=4)[2:]
    for x in d34:
        e.pers.ack([x])
        assert a.recv()["t"] == "ack"
    a.send({"t": "ping"})
    assert a.recv() == {"t": "pong"}
    conn = e.noti.wait(CONNECT, "ws-a")[0]
    e.noti.reply([cmd(conn, "c1", msgpack.packb({"valve": "open"}))], conn)
    assert a.recv()["t"] == "cmd"
    a.send({"t": "res", "id": "c1", "ok": True})
    e.noti.wait(RES, "ws-a")
    a.close()
    e.pers.wait(DISCONNECT, "ws-a")
    b = e.dev(); b.login("ws-b")
    b.raw(wire.encode([1, 2]))  # a payload that is not a map
    b.expect_err("decode")
    g = e.dev(); g.raw(b"\0\0\0\0")  # an empty frame
    g.expect_err("frame")
    time.sleep(0.3)


def tshark(path, port, *extra):
    return subprocess.run(["tshark", "-n", "-X", "lua_script:" + LUA, "-o", "sluice.ports:%d" % port, "-r", path]
                          + list(extra),
                          capture_output=True, text=True, timeout=120)


def decoded(path, port):
    """{device: [(type, detail), ...]} per TCP stream, named by its hello's device ("-" if none)."""
    r = tshark(path, port, "-Y", "sluice", "-T", "fields", "-E", "separator=|", "-E", "occurrence=a",
               "-E", "aggregator=;", *sum((["-e", f] for f in FIELDS), []))
    assert r.returncode == 0, r.stderr
    streams = {}
    for line in r.stdout.splitlines():
        stream, types, devs, toks, seqs, codes, ids = (v.split(";") if v else [] for v in line.split("|"))
        seqs, codes, ids, devs = iter(seqs), iter(codes), iter(ids), iter(devs)
        for t in types:
            detail = {"hello": lambda: next(devs), "data": lambda: next(seqs), "ack": lambda: next(seqs),
                      "err": lambda: next(codes), "cmd": lambda: next(ids), "res": lambda: next(ids)}.get(t, str)()
            streams.setdefault(stream[0], []).append((t, detail))
        for tok in toks:
            assert "..." in tok and len(tok) < 30, "token not masked: %r" % tok
    # messages whose payload is no map have no sluice.type: take them from the expert info
    r = tshark(path, port, "-Y", "sluice.bad", "-T", "fields", "-e", "tcp.stream", "-e", "sluice.bad")
    for line in r.stdout.splitlines():
        stream, why = line.split("\t")
        streams.setdefault(stream, [])
        streams[stream].append(("?", why))
    named = {}
    for msgs in streams.values():
        dev = next((d for t, d in msgs if t == "hello"), "-")
        named[dev] = msgs
    return named


def same_messages(got, want, where):
    for dev, msgs in want.items():
        g = got.get(dev, [])
        known = [m for m in g if m[0] != "?"]
        bad = [m for m in g if m[0] == "?"]
        assert known == [m for m in msgs if m[0] != "?"], "%s, %s: %r, expected %r" % (where, dev, g, msgs)
        wanted_bad = [m[1] for m in msgs if m[0] == "?"]
        assert all(any(w in b[1] for b in bad) for w in wanted_bad), "%s, %s: flags %r, expected %r" % (
            where, dev, bad, wanted_bad)


def scenario(binary, port, d):
    rec, live, out = (os.path.join(d, n) for n in ("edge.rec", "live.pcapng", "replay.pcapng"))
    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", "tcp port %d" % port, "-w", live],
                           stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "dumpcap.log"), "w"))
    proc.wait_for(lambda: os.path.exists(live) and os.path.getsize(live) > 0, "dumpcap capturing", timeout=30)
    e = Edge(binary, port, os.path.join(d, "edge.log"), ["--record", rec])
    try:
        traffic(e)
    finally:
        e.stop()
        time.sleep(0.5)  # let dumpcap see the last FINs
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=30)
    r = subprocess.run([replay_bin(binary), "--pcap", out, rec], capture_output=True, text=True)
    assert r.returncode == 0 and "streams=3 " in r.stdout, (r.stdout, r.stderr)
    print(r.stdout.strip())
    for path, p, where in ((live, port, "live capture"), (out, 7000, "sluice-replay --pcap")):
        got = decoded(path, p)
        print("%s: %r" % (where, got))
        same_messages(got, EXPECTED, where)
        tree = tshark(path, p, "-V").stdout
        for dev in ("ws-a", "ws-b"):
            assert token(dev) not in tree, "%s: the token of %s in clear in the decoded tree" % (where, dev)
    # (not on the live capture: loopback leaves checksums to the NIC that is not there)
    r = tshark(out, 7000, "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE",
               "-Y", "tcp.checksum.status == 0 || ip.checksum.status == 0 || _ws.malformed || tcp.analysis.flags",
               "-T", "fields",
               "-e", "frame.number", "-e", "_ws.expert.message")
    assert r.returncode == 0 and r.stdout.strip() == "", "replay.pcapng: bad checksums or TCP problems:\n" + r.stdout


if __name__ == "__main__":
    main(scenario, PORT)
