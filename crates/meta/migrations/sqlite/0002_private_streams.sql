-- Private streams: playback needs a signed token (access::playback). An integer
-- boolean, as in migrations/postgres.
ALTER TABLE streams ADD COLUMN private INTEGER NOT NULL DEFAULT 0;
