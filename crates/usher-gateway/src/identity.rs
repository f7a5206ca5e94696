//! The identity headers Usher hands to the app: the same five, always all of them, on
//! the reverse proxy's requests and on forward-auth answers alike.

use crate::gate::Identity;
use http::header::CACHE_CONTROL;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::sync::Arc;
use usher_core::User;

/// Identity headers. Every one is always set — empty when unknown — so a proxy that
/// copies them overwrites whatever the client sent (Caddy GHSA-7r4p-vjf4-gxv4). Made
/// once: the request path builds none (a `static`: indexing a `const` array builds
/// all five, and drops them, each time).
pub static HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("remote-groups"),
    HeaderName::from_static("remote-name"),
    HeaderName::from_static("remote-email"),
    HeaderName::from_static("x-usher-session"),
];

const SESSION: usize = 4;

/// Sets the identity headers for `auth` (all empty for `None`).
pub fn set(headers: &mut HeaderMap, auth: Option<&Identity>) {
    for (h, v) in HEADERS.iter().cloned().zip(values(auth)) {
        headers.insert(h, v);
    }
}

/// The values of the identity headers for `auth`, in the order of [`HEADERS`].
pub fn values(auth: Option<&Identity>) -> [HeaderValue; 5] {
    let [user, groups, name, email] = match auth.and_then(|a| a.user.as_ref()) {
        Some(user) => of_user(user, |c| c.values.clone()),
        None => empty(),
    };
    [user, groups, name, email, session(auth)]
}

/// The headers of a forward-auth answer that lets `identity` through: the identity
/// headers and `Cache-Control: no-store`. A signed-in user's are a copy of a map made
/// once per worker thread: five inserts into a new map (hashing each name, growing the
/// map) were a fifth of a forward-auth answer's own work (issue 9).
pub fn answer(identity: &Identity) -> HeaderMap {
    let mut headers = match &identity.user {
        Some(user) => of_user(user, |c| c.answer.clone()),
        None => answer_map(empty()),
    };
    // The map already holds this name (empty). Not `insert`: it makes room for a new
    // entry before looking, and the copy's room is exactly what it holds — it would
    // grow and rehash the map on every answer.
    if let Some(v) = headers.get_mut(&HEADERS[SESSION]) {
        *v = session(Some(identity));
    }
    headers
}

/// [`answer`] as lines of an HTTP/1.1 head, for the fast lane ([`crate::lane`]): the
/// same headers, in the same order, from the same per-thread cache.
pub fn write_answer(out: &mut Vec<u8>, identity: &Identity) {
    match &identity.user {
        Some(user) => of_user(user, |c| out.extend_from_slice(&c.lines)),
        None => write_lines(out, &empty()),
    }
    // A session id is base32, always a valid value: written as it is, without the
    // `HeaderValue` (an allocation) the map needs.
    let session = identity
        .session
        .as_ref()
        .map_or(&b""[..], |s| s.id.as_bytes());
    line(out, HEADERS[SESSION].as_str(), session);
    line(out, CACHE_CONTROL.as_str(), b"no-store");
}

fn line(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The lines of a user's four `values`.
fn write_lines(out: &mut Vec<u8>, values: &[HeaderValue; 4]) {
    for (name, value) in HEADERS.iter().zip(values) {
        line(out, name.as_str(), value.as_bytes());
    }
}

/// A forward-auth answer's headers for a user's four `values`, the session's left
/// empty for [`answer`] to fill.
fn answer_map(values: [HeaderValue; 4]) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(HEADERS.len() + 1);
    insert_all(&mut headers, values, HeaderValue::from_static(""));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers
}

fn insert_all(headers: &mut HeaderMap, user: [HeaderValue; 4], session: HeaderValue) {
    for (h, v) in HEADERS
        .iter()
        .cloned()
        .zip(user.into_iter().chain([session]))
    {
        headers.insert(h, v);
    }
}

fn empty() -> [HeaderValue; 4] {
    std::array::from_fn(|_| HeaderValue::from_static(""))
}

fn session(auth: Option<&Identity>) -> HeaderValue {
    auth.and_then(|a| a.session.as_ref())
        .and_then(|s| HeaderValue::from_bytes(s.id.as_bytes()).ok())
        .unwrap_or_else(|| HeaderValue::from_static(""))
}

fn user_values(user: &User) -> [HeaderValue; 4] {
    [
        value(user.name.as_str()),
        value(&user.groups_joined()),
        value(&user.display_name),
        value(&user.email),
    ]
}

/// Raw UTF-8 (obs-text) rather than nothing for names like "José"; control characters,
/// which no header may carry, give an empty value.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Slots of the per-thread cache below.
const CACHED_USERS: usize = 64;

