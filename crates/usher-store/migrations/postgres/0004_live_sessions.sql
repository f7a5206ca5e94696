-- SQLite's 0004 adds an index of the live sessions, for reading them all at start
-- without stepping through the history. PostgreSQL has had its own since 0001
-- (`sessions_live`, by id), so there is nothing to change here.
SELECT 1;
