-- Streams, their tags, and their live state. Times are integer milliseconds since the
-- Unix epoch and booleans are integers, the same as in migrations/postgres, so that one
-- set of queries (sqlx Any driver) serves both databases.

CREATE TABLE streams (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- public, URL-safe: [a-z0-9][a-z0-9_-]{0,63}; SQLite compares bytes, like COLLATE "C"
    name           TEXT    NOT NULL UNIQUE,
    -- SHA-256 of the secret key, hex; the key itself is never stored
    key_hash       TEXT    NOT NULL UNIQUE,
    title          TEXT    NOT NULL DEFAULT '',
    description    TEXT    NOT NULL DEFAULT '',
    thumbnail      TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    -- +1 on every change; events carry it so clients can order them
    version        INTEGER NOT NULL DEFAULT 1,
    live           INTEGER NOT NULL DEFAULT 0,
    live_since     INTEGER,
    ingest_node    TEXT,
    ingest_bitrate INTEGER,
    -- JSON text, as reported by the ingest
    renditions     TEXT
);

CREATE INDEX streams_live_name ON streams (live, name);

CREATE TABLE tags (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    -- trimmed, lowercase
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE stream_tags (
    stream_id INTEGER NOT NULL REFERENCES streams (id) ON DELETE CASCADE,
    tag_id    INTEGER NOT NULL REFERENCES tags (id) ON DELETE CASCADE,
    PRIMARY KEY (stream_id, tag_id)
);

CREATE INDEX stream_tags_tag ON stream_tags (tag_id);
