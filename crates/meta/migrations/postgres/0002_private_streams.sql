-- Private streams: playback needs a signed token (access::playback). An integer
-- boolean, as in migrations/sqlite.
ALTER TABLE streams ADD COLUMN private BIGINT NOT NULL DEFAULT 0;
