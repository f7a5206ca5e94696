//! Usher's Prometheus metrics: one registry per engine (so tests never share global
//! state), recorded by the engine and the HTTP layer, encoded on scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::sharded;

/// Label sets are fixed arrays of static strings: recording allocates nothing.
type L1 = [(&'static str, &'static str); 1];
type L2 = [(&'static str, &'static str); 2];

pub struct Metrics {
    registry: Registry,
    pub sessions_active: Family<L2, Gauge>,
    /// Per-thread slots: recorded on every request (`crate::sharded`).
    pub requests: Family<L1, sharded::Counter>,
    pub check_seconds: sharded::Histogram,
    pub logins: Family<L1, Counter>,
    pub sessions_ended: Family<L1, Counter>,
    pub flush_seconds: Histogram,
    pub flush_batch: Histogram,
    pub store_errors: Counter,
    pub cookieless_clients: Gauge,
    pub access_log_dropped: Counter,
    pub client_ip_header_malformed: Counter,
    /// Tokens not in memory, looked up in the store (a new node's, or junk).
    pub token_store_lookups: Counter,
    /// The `requests` counters by outcome, looked up once (not per request).
    pub outcomes: Outcomes,
    /// Requests answered in the server's fast lane, ahead of hyper (per-thread slots).
    pub fast_lane: sharded::Counter,
}

#[derive(Debug, Clone)]
pub struct Outcomes {
    pub allowed: sharded::Counter,
    pub public: sharded::Counter,
    pub denied: sharded::Counter,
    pub error: sharded::Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("usher");
        let sessions_active = Family::<L2, Gauge>::default();
        registry.register(
            "sessions_active",
            "Live sessions in this node's index, by type and whether a user is signed in",
            sessions_active.clone(),
        );
        let requests = Family::<L1, sharded::Counter>::default();
        registry.register(
            "requests",
            "Requests checked by the gate and forward auth, by outcome (allowed, denied, error)",
            requests.clone(),
        );
        // 10 µs .. ~1.3 s: the check itself is micro-seconds; misses go to the store.
        let check_seconds = sharded::Histogram::new(exponential_buckets(0.000_01, 2.0, 18));
        registry.register_with_unit(
            "session_check_duration",
            "Time to check a request's session (cookie to verdict)",
            Unit::Seconds,
            check_seconds.clone(),
        );
        let logins = Family::<L1, Counter>::default();
        registry.register(
            "logins",
            "Login attempts by result (success, failure)",
            logins.clone(),
        );
        let sessions_ended = Family::<L1, Counter>::default();
        registry.register(
            "sessions_ended",
            "Sessions ended by this node, by reason",
            sessions_ended.clone(),
        );
        let flush_seconds = Histogram::new(exponential_buckets(0.000_1, 2.0, 16));
        registry.register_with_unit(
            "flush_duration",
            "Time to write one batch of request counts",
            Unit::Seconds,
            flush_seconds.clone(),
        );
        let flush_batch = Histogram::new(exponential_buckets(1.0, 2.0, 14));
        registry.register(
            "flush_batch_size",
            "Sessions written per flush",
            flush_batch.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Store operations that failed (the store was unavailable or refused)",
            store_errors.clone(),
        );
        let cookieless_clients = Gauge::default();
        registry.register(
            "cookieless_clients",
            "Distinct (IP, User-Agent) clients seen without a cookie or credential",
            cookieless_clients.clone(),
        );
        let access_log_dropped = Counter::default();
        registry.register(
            "access_log_dropped",
            "Access log lines dropped because the writer could not keep up",
            access_log_dropped.clone(),
        );
        let client_ip_header_malformed = Counter::default();
        registry.register(
            "client_ip_header_malformed",
            "Requests from a trusted proxy whose client IP header could not be read (the peer address was used)",
            client_ip_header_malformed.clone(),
        );
        let token_store_lookups = Counter::default();
        registry.register(
            "token_store_lookups",
            "Session tokens not in memory that were looked up in the store (unknown tokens are then remembered for a while and not looked up again)",
            token_store_lookups.clone(),
        );
        let fast_lane = sharded::Counter::default();
        registry.register(
            "fast_lane_requests",
            "Requests answered in the fast lane, ahead of hyper: forward auth and the reverse proxy's, HTTP/1.1 without a body, with a session in memory",
            fast_lane.clone(),
        );
        let outcome = |o: &'static str| requests.get_or_create(&[("outcome", o)]).clone();
        let outcomes = Outcomes {
            allowed: outcome("allowed"),
            public: outcome("public"),
            denied: outcome("denied"),
            error: outcome("error"),
        };
        Self {
            outcomes,
            fast_lane,
            client_ip_header_malformed,
            token_store_lookups,
            registry,
            sessions_active,
            requests,
            check_seconds,
            logins,
            sessions_ended,
            flush_seconds,
            flush_batch,
            store_errors,
            cookieless_clients,
            access_log_dropped,
        }
    }

    /// The registry in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
