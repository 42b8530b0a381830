-- 007: device_id compared byte by byte (COLLATE "C") in every table, as
-- devices (004) already was.
--
-- Why: a device id is an opaque key, and every stored message inserts it into
-- two B-trees (telemetry_keys' primary key and its partition's). Under the
-- database's locale each comparison goes through strcoll; under "C" it is a
-- memcmp. At 50k msgs/s on the 2-core bench box, on an en_US.UTF-8 cluster,
-- PostgreSQL took 59-62 % of a core instead of 74-75 % and the ack p50 was
-- 2.2-2.6 ms instead of 3.6-4.0 ms; on C.UTF-8, 63 % instead of 65-66 %
-- (docs/performance.md, session 15). Ids now also sort bytewise in every
-- table, as devices' keyset pages do. Equality, the only comparison the
-- gateway itself makes, gives the same answers either way.
--
-- Cost: no table is rewritten (same type), but every index on a device_id is
-- rebuilt under an ACCESS EXCLUSIVE lock, which stops writing while it runs.
-- On a database holding more than 1,000,000 stored keys this migration
-- changes nothing and says so in a WARNING (the persister logs it,
-- event=migrate_notice): run the same statements in a maintenance window
-- (docs/internals.md, "persister: device_id collation").
DO $$
BEGIN
    IF (SELECT count(*) FROM (SELECT 1 FROM telemetry_keys LIMIT 1000001) s) > 1000000 THEN
        RAISE WARNING 'migration 007 skipped: over 1,000,000 stored keys; device_id keeps the database''s'
                      ' collation until the statements of docs/internals.md ("persister: device_id collation") are run';
        RETURN;
    END IF;
    ALTER TABLE telemetry ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE telemetry_keys ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE telemetry_rejected ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE telemetry_conflicts ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE device_sessions ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE commands ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE device_kicks ALTER COLUMN device_id TYPE text COLLATE "C";
    ALTER TABLE command_events ALTER COLUMN device_id TYPE text COLLATE "C";
END $$;
