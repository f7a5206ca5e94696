//! Session lifetime policy: when a session has lived too long or idled too long.

use crate::session::EndReason;
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle_timeout: SignedDuration,
    pub absolute_timeout: SignedDuration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            idle_timeout: SignedDuration::from_mins(30),
            absolute_timeout: SignedDuration::from_hours(12),
        }
    }
}

impl SessionPolicy {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_absolute_timeouts() {
        let p = SessionPolicy {
            idle_timeout: SignedDuration::from_secs(5),
            absolute_timeout: SignedDuration::from_secs(20),
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
    }
}
