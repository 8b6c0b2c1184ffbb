-- Analytics: per-minute rollups (kept) and raw events (pruned after the retention).
-- Times are integer milliseconds since the Unix epoch, as in the metadata tables, and
-- the same as in migrations/postgres, so that one set of queries serves both.

-- One row per minute, stream ('' = the whole platform) and breakdown (dim 'total'
-- with value '', or 'edge' / 'rendition' / 'country' with its value). Rows are only
-- added: late events for a minute already written add a second row, and readers sum.
-- counters: JSON, the additive counters of analytics::Counters.
CREATE TABLE analytics_rollups (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    minute   INTEGER NOT NULL,
    stream   TEXT    NOT NULL,
    dim      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    counters TEXT    NOT NULL
);

CREATE INDEX analytics_rollups_stream_minute ON analytics_rollups (stream, minute);

-- Raw delivery events. client_ip is the only place an address is stored: it goes
-- with the row when the retention prunes it.
CREATE TABLE analytics_deliveries (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    stream    TEXT    NOT NULL,
    rendition TEXT,
    edge      TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    status    INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    ttfb_us   INTEGER NOT NULL,
    client_ip TEXT    NOT NULL,
    country   TEXT    NOT NULL,
    session   TEXT    NOT NULL,
    cmcd      TEXT
);

CREATE INDEX analytics_deliveries_ts ON analytics_deliveries (ts);

-- Raw player beacons that passed validation (refused ones are never stored).
CREATE TABLE analytics_beacons (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    ts        INTEGER NOT NULL,
    stream    TEXT    NOT NULL,
    session   TEXT    NOT NULL,
    client_ip TEXT    NOT NULL,
    country   TEXT    NOT NULL,
    body      TEXT    NOT NULL
);

CREATE INDEX analytics_beacons_ts ON analytics_beacons (ts);
