-- History reads, newest first, by one filter each (user, kind, exact IP): an index per
-- filter that ends in the id the cursor follows. The inactive report looks up each
-- user's latest session.
CREATE INDEX events_by_user_id ON events (user_name, id);
CREATE INDEX events_by_kind_id ON events (kind, id);
CREATE INDEX events_by_ip_id ON events (ip, id);
CREATE INDEX sessions_by_user_created ON sessions (user_name, created_at);
