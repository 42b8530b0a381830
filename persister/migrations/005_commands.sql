-- 005: the durable command queue (docs/api.md, "Commands"). sluice-api
-- inserts commands; the persister that owns the device's route delivers
-- them (persister/cmdq.c) and records what the edges report.
--
-- A command's life: queued -> delivered (the edge wrote its cmd frame:
-- cmd_sent) -> ok | error (the device's res); or expired (ttl passed first),
-- rejected (queue false and the device offline at submission), error with
-- result {"error":"max_attempts"} (written --max-attempts times, never
-- answered). Each state change appends {state, at} to history.
CREATE TABLE commands (
    id          text        NOT NULL PRIMARY KEY,
    device_id   text        NOT NULL, -- the database's collation, as device_sessions': joined on it
    seq         bigserial   NOT NULL, -- delivery order: before new ones, in submission order
    body        jsonb       NULL,     -- as submitted (JSON null is SQL NULL here)
    body_mp     bytea       NOT NULL, -- the same as msgpack: what the cmd entry carries
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    state       text        NOT NULL CHECK (state IN ('queued', 'delivered', 'ok', 'error', 'expired', 'rejected')),
    attempts    int         NOT NULL DEFAULT 0, -- cmd frames written (cmd_sent)
    sent_epoch  bigint      NULL,     -- the session it was last handed to: not again to the same one
    result      jsonb       NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    history     jsonb       NOT NULL DEFAULT '[]'
);
-- What is still to deliver, per device in order (the queue itself).
CREATE INDEX commands_pending_idx ON commands (device_id, seq) WHERE state IN ('queued', 'delivered');
CREATE INDEX commands_expiry_idx ON commands (expires_at) WHERE state IN ('queued', 'delivered');

-- Where an online device can be reached: its newest open session, with the
-- edge worker identity (reply) and connection id (slot, gen) the connect
-- entry came with, so that any persister can send it a cmd entry (the edge
-- forwards it to whichever of its workers holds the device).
ALTER TABLE device_sessions ADD COLUMN reply text NULL, ADD COLUMN slot bigint NULL, ADD COLUMN gen bigint NULL;

-- DELETE /v1/devices/{id}/connection: the session to close, taken (and
-- deleted) by the persister's dispatcher, which sends a kick entry to the
-- edge worker that holds it. A request for a session that ended meanwhile
-- is dropped.
CREATE TABLE device_kicks (
    device_id    text        NOT NULL PRIMARY KEY,
    epoch        bigint      NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX device_sessions_epoch_idx ON device_sessions (device_id, epoch) WHERE disconnected_at IS NULL;
