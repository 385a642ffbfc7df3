-- What a "your devices" page shows, and a lifetime of a session's own.
-- last_seen moves with every write and every idle-expiry touch, so it costs
-- no write of its own; NULL (rows from before this migration) reads as
-- created_at. user_agent and ip describe the device that signed in.
-- idle_timeout, when set, replaces the configured idle timeout for this one
-- session (shorter for an administrator, say).
ALTER TABLE {{.Table}}
    ADD COLUMN last_seen    timestamptz NULL,
    ADD COLUMN user_agent   text        NULL,
    ADD COLUMN ip           text        NULL,
    ADD COLUMN idle_timeout interval    NULL;

-- version is no longer kept: a save merges its changes into the row as it
-- is (jsonb operators under the row lock) rather than comparing versions.
-- The default lets this version of the library leave it out while an older
-- one, which still writes it, may run beside it during a rolling deploy.
ALTER TABLE {{.Table}} ALTER COLUMN version SET DEFAULT 1;
