//! Cookieless clients: requests that came with no session cookie and no credential
//! (monitoring pings, scripts, crawlers) never create a session; they are counted here,
//! per (client IP, User-Agent), so the session list stays about people.
//!
//! Kept in memory and bounded: past the cap, the least recently seen client is dropped.

use dashmap::DashMap;
use serde::Serialize;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use usher_core::Timestamp;
use usher_core::user_agent;

/// Most distinct clients remembered.
pub const MAX_CLIENTS: usize = 10_000;

#[derive(Debug)]
struct Stats {
    requests: AtomicU64,
    first_seen_us: i64,
    last_seen_us: AtomicI64,
}

/// One cookieless client, as lists show it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CookielessClient {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub ip: IpAddr,
    pub user_agent: String,
    pub client: String,
    pub requests: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub first_seen: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub last_seen: Timestamp,
}

#[derive(Default)]
pub struct CookielessClients {
    map: DashMap<(IpAddr, String), Stats>,
    /// Taken to add a client: the cap holds however many arrive at once.
    adding: std::sync::Mutex<()>,
}

/// Past the cap, this share of the clients (the least recently seen) goes at once, so a
/// flood of new clients scans the map once per thousand, not once each.
const EVICT_BATCH: usize = MAX_CLIENTS / 10;

impl CookielessClients {
    /// Counts one request. The common case (a known client) allocates only the key
    /// lookup's String; a new client past the cap first makes room.
    pub fn record(&self, ip: IpAddr, ua: &str, now: Timestamp) {
        let ua = user_agent::truncate(ua);
        let us = now.as_microsecond();
        let key = (ip, ua.to_owned());
        if let Some(s) = self.map.get(&key) {
            s.requests.fetch_add(1, Ordering::Relaxed);
            s.last_seen_us.fetch_max(us, Ordering::Relaxed);
            return;
        }
        let _adding = self.adding.lock();
        if self.map.len() >= MAX_CLIENTS && !self.map.contains_key(&key) {
            self.evict_oldest();
        }
        self.map
            .entry(key)
            .or_insert_with(|| Stats {
                requests: AtomicU64::new(0),
                first_seen_us: us,
                last_seen_us: AtomicI64::new(us),
            })
            .requests
            .fetch_add(1, Ordering::Relaxed);
    }

    fn evict_oldest(&self) {
        let mut seen: Vec<(i64, (IpAddr, String))> = self
            .map
            .iter()
            .map(|e| {
                (
                    e.value().last_seen_us.load(Ordering::Relaxed),
                    e.key().clone(),
                )
            })
            .collect();
        let n = EVICT_BATCH.min(seen.len());
        if n < seen.len() {
            seen.select_nth_unstable_by_key(n, |(at, _)| *at);
        }
        for (_, k) in &seen[..n] {
            self.map.remove(k);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every client, most requests first.
    pub fn list(&self) -> Vec<CookielessClient> {
        let ts = |us: i64| Timestamp::from_microsecond(us).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut out: Vec<CookielessClient> = self
            .map
            .iter()
            .map(|e| {
                let ((ip, ua), s) = (e.key(), e.value());
                CookielessClient {
                    ip: *ip,
                    user_agent: ua.clone(),
                    client: user_agent::summarize(ua),
                    requests: s.requests.load(Ordering::Relaxed),
                    first_seen: ts(s.first_seen_us),
                    last_seen: ts(s.last_seen_us.load(Ordering::Relaxed)),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(b.last_seen.cmp(&a.last_seen))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_ip_and_agent_and_stays_bounded() {
        let c = CookielessClients::default();
        let t = |s| Timestamp::from_second(s).unwrap();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for i in 0..5 {
            c.record(ip, "Pingdom.com_bot_version_1.4", t(100 + i));
        }
        c.record(ip, "curl/8", t(50));
        let list = c.list();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].requests, 5);
        assert_eq!(list[0].first_seen, t(100));
        assert_eq!(list[0].last_seen, t(104));
        for i in 0..(MAX_CLIENTS as i64 + 10) {
            c.record(ip, &format!("bot {i}"), t(1000 + i));
        }
        assert!(c.len() <= MAX_CLIENTS && c.len() > MAX_CLIENTS - EVICT_BATCH);
        assert!(
            c.list().iter().all(|x| x.user_agent != "curl/8"),
            "the least recent went first"
        );
        assert!(
            c.list().iter().any(|x| x.user_agent == "bot 10009"),
            "the newest stays"
        );
    }

    #[test]
    fn the_cap_holds_when_many_arrive_at_once() {
        let c = CookielessClients::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        std::thread::scope(|s| {
            for n in 0..4 {
                let c = &c;
                s.spawn(move || {
                    for i in 0..6_000 {
                        let at = Timestamp::from_second(1000 + i).unwrap();
                        c.record(ip, &format!("bot {n}-{i}"), at);
                    }
                });
            }
        });
        assert!(c.len() <= MAX_CLIENTS, "{}", c.len());
    }
}
