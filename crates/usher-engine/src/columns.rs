//! The live sessions' changing facts — state, request count, last access, address —
//! kept in dense columns instead of inside each session's own allocation, so that a
//! list of a million sessions reads memory in order rather than chasing one pointer per
//! session (issue 9: an API page of 1,000,000 sessions in ≤ 20 ms). A session holds
//! one slot for its life; the slot goes back to the free list only once nothing holds
//! the session any more (see [`Columns::sweep`]).

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU32, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};

const CHUNK_BITS: u32 = 12;
/// Slots per chunk: chunks are made as sessions arrive and never move, so a slot is
/// reached without a lock.
const CHUNK: usize = 1 << CHUNK_BITS;
/// 2^15 chunks of 4,096: 134 million sessions, past what any one node's memory holds.
const MAX_CHUNKS: usize = 1 << 15;

/// A slot's occupancy (the low two bits of its status).
const OCCUPANCY: u8 = 0b11;
const FREE: u8 = 0;
/// Handed out, its session being made: neither listed nor swept.
const RESERVED: u8 = 1;
/// A session object has it, but the session is not in the index (not listed).
const HELD: u8 = 2;
/// In the index: listed.
const INDEXED: u8 = 3;
/// The session has no user (status bit).
pub(crate) const NO_USER: u8 = 0b100;
/// An API session (status bit).
pub(crate) const API: u8 = 0b1000;
/// The address's seqlock counter, in the status's top four bits: odd while written.
const SEQ: u8 = 0b1_0000;

/// What a session's state column holds while it is live; anything else is the code of
/// the reason it is ending for.
pub(crate) const LIVE: u8 = 0;
/// What [`Columns::state`] says of a slot never handed out: not live.
const ENDED: u8 = u8::MAX;

struct Chunk<T> {
    status: Box<[AtomicU8]>,
    state: Box<[AtomicU8]>,
    requests: Box<[AtomicU64]>,
    last_access_us: Box<[AtomicI64]>,
    /// Whole seconds since [`CREATED_EPOCH_US`], rounded down; 0 for anything earlier.
    /// Only a filter for the reaper (four bytes where the exact time takes eight): a
    /// session it picks is checked on the session itself.
    created_s: Box<[AtomicU32]>,
    /// A 32-bit hash of the user's name (0: no user), so that one user's sessions are
    /// found without visiting everyone's; a session it picks is checked by name.
    user_key: Box<[AtomicU32]>,
    /// The address as IPv6 (IPv4 mapped), high and low halves, under the seqlock.
    ip_hi: Box<[AtomicU64]>,
    ip_lo: Box<[AtomicU64]>,
    /// Weak: the index owns sessions; a list finds its page's sessions through these.
    owners: Mutex<Box<[Weak<T>]>>,
}

fn column<A>(new: impl Fn() -> A) -> Box<[A]> {
    (0..CHUNK).map(|_| new()).collect()
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Self {
            status: column(|| AtomicU8::new(FREE)),
            state: column(|| AtomicU8::new(LIVE)),
            requests: column(|| AtomicU64::new(0)),
            last_access_us: column(|| AtomicI64::new(0)),
            created_s: column(|| AtomicU32::new(0)),
            user_key: column(|| AtomicU32::new(0)),
            ip_hi: column(|| AtomicU64::new(0)),
            ip_lo: column(|| AtomicU64::new(0)),
            owners: Mutex::new(column(Weak::new)),
        }
    }

    fn owners(&self) -> MutexGuard<'_, Box<[Weak<T>]>> {
        self.owners.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Slots {
    free: Vec<u32>,
    next: u32,
}

/// The columns; see the module's doc.
pub(crate) struct Columns<T> {
    chunks: Box<[OnceLock<Box<Chunk<T>>>]>,
    slots: Mutex<Slots>,
}

impl<T> Default for Columns<T> {
    fn default() -> Self {
        Self {
            chunks: (0..MAX_CHUNKS).map(|_| OnceLock::new()).collect(),
            slots: Mutex::new(Slots {
                free: Vec::new(),
                next: 0,
            }),
        }
    }
}

