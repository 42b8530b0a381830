-- 001: the telemetry store, sessions and the dead-letter table.
-- telemetry is exactly docs/protocol.md section 4; the index serves time-range queries.
CREATE TABLE IF NOT EXISTS telemetry (
    device_id   text        NOT NULL,
    seq         bigint      NOT NULL,
    device_ts   timestamptz NULL,
    received_at timestamptz NOT NULL,
    edge_id     text        NOT NULL,
    body        jsonb       NOT NULL,
    PRIMARY KEY (device_id, seq)
);
CREATE INDEX IF NOT EXISTS telemetry_received_at_idx ON telemetry (received_at);

-- One row per device session; a session is (device_id, edge_id, epoch) per
-- docs/protocol.md section 6. connect and disconnect entries may reach
-- different persisters in either order, so both upsert and either timestamp
-- may be NULL for a while. incarnation lets a persister close every open
-- session of an edge process whose heartbeats stopped (reason 'edge_lost').
CREATE TABLE IF NOT EXISTS device_sessions (
    device_id       text        NOT NULL,
    edge_id         text        NOT NULL,
    epoch           bigint      NOT NULL,
    incarnation     bigint      NOT NULL,
    peer            text        NULL,
    connected_at    timestamptz NULL,
    disconnected_at timestamptz NULL,
    reason          text        NULL,
    PRIMARY KEY (device_id, edge_id, epoch)
);
CREATE INDEX IF NOT EXISTS device_sessions_open_idx
    ON device_sessions (edge_id, incarnation) WHERE disconnected_at IS NULL;

-- Bodies PostgreSQL (or the JSON mapper) refused: kept raw, acknowledged,
-- stored once however often the device resends them.
CREATE TABLE IF NOT EXISTS telemetry_rejected (
    device_id   text        NOT NULL,
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL,
    edge_id     text        NOT NULL,
    raw         bytea       NOT NULL,
    error       text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_id, seq)
);
