#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""system_07_volume: 500 devices x 200 messages through both edges (sluice-devsim, as fast as a window
of 16 unacked per device allows): every ack received, exactly 100,000 rows, every device's
seqs contiguous (no gap), no duplicate. MQTT is the live view, not the record: the edges shed data
copies for the notifier when it cannot keep up, so every row must either reach MQTT or be counted
as shed (edges' sluice_edge_notifier_shed_total) or lost (notifier's sluice_notifier_lost_total)."""
from slstack import Stack, check, check_devsim, log, main, wait_for, PREFIX

PORT = 24350  # system_NN: 24000 + 50 * NN (system.cmake)

DEVICES, MESSAGES = 500, 200


def scenario():
    with Stack(PORT, edges=2, workers=2) as s:
        s.start()
        m = s.mqtt(topics=[PREFIX + "/+/data"])
        r = s.devsim(DEVICES, messages=MESSAGES, prefix="vol", window=16, timeout=400)
        check_devsim(r, expect_sent=DEVICES * MESSAGES)
        devs, rows = s.count_check("vol", DEVICES, DEVICES * MESSAGES)
        per = s.sql("select count(*) from (select device_id from telemetry where device_id like 'vol-%%' "
                    "group by 1 having count(*) <> %s or min(seq) <> max(seq) - %s + 1) x", (MESSAGES, MESSAGES))
        check(per[0][0] == 0, "%d devices without exactly %d contiguous seqs" % (per[0][0], MESSAGES))
        edges = dict(s.sql("select edge_id, count(*) from telemetry where device_id like 'vol-%%' group by 1"))
        check(set(edges) == {"edge-a", "edge-b"}, "rows by edge %r: both edges should carry devices" % edges)
        log("PostgreSQL: %d devices, %d rows, no gap, no duplicate; by edge %r" % (devs, rows, edges))
        def distinct():
            with m.lock:
                return {(p["dev"], p["seq"]) for (_, _, p, _) in m.msgs}
        def shed():
            return sum(int(e.metric("sluice_edge_notifier_shed_total") or 0) for e in (s.edge(i) for i in range(s.n_edges))) + \
                int(s.notifier.metric("sluice_notifier_lost_total") or 0)
        wait_for(lambda: len(distinct()) + shed() >= rows, "MQTT data or a shed count for every row", timeout=120)
        got, lost = len(distinct()), shed()
        log("MQTT: %d data messages, %d distinct (dev, seq), %d shed or lost, for %d rows"
            % (len(m.msgs), got, lost, rows))
        check(got + lost == rows, "MQTT %d + shed %d != rows %d: data copies vanished uncounted" % (got, lost, rows))
        check(got > 0, "no data reached MQTT at all")
        m.close()


if __name__ == "__main__":
    main(scenario)
