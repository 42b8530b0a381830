#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""persister_03_poison: a NUL string body lands in telemetry_rejected (raw msgpack + error),
the rest of its batch in telemetry, all acked; an invalid msgpack body too;
resent poison is acked again and stored once.

Against a real PostgreSQL; every ack is checked to follow a visible row
(persister_common.collect)."""
import msgpack

from persister_common import collect, core_persister, pe

PORT = 22150  # persister_NN: 22000 + 50 * NN (persister.cmake)


def main():
    with core_persister(PORT) as (env, p, edge):
        # poison rows: NUL in a string (jsonb refuses: 22P05) and a body that is not msgpack.
        edge.acks.clear()
        nul = msgpack.packb({"s": "a\x00b"}, use_bin_type=True)
        ents = [pe.data("poison", i, {"i": i}) for i in range(1, 11)]
        ents[4] = pe.data("poison", 5, body_raw=nul)
        ents[7] = pe.data("poison", 8, body_raw=b"\xc1")
        edge.send(*ents)
        collect(edge, env, {(e[3], e[5]) for e in ents})
        good = [r[0] for r in env.sql("SELECT seq FROM telemetry WHERE device_id='poison' ORDER BY seq")]
        assert good == [1, 2, 3, 4, 6, 7, 9, 10], good
        rej = env.sql("SELECT seq, raw, error, edge_id FROM telemetry_rejected WHERE device_id='poison' ORDER BY seq")
        assert [r[0] for r in rej] == [5, 8], rej
        assert bytes(rej[0][1]) == nul and "0000" in rej[0][2], rej[0]
        assert bytes(rej[1][1]) == b"\xc1" and rej[1][3] == "edge-a:7000", rej[1]
        # resent poison: acked again, stored once
        edge.acks.clear()
        edge.send(ents[4], ents[7])
        collect(edge, env, {("poison", 5), ("poison", 8)})
        assert env.sql("SELECT count(*) FROM telemetry_rejected")[0][0] == 2
        print("ok: poison rows dead-lettered and acked, the rest committed")
    print("PASS")


if __name__ == "__main__":
    main()
