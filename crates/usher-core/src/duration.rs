//! Durations as users write them in configuration: `500ms`, `30s`, `5m`, `12h`, `400d`,
//! or several joined (`1h30m`).
//!
//! jiff's friendly format refuses days for exact durations (a day is not always 24 h in a
//! time zone); for timeouts and retention a day *is* 24 h, so Usher parses its own.

use jiff::SignedDuration;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(SignedDuration);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a duration: write a number and a unit (ms, s, m, h, d), e.g. `30m`, `12h`, `1h30m`"
)]
pub struct DurationError {
    input: String,
}

impl HumanDuration {
    pub const fn from_secs(secs: i64) -> Self {
        Self(SignedDuration::from_secs(secs))
    }

    pub const fn from_millis(ms: i64) -> Self {
        Self(SignedDuration::from_millis(ms))
    }

    pub fn get(self) -> SignedDuration {
        self.0
    }

    pub fn as_std(self) -> std::time::Duration {
        std::time::Duration::try_from(self.0).unwrap_or_default()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for HumanDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DurationError {
            input: s.to_owned(),
        };
        let text = s.trim();
        if text.is_empty() {
            return Err(err());
        }
        let mut total_ms: i64 = 0;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
            if digits == 0 {
                return Err(err());
            }
            let n: i64 = rest[..digits].parse().map_err(|_| err())?;
            rest = &rest[digits..];
            let unit_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            let per_ms: i64 = match &rest[..unit_len] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return Err(err()),
            };
            rest = &rest[unit_len..];
            total_ms = n
                .checked_mul(per_ms)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(err)?;
        }
        Ok(Self(SignedDuration::from_millis(total_ms)))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ] {
            if ms >= size {
                write!(f, "{}{unit}", ms / size)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        let p = |s: &str| s.parse::<HumanDuration>().map(|d| d.get().as_millis());
        assert_eq!(p("30m"), Ok(1_800_000));
        assert_eq!(p("1s"), Ok(1_000));
        assert_eq!(p("250ms"), Ok(250));
        assert_eq!(p("400d"), Ok(400 * 86_400_000));
        assert_eq!(p("1h30m"), Ok(5_400_000));
        assert_eq!(p("0s"), Ok(0));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "30",
            "m",
            "10 minutes",
            "-5m",
            "1.5h",
            "5x",
            "99999999999999999d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn displays_round_trip() {
        for s in ["30m", "12h", "400d", "1h30m", "250ms"] {
            let d: HumanDuration = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
    }
}
