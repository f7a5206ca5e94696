-- A touch (the write-behind of request counts, every second, for every session used
-- in that second) updates last_access_at. With last_access_at in an index, no touch
-- could be a HOT update: every one wrote a new entry in every index of sessions.
-- The inactive report, which read it from the index alone, now reads each
-- candidate's session rows.
DROP INDEX IF EXISTS sessions_by_user_created;
CREATE INDEX sessions_by_user_created ON sessions (user_name, created_at, first_ip);
-- Room on each page for the new version of a touched row, so that it stays HOT
-- (applies to pages written from now on).
ALTER TABLE sessions SET (fillfactor = 90);
