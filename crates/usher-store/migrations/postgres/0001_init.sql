-- Usher schema, version 1 (PostgreSQL). Times are BIGINT milliseconds since the Unix
-- epoch (UTC); read them with to_timestamp(col / 1000.0). See docs/schema.md.

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    display_name  TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    last_login_at BIGINT
);

CREATE TABLE user_groups (
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_name, group_name)
);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY,
    token_hash     BYTEA NOT NULL UNIQUE,
    user_name      TEXT,
    kind           TEXT NOT NULL,
    ip             TEXT NOT NULL,
    first_ip       TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    client         TEXT NOT NULL,
    host           TEXT NOT NULL,
    requests       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    last_access_at BIGINT NOT NULL,
    ended_at       BIGINT,
    end_reason     TEXT,
    ended_by       TEXT
);
CREATE INDEX sessions_live_by_user ON sessions (user_name) WHERE ended_at IS NULL;
CREATE INDEX sessions_live ON sessions (id) WHERE ended_at IS NULL;
CREATE INDEX sessions_by_created ON sessions (created_at);

CREATE TABLE events (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    user_name  TEXT,
    session_id TEXT,
    ip         TEXT,
    user_agent TEXT,
    actor      TEXT,
    detail     TEXT
);
CREATE INDEX events_by_at ON events (at);
CREATE INDEX events_by_user_at ON events (user_name, at);

-- The change feed. Writers append under a transaction-level advisory lock, so
-- sequence order is commit order and a reader's cursor never skips an entry.
CREATE TABLE changes (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
