-- The publisher's connection statistics as the ingest reports them (issue 17: SRT's
-- retransmits, drops, receive buffer; TS continuity gaps; unsupported streams), JSON.
ALTER TABLE streams ADD COLUMN ingest_stats TEXT;
