-- API tokens: bearer credentials for the REST API and the CLI's --server mode.
-- Like session tokens, only their SHA-256 is stored.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    owner        TEXT NOT NULL,
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);
CREATE INDEX events_by_kind_at ON events (kind, at);
