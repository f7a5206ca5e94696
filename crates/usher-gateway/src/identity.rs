//! The identity headers Usher hands to the app: the same five, always all of them, on
//! the reverse proxy's requests and on forward-auth answers alike.

use crate::gate::Identity;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::cell::RefCell;
use std::sync::Arc;
use usher_core::User;

/// Identity headers. Every one is always set — empty when unknown — so a proxy that
/// copies them overwrites whatever the client sent (Caddy GHSA-7r4p-vjf4-gxv4). Made
/// once: the request path builds none.
pub const HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("remote-user"),
    HeaderName::from_static("remote-groups"),
    HeaderName::from_static("remote-name"),
    HeaderName::from_static("remote-email"),
    HeaderName::from_static("x-usher-session"),
];

/// Sets the identity headers for `auth` (all empty for `None`).
pub fn set(headers: &mut HeaderMap, auth: Option<&Identity>) {
    let [name, groups, display, email] = match auth.and_then(|a| a.user.as_ref()) {
        Some(user) => of_user(user),
        None => std::array::from_fn(|_| HeaderValue::from_static("")),
    };
    let session = auth
        .and_then(|a| a.session.as_ref())
        .map_or_else(|| HeaderValue::from_static(""), |s| value(s.id.as_str()));
    for (h, v) in HEADERS
        .into_iter()
        .zip([name, groups, display, email, session])
    {
        headers.insert(h, v);
    }
}

/// Raw UTF-8 (obs-text) rather than nothing for names like "José"; control characters,
/// which no header may carry, give an empty value.
fn value(s: &str) -> HeaderValue {
    HeaderValue::from_bytes(s.as_bytes()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Slots of the per-thread cache below.
const CACHED_USERS: usize = 64;

type Cached = Option<(Arc<User>, [HeaderValue; 4])>;

thread_local! {
    /// A user's four values, made once per worker thread rather than once per request
    /// (validating and copying four strings was a tenth of a forward-auth answer's own
    /// work, issue 9). Per thread: a clone of a value made here touches a reference
    /// count only this thread uses. Keyed by the `Arc<User>` itself — the engine puts a
    /// changed user in a new one, so a change is a miss, and the slot's clone keeps the
    /// address from being reused while cached. Direct-mapped: bounded, nothing to prune.
    static BY_USER: RefCell<[Cached; CACHED_USERS]> = const {
        RefCell::new([const { None }; CACHED_USERS])
    };
}

fn of_user(user: &Arc<User>) -> [HeaderValue; 4] {
    let slot = (Arc::as_ptr(user) as usize >> 4) % CACHED_USERS;
    BY_USER.with_borrow_mut(|cache| match &cache[slot] {
        Some((u, values)) if Arc::ptr_eq(u, user) => values.clone(),
        _ => {
            let values = [
                value(user.name.as_str()),
                value(&user.groups_joined()),
                value(&user.display_name),
                value(&user.email),
            ];
            cache[slot] = Some((user.clone(), values.clone()));
            values
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
        of_user(u)
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

    #[test]
    fn a_control_character_gives_an_empty_value() {
        let u = user("bob", "Bob\nSet-Cookie: x=1");
        assert_eq!(values(&u)[2], "");
    }
}
