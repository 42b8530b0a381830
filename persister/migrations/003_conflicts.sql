-- 003: a resend that is not a resend. A (device_id, seq) already stored that
-- arrives with another body or ts is not stored in telemetry (exactly once
-- stands) but kept here, both versions and when, at most
-- --max-conflicts-per-device rows per device (beyond: counted only, in
-- sluice_persister_conflicts_total). Only the persister's staged path (the one
-- that handles a resend) looks for them: the common path pays nothing.
-- docs/protocol.md section 4.
CREATE TABLE telemetry_conflicts (
    device_id          text        NOT NULL,
    seq                bigint      NOT NULL,
    stored_received_at timestamptz NOT NULL, -- the version in telemetry
    stored_device_ts   timestamptz NULL,
    stored_body        jsonb       NOT NULL,
    received_at        timestamptz NOT NULL, -- the version refused
    device_ts          timestamptz NULL,
    body               jsonb       NOT NULL,
    edge_id            text        NOT NULL,
    noted_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telemetry_conflicts_key_idx ON telemetry_conflicts (device_id, seq);
