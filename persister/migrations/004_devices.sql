-- 004: one row per device, for listing and looking up devices without a scan
-- of telemetry (the operator API, docs/api.md). Each writer lane sums what it
-- committed (stored data rows, session rows) per device and upserts the sum
-- about once a second, in a transaction of its own with synchronous_commit
-- off: a summary the next update corrects, not a record an ack depends on;
-- inside the batch transaction its row locks would make two lanes with rows
-- of one device wait for each other's COMMIT (docs/internals.md, "persister:
-- the devices table").
--   first_seen  the earliest receive (or session) time seen
--   last_seen   the latest
--   last_seq    the highest stored seq (seq grows for a device's whole life)
-- Online state, edge and connected-since are not here: they are the newest
-- session in device_sessions (its index below), where connect and disconnect
-- are already fenced by epoch.
-- COLLATE "C": ids sort bytewise whatever the database's locale, so keyset
-- pages (device_id > last) and prefix ranges are exact and use the key.
CREATE TABLE devices (
    device_id  text COLLATE "C" NOT NULL PRIMARY KEY,
    first_seen timestamptz NOT NULL,
    last_seen  timestamptz NOT NULL,
    last_seq   bigint      NULL
);

INSERT INTO devices (device_id, first_seen, last_seen, last_seq)
SELECT device_id, min(at), max(at), max(seq)
FROM (SELECT device_id, received_at AS at, seq FROM telemetry_keys
      UNION ALL
      SELECT device_id, coalesce(connected_at, disconnected_at), NULL FROM device_sessions
      WHERE coalesce(connected_at, disconnected_at) IS NOT NULL) x
GROUP BY device_id;

-- A device's sessions, newest first: its online state and recent sessions.
CREATE INDEX device_sessions_device_idx ON device_sessions (device_id, epoch DESC);