/// What is made once per user: the four values, and the whole answer of forward auth
/// (as a map, and the four values as lines of a head).
struct Cached {
    user: Arc<User>,
    values: [HeaderValue; 4],
    answer: HeaderMap,
    lines: Vec<u8>,
}

thread_local! {
    /// A user's four values, made once per worker thread rather than once per request
    /// (validating and copying four strings was a tenth of a forward-auth answer's own
    /// work, issue 9). Per thread: a clone of a value made here touches a reference
    /// count only this thread uses. Keyed by the `Arc<User>` itself — the engine puts a
    /// changed user in a new one, so a change is a miss, and the slot's clone keeps the
    /// address from being reused while cached. Direct-mapped: bounded, nothing to prune.
    static BY_USER: RefCell<[Option<Cached>; CACHED_USERS]> = const {
        RefCell::new([const { None }; CACHED_USERS])
    };
}

/// `read` of what is cached for `user`, made first if need be.
fn of_user<T>(user: &Arc<User>, read: impl FnOnce(&Cached) -> T) -> T {
    let slot = (Arc::as_ptr(user) as usize >> 4) % CACHED_USERS;
    BY_USER.with_borrow_mut(|cache| {
        let entry = &mut cache[slot];
        match entry {
            Some(c) if Arc::ptr_eq(&c.user, user) => read(c),
            _ => {
                let values = user_values(user);
                read(entry.insert(Cached {
                    user: user.clone(),
                    answer: answer_map(values.clone()),
                    lines: {
                        let mut lines = Vec::new();
                        write_lines(&mut lines, &values);
                        lines
                    },
                    values,
                }))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use usher_core::{Group, Timestamp, Username};

    fn user(name: &str, display: &str) -> Arc<User> {
        let mut u = User::new(Username::parse(name).unwrap(), Timestamp::UNIX_EPOCH);
        u.display_name = display.into();
        u.groups = vec![
            Group::parse("admins").unwrap(),
            Group::parse("ops").unwrap(),
        ];
        Arc::new(u)
    }

    fn values(u: &Arc<User>) -> Vec<String> {
        of_user(u, |c| c.values.clone())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    #[test]
    fn a_changed_user_is_a_new_arc_and_gets_new_values() {
        let before = user("ana", "Ana");
        assert_eq!(values(&before), ["ana", "admins,ops", "Ana", ""]);
        assert_eq!(values(&before), ["ana", "admins,ops", "Ana", ""], "cached");
        let after = user("ana", "Ana María");
        assert_eq!(values(&after)[2], "Ana María");
        // Many users through 64 slots: each still gets its own.
        let many: Vec<_> = (0..300).map(|i| user(&format!("u{i}"), "x")).collect();
        for (i, u) in many.iter().enumerate().rev() {
            assert_eq!(values(u)[0], format!("u{i}"));
        }
    }

    fn answer_of(u: Option<&Arc<User>>) -> Vec<(String, String)> {
        let identity = Identity {
            user: u.cloned(),
            ..Identity::default()
        };
        let mut got: Vec<_> = answer(&identity)
            .iter()
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect();
        got.sort();
        got
    }

    /// The lane writes the answer the map holds, line for line, in its order.
    #[test]
    fn the_written_answer_is_the_map_in_order() {
        let ana = user("ana", "Ana María");
        for u in [Some(&ana), None] {
            let identity = Identity {
                user: u.cloned(),
                ..Identity::default()
            };
            let mut expected = Vec::new();
            for (k, v) in &answer(&identity) {
                line(&mut expected, k.as_str(), v.as_bytes());
            }
            for _ in 0..2 {
                let mut written = Vec::new();
                write_answer(&mut written, &identity);
                assert_eq!(
                    String::from_utf8_lossy(&written),
                    String::from_utf8_lossy(&expected)
                );
            }
        }
    }

    #[test]
    fn an_answer_carries_every_identity_header_once_and_no_store() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let ana = user("ana", "Ana");
        let expected = pairs(&[
            ("cache-control", "no-store"),
            ("remote-email", ""),
            ("remote-groups", "admins,ops"),
            ("remote-name", "Ana"),
            ("remote-user", "ana"),
            ("x-usher-session", ""),
        ]);
        assert_eq!(answer_of(Some(&ana)), expected);
        assert_eq!(answer_of(Some(&ana)), expected, "from the cache");
        let mut anonymous = answer_of(None);
        anonymous.retain(|(_, v)| !v.is_empty());
        assert_eq!(anonymous, pairs(&[("cache-control", "no-store")]));
        assert_eq!(answer_of(None).len(), 6);
    }

    #[test]
    fn a_control_character_gives_an_empty_value() {
        let u = user("bob", "Bob\nSet-Cookie: x=1");
        assert_eq!(values(&u)[2], "");
    }
}
