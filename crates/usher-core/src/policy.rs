//! Session policies: when a session has lived or idled too long, and how many sessions
//! one user may hold at once.

use crate::session::EndReason;
use crate::user::{Group, User};
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout: SignedDuration,
    pub absolute_timeout: SignedDuration,
    /// Idle timeout of anonymous sessions (`sessions.anonymous_idle_timeout`): a
    /// visitor who never signs in is let go sooner.
    pub anonymous_idle_timeout: SignedDuration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: SignedDuration::from_mins(30),
            absolute_timeout: SignedDuration::from_hours(12),
            anonymous_idle_timeout: SignedDuration::from_mins(5),
        }
    }
}

impl SessionPolicy {
    /// The policy for one session: anonymous ones (no user) idle out on their own
    /// timeout.
    pub fn of(&self, anonymous: bool) -> SessionPolicy {
        if anonymous {
            SessionPolicy {
                idle_timeout: self.anonymous_idle_timeout,
                ..*self
            }
        } else {
            *self
        }
    }

    /// `None` while the session may go on; otherwise why it must end. The absolute
    /// timeout wins when both apply, because it is the one activity cannot postpone.
    pub fn verdict(
        &self,
        created_at: Timestamp,
        last_access_at: Timestamp,
        now: Timestamp,
    ) -> Option<EndReason> {
        if now.duration_since(created_at) >= self.absolute_timeout {
            Some(EndReason::AbsoluteTimeout)
        } else if now.duration_since(last_access_at) >= self.idle_timeout {
            Some(EndReason::IdleTimeout)
        } else {
            None
        }
    }

    /// The instant the session ends if nothing else happens.
    pub fn expires_at(&self, created_at: Timestamp, last_access_at: Timestamp) -> Timestamp {
        let idle = last_access_at
            .saturating_add(self.idle_timeout)
            .unwrap_or(Timestamp::MAX);
        let absolute = created_at
            .saturating_add(self.absolute_timeout)
            .unwrap_or(Timestamp::MAX);
        idle.min(absolute)
    }
}

/// What a login does when the user already holds the most sessions allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLimit {
    /// End the least recently used session (recorded as `evicted`).
    EvictOldest,
    /// Refuse the new login.
    Deny,
}

/// The limit that applies to one login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimit {
    pub max: u32,
    pub on_limit: OnLimit,
}

/// `limits.max_sessions_per_user`, `limits.on_limit` and per-group overrides. Only web
/// (browser) sessions count: an API client of the same user never evicts a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcurrencyPolicy {
    /// 0 = unlimited.
    pub max_per_user: u32,
    pub on_limit: OnLimit,
    /// Group → limit (0 = unlimited); a user in several listed groups gets the
    /// smallest of their limits.
    pub per_group: Vec<(Group, u32)>,
}

impl Default for ConcurrencyPolicy {
    fn default() -> Self {
        Self {
            max_per_user: 0,
            on_limit: OnLimit::EvictOldest,
            per_group: Vec::new(),
        }
    }
}

impl ConcurrencyPolicy {
    pub fn limit_for(&self, user: &User) -> Option<SessionLimit> {
        let overrides = self
            .per_group
            .iter()
            .filter(|(g, _)| user.groups.contains(g))
            .map(|(_, n)| *n);
        let max = overrides
            .reduce(|a, b| match (a, b) {
                (0, x) | (x, 0) => x,
                (a, b) => a.min(b),
            })
            .unwrap_or(self.max_per_user);
        (max > 0).then_some(SessionLimit {
            max,
            on_limit: self.on_limit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_overrides_pick_the_strictest_limit() {
        let mut u = User::new(
            crate::Username::parse("alice").unwrap(),
            Timestamp::UNIX_EPOCH,
        );
        let p = ConcurrencyPolicy {
            max_per_user: 3,
            on_limit: OnLimit::Deny,
            per_group: vec![(Group::admins(), 1), (Group::parse("staff").unwrap(), 0)],
        };
        assert_eq!(p.limit_for(&u).map(|l| l.max), Some(3));
        u.groups = vec![Group::parse("staff").unwrap()];
        assert_eq!(p.limit_for(&u), None, "0 = unlimited for staff");
        u.groups.push(Group::admins());
        assert_eq!(p.limit_for(&u).map(|l| l.max), Some(1));
        assert_eq!(ConcurrencyPolicy::default().limit_for(&u), None);
    }

    #[test]
    fn idle_and_absolute_timeouts() {
        let p = SessionPolicy {
            idle_timeout: SignedDuration::from_secs(5),
            absolute_timeout: SignedDuration::from_secs(20),
            anonymous_idle_timeout: SignedDuration::from_secs(2),
        };
        let t0 = Timestamp::UNIX_EPOCH;
        let at = |s: i64| t0 + SignedDuration::from_secs(s);
        assert_eq!(p.verdict(t0, t0, at(4)), None);
        assert_eq!(p.verdict(t0, t0, at(5)), Some(EndReason::IdleTimeout));
        assert_eq!(p.verdict(t0, at(18), at(19)), None);
        assert_eq!(
            p.verdict(t0, at(19), at(20)),
            Some(EndReason::AbsoluteTimeout)
        );
        assert_eq!(p.expires_at(t0, at(10)), at(15));
        assert_eq!(p.expires_at(t0, at(18)), at(20));
        let anon = p.of(true);
        assert_eq!(anon.verdict(t0, t0, at(2)), Some(EndReason::IdleTimeout));
        assert_eq!(anon.expires_at(t0, at(10)), at(12));
        assert_eq!(p.of(false), p);
    }
}
