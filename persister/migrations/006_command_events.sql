-- 006: the outbox of command state changes, for MQTT (docs/api.md,
-- "Commands on MQTT"; docs/notifier.md, "Queued commands on MQTT").
--
-- Every insert into commands, and every update that changes its state or
-- attempts, appends one event here in the same transaction (a trigger: it
-- covers sluice-api's insert, queued or rejected, and the persister's
-- delivered / ok / error / expired without touching either's SQL). A
-- notifier started with --db takes the events in event_id order (DELETE ...
-- RETURNING, committed) and publishes each on P/<dev>/cmd/<id>/state, and a
-- final one's outcome on P/<dev>/cmd/<id>/result. One command's events get
-- increasing ids in commit order (its row lock orders the transactions that
-- change it), so its states are published in order.
--
-- Growth is bounded: the persister's cmdq deletes events older than an hour
-- (nobody drains them when no notifier has --db).
CREATE TABLE command_events (
    event_id   bigserial   NOT NULL PRIMARY KEY,
    command_id text        NOT NULL,
    device_id  text        NOT NULL,
    state      text        NOT NULL,
    attempts   int         NOT NULL,
    result     jsonb       NULL, -- the command's result as the state was entered
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX command_events_at_idx ON command_events (at);

CREATE FUNCTION command_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- sent_epoch alone (a command handed to a session) is not a state change.
    IF TG_OP = 'UPDATE' AND NEW.state = OLD.state AND NEW.attempts = OLD.attempts THEN
        RETURN NULL;
    END IF;
    INSERT INTO command_events (command_id, device_id, state, attempts, result)
    VALUES (NEW.id, NEW.device_id, NEW.state, NEW.attempts, NEW.result);
    -- Wakes a notifier LISTENing (delivered at COMMIT, once per transaction).
    PERFORM pg_notify('sluice_command_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER commands_events AFTER INSERT OR UPDATE OF state, attempts ON commands
    FOR EACH ROW EXECUTE FUNCTION command_event();
