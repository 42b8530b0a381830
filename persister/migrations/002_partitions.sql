-- 002: telemetry range-partitioned by received_at, exactly once through telemetry_keys.
-- Why each piece is as it is: docs/internals.md, "persister: partitions and exactly once".
--
-- A partitioned table's unique indexes must contain the partition key, and a
-- resend of (device_id, seq) arrives with a new received_at: uniqueness across
-- partitions moves to telemetry_keys, one small row per stored message,
-- unpartitioned. The persister COPYs a batch's keys before its rows, so a
-- resend fails there (23505) whatever day it arrives, as it failed on the old
-- primary key. Its retention follows telemetry's (the persister deletes the
-- keys older than the oldest partition left).
--
-- The old unpartitioned table is not rewritten: it becomes the partition
-- telemetry_legacy, FROM (MINVALUE) TO (the midnight UTC after its newest
-- row), with the indexes it has; its keys are copied into telemetry_keys.
-- Cost: one scan to copy the keys, one index build, one scan to validate the
-- bound. An empty old table is dropped.
--
-- The parent has no indexes: sluice_telemetry_partition gives each new
-- partition its own primary key (device_id, seq) (unique within the
-- partition: the device lookup index) and a BRIN on received_at (rows arrive
-- in time order), which is what lets the legacy table attach as it is.

LOCK TABLE telemetry IN ACCESS EXCLUSIVE MODE;
ALTER TABLE telemetry RENAME TO telemetry_legacy;
ALTER TABLE telemetry_legacy RENAME CONSTRAINT telemetry_pkey TO telemetry_legacy_pkey;
ALTER INDEX telemetry_received_at_idx RENAME TO telemetry_legacy_received_at_idx;

CREATE TABLE telemetry (
    device_id   text        NOT NULL,
    seq         bigint      NOT NULL,
    device_ts   timestamptz NULL,
    received_at timestamptz NOT NULL,
    edge_id     text        NOT NULL,
    body        jsonb       NOT NULL
) PARTITION BY RANGE (received_at);

-- received_at: the stored row's, so its partition is known (and dropped keys
-- follow dropped partitions).
CREATE TABLE telemetry_keys (
    device_id   text        NOT NULL,
    seq         bigint      NOT NULL,
    received_at timestamptz NOT NULL
);
INSERT INTO telemetry_keys SELECT device_id, seq, received_at FROM telemetry_legacy;
ALTER TABLE telemetry_keys ADD CONSTRAINT telemetry_keys_pkey PRIMARY KEY (device_id, seq);
CREATE INDEX telemetry_keys_received_at_idx ON telemetry_keys USING brin (received_at);

DO $$
DECLARE
    newest timestamptz;
BEGIN
    SELECT max(received_at) INTO newest FROM telemetry_legacy;
    IF newest IS NULL THEN
        DROP TABLE telemetry_legacy;
    ELSE
        EXECUTE format('ALTER TABLE telemetry ATTACH PARTITION telemetry_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
                       date_trunc('day', newest, 'UTC') + interval '24 hours');
    END IF;
END $$;

-- sluice_telemetry_partition(lo, hi): make rows with received_at in [lo, hi)
-- routable; returns the number of partitions created. lo and hi are midnights
-- UTC. The persister calls it ahead of time and when a row finds no partition;
-- several persisters may call it at once: the advisory lock (taken in the
-- caller's transaction) serializes them. If a day of [lo, hi) is covered
-- already (a legacy partition, or periods of another length), each free day
-- gets a partition of its own. CREATE + ATTACH rather than CREATE ... PARTITION
-- OF: ATTACH takes only SHARE UPDATE EXCLUSIVE on telemetry, so writers never
-- wait for it.
CREATE FUNCTION sluice_telemetry_partition(lo timestamptz, hi timestamptz) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'telemetry_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
    rel regclass;
    n int := 0;
    d timestamptz;
BEGIN
    PERFORM pg_advisory_xact_lock(7308604637093544962);
    rel := to_regclass(quote_ident(name));
    IF rel IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = rel AND inhparent = 'telemetry'::regclass
                   AND NOT inhdetachpending) THEN
            RETURN 0;
        END IF;
        RAISE EXCEPTION 'table % exists but is not a partition of telemetry (left by a retention run or by hand)', name;
    END IF;
    BEGIN
        EXECUTE format('CREATE TABLE %I (LIKE telemetry INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
        EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I PRIMARY KEY (device_id, seq)', name, name || '_pkey');
        EXECUTE format('CREATE INDEX %I ON %I USING brin (received_at)', name || '_received_at_idx', name);
        EXECUTE format('ALTER TABLE telemetry ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', name, lo, hi);
        RETURN 1;
    EXCEPTION WHEN invalid_object_definition THEN
        -- 42P17: it would overlap a partition (the CREATE above is undone).
        NULL;
    END;
    IF hi - lo > interval '24 hours' THEN
        d := lo;
        WHILE d < hi LOOP
            n := n + sluice_telemetry_partition(d, d + interval '24 hours');
            d := d + interval '24 hours';
        END LOOP;
    END IF;
    RETURN n;
END $$;
