-- A touch (the write-behind of request counts, every second, for every session used
-- in that second) updates last_access_at. With last_access_at in an index, each such
-- UPDATE also deleted and re-inserted that index's entry: about a third of a flush's
-- time (issue 9: 61–79 ms → 42 ms a flush of 10,000 sessions). The inactive report,
-- which read it from the index alone, now reads each candidate's session rows.
DROP INDEX IF EXISTS sessions_by_user_created;
CREATE INDEX sessions_by_user_created ON sessions (user_name, created_at, first_ip);
