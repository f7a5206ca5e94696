//! Failed-login throttling: after a few failures, each further attempt for the same
//! account, or from the same address, must wait a delay that doubles per failure — up
//! to a cap. While it waits, the attempt is refused before any password is hashed.
//!
//! The per-account cap is short (30 s) on purpose: an attacker who keeps failing for a
//! victim's account can slow the victim down, never lock them out (SEC-61). The
//! per-address cap is longer (5 min): that is where a guesser sits. Memory is bounded.

use dashmap::DashMap;
use jiff::{SignedDuration, Timestamp};
use std::net::IpAddr;

/// Failures allowed before any delay.
pub const FREE_FAILURES: u32 = 3;
pub const ACCOUNT_CAP: SignedDuration = SignedDuration::from_secs(30);
pub const ADDRESS_CAP: SignedDuration = SignedDuration::from_secs(300);
/// Entries kept at most, per map; past it, the oldest half is dropped.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Timestamp,
}

#[derive(Default)]
pub struct Throttle {
    accounts: DashMap<String, Failures>,
    addresses: DashMap<IpAddr, Failures>,
}

fn delay(count: u32, cap: SignedDuration) -> SignedDuration {
    if count < FREE_FAILURES {
        return SignedDuration::ZERO;
    }
    let exp = (count - FREE_FAILURES).min(16);
    SignedDuration::from_secs(1i64 << exp).min(cap)
}

fn wait(f: Option<Failures>, cap: SignedDuration, now: Timestamp) -> Option<SignedDuration> {
    let f = f?;
    let until = f.last + delay(f.count, cap);
    (until > now).then(|| until.duration_since(now))
}

fn bound<K: Eq + std::hash::Hash + Clone>(map: &DashMap<K, Failures>) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    let mut stamps: Vec<Timestamp> = map.iter().map(|e| e.value().last).collect();
    stamps.sort();
    let median = stamps[stamps.len() / 2];
    map.retain(|_, f| f.last > median);
}

impl Throttle {
    /// How long the attempt must wait, if at all.
    pub fn wait(&self, account: &str, ip: IpAddr, now: Timestamp) -> Option<SignedDuration> {
        let a = wait(self.accounts.get(account).map(|e| *e), ACCOUNT_CAP, now);
        let b = wait(self.addresses.get(&ip).map(|e| *e), ADDRESS_CAP, now);
        a.into_iter().chain(b).max()
    }

    pub fn failed(&self, account: &str, ip: IpAddr, now: Timestamp) {
        bound(&self.accounts);
        bound(&self.addresses);
        let bump = |f: &mut Failures| {
            f.count = f.count.saturating_add(1);
            f.last = now;
        };
        bump(
            &mut self.accounts.entry(account.to_owned()).or_insert(Failures {
                count: 0,
                last: now,
            }),
        );
        bump(&mut self.addresses.entry(ip).or_insert(Failures {
            count: 0,
            last: now,
        }));
    }

    pub fn succeeded(&self, account: &str, ip: IpAddr) {
        self.accounts.remove(account);
        self.addresses.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_and_stay_capped() {
        let t = Throttle::default();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        for _ in 0..FREE_FAILURES {
            assert_eq!(t.wait("alice", ip, t0), None);
            t.failed("alice", ip, t0);
        }
        assert_eq!(t.wait("alice", ip, t0), Some(SignedDuration::from_secs(1)));
        assert_eq!(t.wait("alice", ip, t0 + SignedDuration::from_secs(1)), None);
        for _ in 0..20 {
            t.failed("alice", ip, t0);
        }
        let other: IpAddr = "198.51.100.9".parse().unwrap();
        assert_eq!(
            t.wait("alice", other, t0),
            Some(ACCOUNT_CAP),
            "the account's cap is short"
        );
        assert_eq!(
            t.wait("bob", ip, t0),
            Some(ADDRESS_CAP),
            "the address's is long"
        );
        t.succeeded("alice", other);
        assert_eq!(t.wait("alice", other, t0), None);
    }
}
