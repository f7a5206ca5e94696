-- History reads, newest first, by one filter each (user, kind, exact IP): an index per
-- filter that ends in the id the cursor follows. The inactive report reads users by
-- last login and each one's latest session from the index alone.
CREATE INDEX events_by_user_id ON events (user_name, id);
CREATE INDEX events_by_kind_id ON events (kind, id);
CREATE INDEX events_by_ip_id ON events (ip, id);
CREATE INDEX sessions_by_user_created ON sessions (user_name, created_at, first_ip, last_access_at);
CREATE INDEX users_by_last_login ON users (last_login_at);