/// A session's facts as it is made.
pub(crate) struct Facts {
    pub flags: u8,
    pub requests: u64,
    pub created_us: i64,
    pub last_access_us: i64,
    pub ip: [u8; 16],
    pub user_key: u32,
}

/// 2020-01-01T00:00:00Z: creation times are counted in seconds from here.
const CREATED_EPOCH_US: i64 = 1_577_836_800_000_000;

fn created_s(us: i64) -> u32 {
    let s = us.saturating_sub(CREATED_EPOCH_US) / 1_000_000;
    u32::try_from(s.max(0)).unwrap_or(u32::MAX)
}

/// What the reaper asks of the columns: which listed sessions may have to end now.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Due {
    /// Idle if last accessed at or before this: for signed-in sessions, for sessions
    /// without a user.
    pub idle_before_us: [i64; 2],
    /// Past the absolute timeout if made at or before this.
    pub created_before_us: i64,
}

/// Every slot is full.
#[derive(Debug, thiserror::Error)]
#[error("no room for another live session ({} at most)", MAX_CHUNKS * CHUNK)]
pub struct Full;

/// Which sessions a list wants, in the columns' terms.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Filter {
    /// `Some(true)`: only sessions without a user.
    pub no_user: Option<bool>,
    pub api: Option<bool>,
    pub net: Option<Net>,
    /// Last access at or after this (microseconds).
    pub since_us: Option<i64>,
}

/// The column a list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Requests,
    LastAccess,
}

/// The best `keep` of a list, by key: `(rank, slot)`, lower rank first, where the
/// rank is the key made to sort ascending either way. Ties at the last rank kept are
/// all included (the caller breaks them by id).
pub(crate) struct Top {
    pub total: u64,
    pub ranked: Vec<(u64, u32)>,
}

fn ip_bits(ip: [u8; 16]) -> (u64, u64) {
    let n = u128::from_be_bytes(ip);
    ((n >> 64) as u64, n as u64)
}

/// An IPv4 address mapped into IPv6: `::ffff:a.b.c.d`.
const V4_MAPPED: u128 = 0xffff << 32;
const V4_PREFIX_MASK: u128 = !0xffff_ffff;

/// An address range over mapped addresses: an address is in it when, masked, it
/// equals the value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Net {
    mask: u128,
    value: u128,
    v4: bool,
}

impl Net {
    pub(crate) fn of(net: &ipnet::IpNet) -> Self {
        let prefix = u32::from(net.prefix_len());
        let (bits, len, v4) = match net {
            ipnet::IpNet::V4(n) => (
                V4_MAPPED | u128::from(n.network().to_bits()),
                96 + prefix,
                true,
            ),
            ipnet::IpNet::V6(n) => (n.network().to_bits(), prefix, false),
        };
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - len)
        };
        Self {
            mask,
            value: bits & mask,
            v4,
        }
    }

    /// An IPv6 range never holds an IPv4 session (addresses are canonical, IPv4 kept
    /// as IPv4), even one that spans ::ffff:0:0/96 — as `IpNet::contains` says.
    fn contains(&self, ip: u128) -> bool {
        ip & self.mask == self.value && (self.v4 || ip & V4_PREFIX_MASK != V4_MAPPED)
    }
}

impl<T> Columns<T> {
    /// A slot's chunk and place in it. `None` only for a slot never handed out.
    fn at(&self, slot: u32) -> Option<(&Chunk<T>, usize)> {
        let chunk = self.chunks.get((slot >> CHUNK_BITS) as usize)?.get()?;
        Some((chunk, slot as usize & (CHUNK - 1)))
    }

    /// The chunks made so far, in order.
    fn made(&self) -> impl Iterator<Item = &Chunk<T>> {
        self.chunks.iter().map_while(|c| c.get().map(|b| &**b))
    }

