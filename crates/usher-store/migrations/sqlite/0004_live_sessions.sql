-- The live sessions in table order, for reading them all at start by rowid: a reading
-- by the random id visited the table's pages at random (issue 9), a reading of the
-- whole table would also step through every ended session kept as history.
CREATE INDEX sessions_live ON sessions (ended_at) WHERE ended_at IS NULL;
