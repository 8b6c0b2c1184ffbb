-- Whether a stream is recorded (issue 15): 1, 0, or NULL for the server's default
-- (--record-default).
ALTER TABLE streams ADD COLUMN record INTEGER;
