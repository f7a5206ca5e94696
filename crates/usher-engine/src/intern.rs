//! One shared copy of the strings many sessions repeat — User-Agents, hosts, client
//! summaries — instead of one allocation per session: a million sessions come from a
//! few thousand distinct browsers.
//!
//! Bounded, since User-Agents are attacker-controlled: past the cap a string is simply
//! not shared. Strings no session holds any more are dropped by [`Interner::prune`].

use dashmap::DashMap;
use std::sync::{Arc, OnceLock};
use usher_core::user_agent;

const MAX_STRINGS: usize = 100_000;
const MAX_CLIENTS: usize = 100_000;

/// What a client says of itself: the same for every session of one browser on one host.
#[derive(Debug)]
pub struct ClientText {
    pub user_agent: Arc<str>,
    pub host: Arc<str>,
    summary: OnceLock<Arc<str>>,
}

impl ClientText {
    /// "Firefox 131 on Linux", worked out once per client when first asked for.
    pub fn summary(&self) -> &str {
        self.shared_summary()
    }

    /// The summary itself, shared (a flush hands it to the store without a copy).
    pub fn shared_summary(&self) -> &Arc<str> {
        self.summary
            .get_or_init(|| user_agent::summarize(&self.user_agent).into())
    }
}

/// Interned strings have one address each, so a (User-Agent, host) pair is keyed by
/// the two addresses: no string is hashed twice or copied to look a client up. An
/// entry's [`ClientText`] holds both strings, so neither address is reused while the
/// entry lives.
type ClientKey = (usize, usize);

#[derive(Default)]
pub struct Interner {
    /// SipHash (the default): the strings are what clients sent.
    strings: DashMap<Arc<str>, ()>,
    /// foldhash: the keys are addresses, nothing a client chooses (SipHash here was a
    /// few percent of loading a million sessions at start).
    clients: DashMap<ClientKey, Arc<ClientText>, crate::index::Fast>,
}

impl Interner {
    /// The shared copy of `s`.
    pub fn get(&self, s: &str) -> Arc<str> {
        if let Some(e) = self.strings.get(s) {
            return e.key().clone();
        }
        let shared: Arc<str> = Arc::from(s);
        if self.strings.len() < MAX_STRINGS {
            self.strings.insert(shared.clone(), ());
        }
        shared
    }

    /// The shared text of a client; `summary` is the one the store already worked out
    /// (empty when unknown).
    pub fn client(&self, user_agent: &str, host: &str, summary: &str) -> Arc<ClientText> {
        let user_agent = self.get(user_agent);
        let host = self.get(host);
        let key = (
            Arc::as_ptr(&user_agent).cast::<u8>() as usize,
            Arc::as_ptr(&host).cast::<u8>() as usize,
        );
        if let Some(c) = self.clients.get(&key) {
            return c.clone();
        }
        let summary = match summary {
            "" => OnceLock::new(),
            s => OnceLock::from(Arc::from(s)),
        };
        let text = Arc::new(ClientText {
            user_agent,
            host,
            summary,
        });
        if self.clients.len() < MAX_CLIENTS {
            self.clients.entry(key).or_insert(text).clone()
        } else {
            text
        }
    }

    /// Forgets clients and strings only the interner still holds.
    pub fn prune(&self) {
        self.clients.retain(|_, c| Arc::strong_count(c) > 1);
        self.strings.retain(|s, _| Arc::strong_count(s) > 1);
    }

    pub fn len(&self) -> usize {
        self.strings.len()
    }

    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_equal_strings_and_prunes_unused_ones() {
        let i = Interner::default();
        let a = i.get("Firefox");
        let b = i.get("Firefox");
        assert!(Arc::ptr_eq(&a, &b));
        drop(i.get("curl"));
        assert_eq!(i.len(), 2);
        i.prune();
        assert_eq!(i.len(), 1, "curl is held by nobody");
        assert!(Arc::ptr_eq(&i.get("Firefox"), &a));
    }

    #[test]
    fn one_client_text_per_browser_and_host() {
        let i = Interner::default();
        let a = i.client(
            "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Firefox/131.0",
            "app",
            "",
        );
        let b = i.client(
            "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Firefox/131.0",
            "app",
            "",
        );
        assert!(Arc::ptr_eq(&a, &b));
        assert!(a.summary().contains("Firefox"), "{}", a.summary());
        let other_host = i.client(&a.user_agent, "other", "");
        assert!(!Arc::ptr_eq(&a, &other_host));
        assert_eq!(&*other_host.user_agent, &*a.user_agent);
        drop((b, other_host));
        i.prune();
        assert_eq!(i.clients.len(), 1, "only the client still held is kept");
        drop(a);
        i.prune();
        assert!(i.clients.is_empty() && i.is_empty(), "then nothing is");
    }
}
