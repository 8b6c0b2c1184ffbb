-- Webhooks (where stream events are POSTed), their delivery log, and restream targets.
-- Same conventions as 0001: integer epoch-ms times, integer booleans.

CREATE TABLE webhooks (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    url        TEXT    NOT NULL UNIQUE,
    -- comma-separated event names (stream.published, ...)
    events     TEXT    NOT NULL,
    -- the HMAC key of the signature header; kept in clear because signing needs it
    secret     TEXT    NOT NULL,
    -- 1: declared in the configuration (re-applied at every start)
    declared   INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id  INTEGER NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    -- one id per event and hook, the same on every retry
    delivery    TEXT    NOT NULL,
    event       TEXT    NOT NULL,
    stream      TEXT,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    -- the receiver's HTTP status, if it answered
    status      INTEGER,
    error       TEXT,
    duration_ms INTEGER NOT NULL
);

CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);

CREATE TABLE restream_targets (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stream_id  INTEGER NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    -- rtmp://host[:port]/app/KEY: a secret, never answered in full after creation
    url        TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE INDEX restream_targets_stream ON restream_targets (stream_id);