    /// A slot for a session being made, with its first facts; [`Columns::own`] must
    /// follow once the session exists.
    pub(crate) fn alloc(&self, facts: &Facts) -> Result<u32, Full> {
        let slot = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            match slots.free.pop() {
                Some(s) => s,
                None => {
                    let s = slots.next;
                    let chunk = (s >> CHUNK_BITS) as usize;
                    if chunk >= MAX_CHUNKS {
                        return Err(Full);
                    }
                    self.chunks[chunk].get_or_init(|| Box::new(Chunk::new()));
                    slots.next += 1;
                    s
                }
            }
        };
        let Some((c, i)) = self.at(slot) else {
            return Err(Full);
        };
        let (hi, lo) = ip_bits(facts.ip);
        c.state[i].store(LIVE, Ordering::Relaxed);
        c.requests[i].store(facts.requests, Ordering::Relaxed);
        c.last_access_us[i].store(facts.last_access_us, Ordering::Relaxed);
        c.created_s[i].store(created_s(facts.created_us), Ordering::Relaxed);
        c.user_key[i].store(facts.user_key, Ordering::Relaxed);
        c.ip_hi[i].store(hi, Ordering::Relaxed);
        c.ip_lo[i].store(lo, Ordering::Relaxed);
        // Keeps the seqlock's counter (readers of a freed slot may still be about).
        let seq = c.status[i].load(Ordering::Relaxed) & !(OCCUPANCY | NO_USER | API);
        c.status[i].store(seq | facts.flags | RESERVED, Ordering::Release);
        Ok(slot)
    }

    /// Ties a reserved slot to its session.
    pub(crate) fn own(&self, slot: u32, owner: Weak<T>) {
        let Some((c, i)) = self.at(slot) else {
            return;
        };
        c.owners()[i] = owner;
        c.status[i].fetch_xor(RESERVED ^ HELD, Ordering::AcqRel);
    }

    /// The session is in the index (`true`) or out of it: lists show only the former.
    pub(crate) fn set_indexed(&self, slot: u32, indexed: bool) {
        let Some((c, i)) = self.at(slot) else {
            return;
        };
        if indexed {
            c.status[i].fetch_or(INDEXED, Ordering::AcqRel);
        } else {
            c.status[i].fetch_and(!(INDEXED ^ HELD), Ordering::AcqRel);
        }
    }

    /// Frees the slots of sessions out of the index that nothing holds any more, and
    /// returns how many. A session still held (a request in flight) keeps its slot, so
    /// counting on it never lands on another session's.
    pub(crate) fn sweep(&self) -> usize {
        let mut freed = Vec::new();
        for (n, c) in self.made().enumerate() {
            let held: Vec<usize> = (0..CHUNK)
                .filter(|&i| c.status[i].load(Ordering::Acquire) & OCCUPANCY == HELD)
                .collect();
            if held.is_empty() {
                continue;
            }
            let mut owners = c.owners();
            for i in held {
                if owners[i].strong_count() == 0 {
                    owners[i] = Weak::new();
                    c.status[i].fetch_and(!OCCUPANCY, Ordering::AcqRel);
                    freed.push(((n << CHUNK_BITS) | i) as u32);
                }
            }
        }
        let count = freed.len();
        if count > 0 {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            slots.free.extend(freed);
        }
        count
    }

    pub(crate) fn state(&self, slot: u32) -> u8 {
        let Some((c, i)) = self.at(slot) else {
            return ENDED;
        };
        c.state[i].load(Ordering::Acquire)
    }

    /// Marks a live session as ending for `code`; false if it was ending already.
    pub(crate) fn end(&self, slot: u32, code: u8) -> bool {
        let Some((c, i)) = self.at(slot) else {
            return false;
        };
        c.state[i]
            .compare_exchange(LIVE, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Counts one request at `now_us`.
    pub(crate) fn touch(&self, slot: u32, now_us: i64) {
        let Some((c, i)) = self.at(slot) else {
            return;
        };
        c.requests[i].fetch_add(1, Ordering::Relaxed);
        c.last_access_us[i].fetch_max(now_us, Ordering::Relaxed);
    }

    pub(crate) fn requests(&self, slot: u32) -> u64 {
        let Some((c, i)) = self.at(slot) else {
            return 0;
        };
        c.requests[i].load(Ordering::Relaxed)
    }

    pub(crate) fn last_access_us(&self, slot: u32) -> i64 {
        let Some((c, i)) = self.at(slot) else {
            return 0;
        };
        c.last_access_us[i].load(Ordering::Relaxed)
    }

    /// The address, never torn: a reader that overlapped a change reads again.
    pub(crate) fn ip(&self, slot: u32) -> [u8; 16] {
        let Some((c, i)) = self.at(slot) else {
            return [0; 16];
        };
        read_ip(c, i).to_be_bytes()
    }

    /// Changes the address, and returns the one it replaced, if it is another. Callers
    /// must not change the same slot's address at once (the session's client lock
    /// keeps them apart).
    pub(crate) fn set_ip(&self, slot: u32, ip: [u8; 16]) -> Option<[u8; 16]> {
        let (c, i) = self.at(slot)?;
        let (hi, lo) = ip_bits(ip);
        let was = (
            c.ip_hi[i].load(Ordering::Relaxed),
            c.ip_lo[i].load(Ordering::Relaxed),
        );
        if was == (hi, lo) {
            return None;
        }
        c.status[i].fetch_add(SEQ, Ordering::Acquire);
        fence(Ordering::Release);
        c.ip_hi[i].store(hi, Ordering::Relaxed);
        c.ip_lo[i].store(lo, Ordering::Relaxed);
        c.status[i].fetch_add(SEQ, Ordering::Release);
        Some(((u128::from(was.0) << 64) | u128::from(was.1)).to_be_bytes())
    }

    /// The session in `slot`, if it still exists.
    pub(crate) fn owner(&self, slot: u32) -> Option<Arc<T>> {
        let (c, i) = self.at(slot)?;
        c.owners()[i].upgrade()
    }

    /// Calls `f(slot)` for every listed session that may have to end: ending already,
    /// idle, or perhaps past its absolute timeout (a superset: the caller decides on
    /// the session). Reads the columns alone, so a reaper pass over a million sessions
    /// touches each session's memory only when it is due.
    pub(crate) fn for_each_due(&self, due: &Due, mut f: impl FnMut(u32)) {
        // Made at or before this whole second, perhaps past it (rounded down, so a
        // session made within the second is a candidate too).
        let created_by = created_s(due.created_before_us);
        self.each_listed(|c, i, slot, status| {
            let idle_before = due.idle_before_us[usize::from(status & NO_USER != 0)];
            let created = c.created_s[i].load(Ordering::Relaxed);
            if c.state[i].load(Ordering::Relaxed) != LIVE
                || c.last_access_us[i].load(Ordering::Relaxed) <= idle_before
                || created == 0
                || created <= created_by
            {
                f(slot);
            }
        });
    }

    /// Calls `f(slot)` for every listed session (live or ending) whose user key is `key`.
    pub(crate) fn for_each_with_user_key(&self, key: u32, mut f: impl FnMut(u32)) {
        self.each_listed(|c, i, slot, _| {
            if c.user_key[i].load(Ordering::Relaxed) == key {
                f(slot);
            }
        });
    }

    /// Calls `f(slot, status)` for every listed live session.
    pub(crate) fn for_each_live(&self, mut f: impl FnMut(u32, u8)) {
        self.each_listed(|c, i, slot, status| {
            if c.state[i].load(Ordering::Relaxed) == LIVE {
                f(slot, status);
            }
        });
    }

    /// The one walk over the columns: calls `f(chunk, place, slot, status)` for every
    /// slot in the index, in memory order.
    fn each_listed(&self, mut f: impl FnMut(&Chunk<T>, usize, u32, u8)) {
        for (n, c) in self.made().enumerate() {
            let base = (n << CHUNK_BITS) as u32;
            for i in 0..CHUNK {
                let status = c.status[i].load(Ordering::Acquire);
                if status & OCCUPANCY == INDEXED {
                    f(c, i, base | i as u32, status);
                }
            }
        }
    }

    /// The listed live sessions that pass `filter`: how many, and the best `keep` by
    /// `key` (every one if `None`), plus any that tie with the last kept.
    pub(crate) fn top(&self, filter: &Filter, key: Key, desc: bool, keep: Option<usize>) -> Top {
        let mut total = 0u64;
        let mut heap = std::collections::BinaryHeap::<(u64, u32)>::new();
        let mut all = Vec::new();
        // A candidate dropped while ranked the same as the worst kept: the ties at the
        // end may then be more than the heap holds.
        let mut lost_tie: Option<u64> = None;
        self.scan(filter, key, desc, |rank, slot| {
            total += 1;
            match keep {
                None => all.push((rank, slot)),
                Some(0) => {}
                Some(k) => {
                    if heap.len() < k {
                        heap.push((rank, slot));
                        return;
                    }
                    let worst = heap.peek().map_or(u64::MAX, |w| w.0);
                    if rank < worst {
                        heap.pop();
                        heap.push((rank, slot));
                        if heap.peek().is_some_and(|w| w.0 == worst) {
                            lost_tie = Some(worst);
                        }
                    } else if rank == worst {
                        lost_tie = Some(worst);
                    }
                }
            }
        });
        if keep.is_none() {
            return Top { total, ranked: all };
        }
        let last = heap.peek().map(|w| w.0);
        let mut ranked = heap.into_vec();
        if let Some(t) = last
            && lost_tie == Some(t)
        {
            ranked.retain(|(rank, _)| *rank < t);
            self.scan(filter, key, desc, |rank, slot| {
                if rank == t {
                    ranked.push((rank, slot));
                }
            });
        }
        Top { total, ranked }
    }

    /// Calls `f(rank, slot)` for every listed live session that passes `filter`.
    fn scan(&self, filter: &Filter, key: Key, desc: bool, mut f: impl FnMut(u64, u32)) {
        let flag = |on: Option<bool>, bit: u8| on.map(|b| (bit, if b { bit } else { 0 }));
        let (mask, want) = [flag(filter.no_user, NO_USER), flag(filter.api, API)]
            .into_iter()
            .flatten()
            .fold((OCCUPANCY, INDEXED), |(m, w), (bit, v)| (m | bit, w | v));
        let since = filter.since_us.unwrap_or(i64::MIN);
        let flip = if desc { u64::MAX } else { 0 };
        self.each_listed(|c, i, slot, status| {
            if status & mask != want || c.state[i].load(Ordering::Relaxed) != LIVE {
                return;
            }
            let last = c.last_access_us[i].load(Ordering::Relaxed);
            if last < since {
                return;
            }
            if let Some(net) = &filter.net
                && !net.contains(read_ip(c, i))
            {
                return;
            }
            let value = match key {
                Key::Requests => c.requests[i].load(Ordering::Relaxed),
                Key::LastAccess => last.cast_unsigned() ^ (1 << 63),
            };
            f(value ^ flip, slot);
        });
    }
}

/// The seqlock's read side: the counter before and after must be the same and even.
fn read_ip<T>(c: &Chunk<T>, i: usize) -> u128 {
    loop {
        let before = c.status[i].load(Ordering::Acquire);
        let hi = c.ip_hi[i].load(Ordering::Relaxed);
        let lo = c.ip_lo[i].load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        let after = c.status[i].load(Ordering::Relaxed);
        if before & SEQ == 0 && before >> 4 == after >> 4 {
            return (u128::from(hi) << 64) | u128::from(lo);
        }
        std::hint::spin_loop();
    }
}

/// The address a column holds, as the session's `IpAddr`.
pub(crate) fn to_ip(ip: [u8; 16]) -> IpAddr {
    std::net::Ipv6Addr::from(ip).to_canonical()
}

/// An address as the columns keep it.
pub(crate) fn from_ip(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(ip: &str) -> Facts {
        Facts {
            flags: 0,
            requests: 0,
            created_us: 0,
            last_access_us: 0,
            ip: from_ip(ip.parse().unwrap()),
            user_key: 0,
        }
    }

    /// A slot comes back only once its session is out of the index and dropped: a
    /// request still holding the session keeps counting on its own slot.
    #[test]
    fn a_slot_is_reused_only_once_nothing_holds_its_session() {
        let cols = Columns::<u8>::default();
        let slot = cols.alloc(&facts("192.0.2.1")).unwrap();
        let session = Arc::new(7u8);
        cols.own(slot, Arc::downgrade(&session));
        cols.set_indexed(slot, true);
        assert_eq!(cols.sweep(), 0, "listed");
        cols.set_indexed(slot, false);
        assert_eq!(cols.sweep(), 0, "still held");
        cols.touch(slot, 5);
        assert_eq!(cols.requests(slot), 1);
        let making = cols.alloc(&facts("192.0.2.2")).unwrap();
        assert_ne!(making, slot);
        drop(session);
        assert_eq!(
            cols.sweep(),
            1,
            "a slot whose session is being made is left alone"
        );
        let again = cols.alloc(&facts("192.0.2.3")).unwrap();
        assert_eq!(again, slot);
        assert_eq!(cols.requests(again), 0, "a reused slot starts afresh");
        assert_eq!(to_ip(cols.ip(again)).to_string(), "192.0.2.3");
    }

    #[test]
    fn ranges_match_as_ipnet_says() {
        for (net, ip, inside) in [
            ("10.1.0.0/16", "10.1.2.3", true),
            ("10.1.0.0/16", "10.2.0.1", false),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("::/0", "10.1.2.3", false),
            ("::/0", "2001:db8::1", true),
            ("::ffff:0:0/96", "10.1.2.3", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("192.0.2.7/32", "192.0.2.7", true),
        ] {
            let n: ipnet::IpNet = net.parse().unwrap();
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(n.contains(&addr), inside, "ipnet: {net} {ip}");
            let bits = u128::from_be_bytes(from_ip(addr));
            assert_eq!(Net::of(&n).contains(bits), inside, "{net} {ip}");
        }
    }

    #[test]
    fn an_address_changes_whole() {
        let cols = Arc::new(Columns::<u8>::default());
        let slot = cols.alloc(&facts("10.0.0.1")).unwrap();
        let a = from_ip("10.0.0.1".parse().unwrap());
        let b = from_ip("2001:db8::ffff:ffff:ffff:ffff".parse().unwrap());
        let writer = {
            let cols = cols.clone();
            std::thread::spawn(move || {
                for i in 0..20_000 {
                    cols.set_ip(slot, if i % 2 == 0 { b } else { a });
                }
            })
        };
        for _ in 0..20_000 {
            let ip = cols.ip(slot);
            assert!(ip == a || ip == b, "torn: {:?}", to_ip(ip));
        }
        writer.join().unwrap();
    }
}

#[cfg(test)]
mod due_tests {
    use super::*;

    fn listed(cols: &Columns<u8>, created_us: i64, last_access_us: i64, flags: u8) -> u32 {
        let slot = cols
            .alloc(&Facts {
                flags,
                requests: 0,
                created_us,
                last_access_us,
                ip: [0; 16],
                user_key: 0,
            })
            .unwrap();
        cols.set_indexed(slot, true);
        slot
    }

    /// The reaper's filter may pick too many (it rounds creation down to the second)
    /// but never too few.
    #[test]
    fn the_reapers_filter_misses_no_session_that_is_due() {
        let cols = Columns::<u8>::default();
        let t = CREATED_EPOCH_US + 1_000_000_000_000;
        let due = Due {
            idle_before_us: [t - 100, t - 50],
            created_before_us: t,
        };
        let at_the_limit = listed(&cols, t, t, 0);
        let same_second = listed(&cols, t + 1, t, 0);
        let fresh = listed(&cols, t + 1_000_000, t, 0);
        let idle = listed(&cols, t + 1_000_000, t - 100, 0);
        let not_idle_signed_in = listed(&cols, t + 1_000_000, t - 60, 0);
        let idle_without_user = listed(&cols, t + 1_000_000, t - 60, NO_USER);
        let ancient = listed(&cols, 0, t, 0);
        let ending = listed(&cols, t + 1_000_000, t, 0);
        cols.end(ending, 4);
        let unlisted = listed(&cols, 0, 0, 0);
        cols.set_indexed(unlisted, false);
        let mut picked = Vec::new();
        cols.for_each_due(&due, |slot| picked.push(slot));
        assert_eq!(
            picked,
            [
                at_the_limit,
                same_second,
                idle,
                idle_without_user,
                ancient,
                ending
            ]
        );
        let _ = (fresh, not_idle_signed_in);
    }
}
