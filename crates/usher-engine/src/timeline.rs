//! The last 24 hours at one point per minute: live sessions and requests per minute,
//! for the console's dashboard. In memory, so it restarts empty with the process.

use std::collections::VecDeque;
use std::sync::Mutex;
use usher_core::Timestamp;

/// Points kept: 24 h of minutes.
pub const POINTS: usize = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    pub at: Timestamp,
    pub sessions: u64,
    /// Requests let through since the previous point.
    pub requests: u64,
}

#[derive(Default)]
pub struct Timeline {
    points: Mutex<VecDeque<Point>>,
    /// The running request total at the previous point.
    last_total: Mutex<Option<u64>>,
}

impl Timeline {
    pub fn record(&self, at: Timestamp, sessions: u64, requests_total: u64) {
        let requests = match self.last_total.lock() {
            Ok(mut last) => {
                let delta = last.map_or(0, |l| requests_total.saturating_sub(l));
                *last = Some(requests_total);
                delta
            }
            Err(_) => 0,
        };
        if let Ok(mut p) = self.points.lock() {
            if p.len() == POINTS {
                p.pop_front();
            }
            p.push_back(Point {
                at,
                sessions,
                requests,
            });
        }
    }

    pub fn points(&self) -> Vec<Point> {
        self.points
            .lock()
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_day_and_counts_per_minute() {
        let t = Timeline::default();
        let at = |m: i64| Timestamp::from_second(m * 60).unwrap();
        t.record(at(0), 1, 100);
        t.record(at(1), 2, 130);
        let p = t.points();
        assert_eq!((p[0].requests, p[1].requests, p[1].sessions), (0, 30, 2));
        for m in 2..(POINTS as i64 + 10) {
            t.record(at(m), 0, 130);
        }
        assert_eq!(t.points().len(), POINTS);
    }
}
