//! The live-session index: every session found by its token hash and by its id, with
//! no copy of either key beside the session — the keys are read off the session
//! itself, so an entry is one pointer (issue 9: memory per session).

use crate::sessions::LiveSession;
use dashmap::DashMap;
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;
use usher_core::{SessionId, TokenHash};

/// A session keyed by its token hash.
#[derive(Debug, Clone)]
pub(crate) struct ByToken(Arc<LiveSession>);

/// A session keyed by its public id.
#[derive(Debug, Clone)]
struct ById(Arc<LiveSession>);

// Hash and Eq agree with the key's own (what `Borrow` requires): a lookup by a bare
// `TokenHash` or `SessionId` finds the entry.
impl Hash for ByToken {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.token_hash.hash(h);
    }
}
impl PartialEq for ByToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.token_hash == other.0.token_hash
    }
}
impl Eq for ByToken {}
impl Borrow<TokenHash> for ByToken {
    fn borrow(&self) -> &TokenHash {
        &self.0.token_hash
    }
}
impl ByToken {
    /// The session (as a map entry's value would be).
    pub(crate) fn value(&self) -> &Arc<LiveSession> {
        &self.0
    }
}

impl Deref for ByToken {
    type Target = Arc<LiveSession>;
    fn deref(&self) -> &Arc<LiveSession> {
        &self.0
    }
}

impl Hash for ById {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.id.hash(h);
    }
}
impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}
impl Eq for ById {}
impl Borrow<SessionId> for ById {
    fn borrow(&self) -> &SessionId {
        &self.0.id
    }
}

/// foldhash, not SipHash: the keys are Usher's own random values (token hashes of
/// tokens it generated, ids it generated), never chosen by a client, so there is no
/// flooding to resist — and hashing was the largest cost of loading a million.
pub(crate) type Fast = foldhash::fast::RandomState;

#[derive(Default)]
pub(crate) struct Index {
    by_token: DashMap<ByToken, (), Fast>,
    by_id: DashMap<ById, (), Fast>,
}

impl Index {
    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<LiveSession>> {
        self.by_token.get(hash).map(|e| e.key().0.clone())
    }

    pub(crate) fn by_id(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        self.by_id.get(id).map(|e| e.key().0.clone())
    }

    pub(crate) fn contains_id(&self, id: &SessionId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Puts `live` in, unless a session with its token is there: returns the session
    /// now indexed and whether it is `live`.
    pub(crate) fn insert(&self, live: Arc<LiveSession>) -> (Arc<LiveSession>, bool) {
        use dashmap::mapref::entry::Entry;
        match self.by_token.entry(ByToken(live.clone())) {
            Entry::Occupied(e) => return (e.key().0.clone(), false),
            Entry::Vacant(e) => {
                e.insert(());
            }
        }
        self.by_id.insert(ById(live.clone()), ());
        (live, true)
    }

    /// Takes the session `id` out; `None` if it was not in.
    pub(crate) fn remove(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        let (ById(s), ()) = self.by_id.remove(id)?;
        self.by_token.remove(&s.token_hash);
        Some(s)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_token.len()
    }

    /// Every indexed session (each entry derefs to its `Arc<LiveSession>`).
    pub(crate) fn iter(&self) -> impl Iterator<Item = impl Deref<Target = ByToken> + '_> + '_ {
        self.by_token.iter().map(Keyed)
    }
}

/// An iteration entry, seen as its key.
pub(crate) struct Keyed<'a>(dashmap::mapref::multiple::RefMulti<'a, ByToken, ()>);

impl Deref for Keyed<'_> {
    type Target = ByToken;
    fn deref(&self) -> &ByToken {
        self.0.key()
    }
}
