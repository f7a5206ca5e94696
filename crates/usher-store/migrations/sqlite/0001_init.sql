-- Usher schema, version 1 (SQLite). Times are INTEGER milliseconds since the Unix epoch
-- (UTC); read them with datetime(col / 1000, 'unixepoch'). See docs/schema.md.

CREATE TABLE users (
    name          TEXT PRIMARY KEY NOT NULL,
    display_name  TEXT NOT NULL,
    email         TEXT NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0,
    password_hash TEXT,
    created_at    INTEGER NOT NULL,
    last_login_at INTEGER
);

CREATE TABLE user_groups (
    user_name  TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    group_name TEXT NOT NULL,
    PRIMARY KEY (user_name, group_name)
);

CREATE TABLE sessions (
    id             TEXT PRIMARY KEY NOT NULL,
    token_hash     BLOB NOT NULL UNIQUE,
    user_name      TEXT,
    kind           TEXT NOT NULL,
    ip             TEXT NOT NULL,
    first_ip       TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    client         TEXT NOT NULL,
    host           TEXT NOT NULL,
    requests       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    last_access_at INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT,
    ended_by       TEXT
);
CREATE INDEX sessions_live_by_user ON sessions (user_name) WHERE ended_at IS NULL;
CREATE INDEX sessions_by_created ON sessions (created_at);

CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
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

-- The change feed: every node (and a running server, for changes made by the CLI)
-- reads it to learn of sessions ended and users changed elsewhere.
CREATE TABLE changes (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT NOT NULL,
    subject TEXT NOT NULL
);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
