//! The live-session index: every session found by its token and by its id, with
//! no copy of either key beside the session — the keys are read off the session
//! itself, so an entry is one pointer (issue 9: memory per session).

use crate::sessions::LiveSession;
use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use usher_core::{SessionId, TokenHash};

/// A session seen as one of its keys. Hash and Eq are the key's own (what `Borrow`
/// requires), so a lookup by a bare key finds the entry.
macro_rules! keyed_by {
    ($name:ident, $field:ident: $key:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone)]
        struct $name(Arc<LiveSession>);
        impl Hash for $name {
            fn hash<H: Hasher>(&self, h: &mut H) {
                self.0.$field.hash(h);
            }
        }
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.0.$field == other.0.$field
            }
        }
        impl Eq for $name {}
        impl Borrow<$key> for $name {
            fn borrow(&self) -> &$key {
                &self.0.$field
            }
        }
    };
}

keyed_by!(ByToken, token_key: TokenKey, "A session keyed by its token's key.");
keyed_by!(ById, id: SessionId, "A session keyed by its public id.");

/// What finds a session by its token in memory: the first 128 bits of the token's
/// SHA-256 hash, where the store keeps all 256. 16 bytes less in every session (issue 9:
/// memory per session), and still out of reach: a token found by another's key would
/// take a 128-bit preimage of SHA-256 — 2^128 tries, divided by the sessions live. A
/// lazy session's full hash waits beside it until it is written ([`crate::sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey([u8; 16]);

impl TokenKey {
    pub(crate) fn of(hash: &TokenHash) -> Self {
        let mut key = [0; 16];
        key.copy_from_slice(&hash.as_bytes()[..16]);
        Self(key)
    }
}

/// foldhash, not SipHash: the keys are Usher's own random values (token hashes of
/// tokens it generated, ids it generated), never chosen by a client, so there is no
/// flooding to resist — and hashing was the largest cost of loading a million.
pub(crate) type Fast = foldhash::fast::RandomState;

/// Shards: requests on different sessions rarely wait for the same lock.
const SHARDS: usize = 64;
/// Sessions a scan reads ahead (see [`Index::for_each`]).
const SCAN_BATCH: usize = 32;

type Shard<T> = RwLock<HashSet<T, Fast>>;

/// Sharded sets under plain `RwLock`s rather than a `DashMap`: a scan then reads every
/// entry of a shard under one lock, where DashMap's iterator clones a reference count
/// per entry — an atomic read-modify-write that stalls the very memory reads a scan
/// of a million sessions is made of.
pub(crate) struct Index {
    by_token: Box<[Shard<ByToken>]>,
    by_id: Box<[Shard<ById>]>,
    hasher: Fast,
}

impl Default for Index {
    fn default() -> Self {
        fn shards<T>() -> Box<[Shard<T>]> {
            (0..SHARDS).map(|_| RwLock::default()).collect()
        }
        Self {
            by_token: shards(),
            by_id: shards(),
            hasher: Fast::default(),
        }
    }
}

/// A lock whose holder panicked still guards a whole set: no operation here leaves one
/// half-changed, so the set is used as it is.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl Index {
    fn shard<'a, T, K: Hash + ?Sized>(&self, shards: &'a [Shard<T>], key: &K) -> &'a Shard<T> {
        // The high bits: the sets inside use the low ones.
        let h = self.hasher.hash_one(key);
        &shards[(h >> 58) as usize % SHARDS]
    }

    pub(crate) fn get(&self, hash: &TokenHash) -> Option<Arc<LiveSession>> {
        let key = TokenKey::of(hash);
        read(self.shard(&self.by_token, &key))
            .get(&key)
            .map(|e| e.0.clone())
    }

    pub(crate) fn by_id(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        read(self.shard(&self.by_id, id))
            .get(id)
            .map(|e| e.0.clone())
    }

    pub(crate) fn contains_id(&self, id: &SessionId) -> bool {
        read(self.shard(&self.by_id, id)).contains(id)
    }

    /// Puts `live` in, unless a session with its token is there: returns the session
    /// now indexed and whether it is `live`.
    pub(crate) fn insert(&self, live: Arc<LiveSession>) -> (Arc<LiveSession>, bool) {
        {
            let mut tokens = write(self.shard(&self.by_token, &live.token_key));
            if let Some(there) = tokens.get(&live.token_key) {
                return (there.0.clone(), false);
            }
            tokens.insert(ByToken(live.clone()));
        }
        write(self.shard(&self.by_id, &live.id)).insert(ById(live.clone()));
        (live, true)
    }

    /// Takes the session `id` out; `None` if it was not in.
    pub(crate) fn remove(&self, id: &SessionId) -> Option<Arc<LiveSession>> {
        let ById(s) = write(self.shard(&self.by_id, id)).take(id)?;
        write(self.shard(&self.by_token, &s.token_key)).remove(&s.token_key);
        Some(s)
    }

    /// Makes room for `n` sessions in all, so that loading them never grows a set:
    /// growing rehashes every entry, which reads every session's key from its scattered
    /// memory (issue 9: restart).
    pub(crate) fn reserve(&self, n: usize) {
        let each = n / SHARDS;
        for (tokens, ids) in self.by_token.iter().zip(self.by_id.iter()) {
            write(tokens).reserve(each);
            write(ids).reserve(each);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_token.iter().map(|s| read(s).len()).sum()
    }

    /// Calls `f` on every indexed session, one shard locked for reading at a time (so
    /// `f` must not insert or remove). Sessions lie scattered in memory: each batch is
    /// first read through with plain loads, which the processor overlaps, and only then
    /// handed to `f`, whose locks would otherwise wait out every cache miss one by one.
    pub(crate) fn for_each(&self, mut f: impl FnMut(&Arc<LiveSession>)) {
        for shard in self.by_token.iter() {
            let set = read(shard);
            let mut batch: Vec<&Arc<LiveSession>> = Vec::with_capacity(SCAN_BATCH);
            let mut entries = set.iter();
            loop {
                batch.clear();
                batch.extend(entries.by_ref().take(SCAN_BATCH).map(|e| &e.0));
                if batch.is_empty() {
                    break;
                }
                let mut warm = 0u64;
                for s in &batch {
                    warm ^= s.warm();
                }
                std::hint::black_box(warm);
                for s in &batch {
                    f(s);
                }
            }
        }
    }
}
