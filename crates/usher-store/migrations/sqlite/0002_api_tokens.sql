-- API tokens: bearer credentials for the REST API and the CLI's --server mode.
-- Like session tokens, only their SHA-256 is stored.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    token_hash   BLOB NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX events_by_kind_at ON events (kind, at);
