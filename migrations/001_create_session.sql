-- One row per session. id is the hex SHA-256 of the session token: the token
-- itself is never stored, so reading this table lets nobody hijack a session.
-- data holds the session's values as one JSON object; the CHECK keeps out
-- anything else, so every stored row decodes. version is no longer used
-- (see 002_session_details.sql).
CREATE TABLE {{.Table}} (
    id              text        PRIMARY KEY,
    data            jsonb       NOT NULL CHECK (jsonb_typeof(data) = 'object'),
    user_id         text        NULL,
    persistent      boolean     NOT NULL,
    created_at      timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    idle_expires_at timestamptz NULL,
    version         bigint      NOT NULL
);

-- A session ends at the earlier of its absolute and idle expiry. LEAST
-- ignores NULL, so one index on that deadline lets Prune find every expired
-- row, whichever expiry ended it, without scanning the table.
CREATE INDEX {{.Index "deadline_idx"}} ON {{.Table}} ((LEAST(expires_at, idle_expires_at)));

-- "Sign out everywhere" and "your devices" look sessions up by user.
-- Anonymous sessions, usually the majority, stay out of the index.
CREATE INDEX {{.Index "user_id_idx"}} ON {{.Table}} (user_id) WHERE user_id IS NOT NULL;
