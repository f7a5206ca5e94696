//! One shared copy of the strings many sessions repeat — User-Agents, hosts, client
//! summaries — instead of one allocation per session: a million sessions come from a
//! few thousand distinct browsers.
//!
//! Bounded, since User-Agents are attacker-controlled: past the cap a string is simply
//! not shared. Strings no session holds any more are dropped by [`Interner::prune`].

use dashmap::DashMap;
use std::sync::Arc;

const MAX_STRINGS: usize = 100_000;

#[derive(Default)]
pub struct Interner {
    strings: DashMap<Arc<str>, ()>,
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

    /// Forgets strings only the interner still holds.
    pub fn prune(&self) {
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
}
