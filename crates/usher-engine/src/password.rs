//! Password hashing with argon2id, off the async workers and bounded in concurrency, so
//! a login storm cannot starve request handling or exhaust memory.

use crate::EngineError;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Longest password accepted, in bytes: hashing cost must not depend on attacker input.
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest password `usher user add/passwd` accepts (characters).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest new password, in characters (well above the 64 that ASVS asks to allow).
pub const MAX_PASSWORD_CHARS: usize = 256;

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so the answer takes as long.
    dummy: Arc<String>,
}

impl PasswordHasher {
    /// OWASP's argon2id minimum (m = 19 MiB, t = 2, p = 1), at most `parallel` at once.
    pub fn new(parallel: usize) -> Result<Self, EngineError> {
        let params = Params::default();
        Ok(Self {
            dummy: Arc::new(dummy_phc(&params)),
            params,
            permits: Arc::new(Semaphore::new(parallel.max(1))),
        })
    }

    /// Checks the policy a new password must meet; the message says what to change.
    pub fn check_policy(password: &str) -> Result<(), EngineError> {
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(EngineError::Invalid(format!(
                "the password is too short: use at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if password.chars().count() > MAX_PASSWORD_CHARS || password.len() > MAX_PASSWORD_BYTES {
            return Err(EngineError::Invalid(format!(
                "the password is too long: use at most {MAX_PASSWORD_CHARS} characters"
            )));
        }
        Ok(())
    }

    pub async fn hash(&self, password: &str) -> Result<String, EngineError> {
        Self::check_policy(password)?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| EngineError::Hash(e.to_string()))?;
        let params = self.params.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&params, &password))
            .await
            .map_err(|e| EngineError::Hash(e.to_string()))?
    }

    /// `true` when `password` matches `phc`; with `None`, burns the same time and says no.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        if password.len() > MAX_PASSWORD_BYTES {
            return false;
        }
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let (target, real) = match phc {
            Some(p) => (p.to_owned(), true),
            None => (self.dummy.as_ref().clone(), false),
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&target)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        ok && real
    }
}

/// A hash with the real parameters that no password matches: verifying against it costs
/// what verifying a real one does. Written, not computed: hashing one took ~50 ms of
/// every start (issue 9: restart with a million sessions until ready).
fn dummy_phc(params: &Params) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}$dXNoZXItZHVtbXktc2FsdA${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        "A".repeat(43)
    )
}

fn hash_blocking(params: &Params, password: &str) -> Result<String, EngineError> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| EngineError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_differ() -> Result<(), EngineError> {
        let h = PasswordHasher::new(2)?;
        let pw = "correct horse ✓ battery";
        let a = h.hash(pw).await?;
        let b = h.hash(pw).await?;
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert_ne!(a, b, "salts differ");
        assert!(h.verify(pw, Some(&a)).await);
        assert!(
            !h.verify(&pw[..pw.len() - 1], Some(&a)).await,
            "no truncation"
        );
        assert!(
            !h.verify(&pw.to_uppercase(), Some(&a)).await,
            "no case folding"
        );
        assert!(!h.verify(pw, None).await);
        assert!(!h.verify(pw, Some("not a phc string")).await);
        assert!(h.hash("short").await.is_err());
        assert!(h.hash(&"x".repeat(2000)).await.is_err());
        Ok(())
    }

    /// An unknown user's sign-in must cost a real verification: the dummy parses, with
    /// the algorithm, version, parameters and output length of a real hash.
    #[tokio::test]
    async fn the_dummy_costs_what_a_real_hash_does() -> Result<(), EngineError> {
        let h = PasswordHasher::new(1)?;
        let real = h.hash("correct horse battery").await?;
        let (real, dummy) = (PasswordHash::new(&real), PasswordHash::new(&h.dummy));
        let (real, dummy) = (real.expect("real parses"), dummy.expect("dummy parses"));
        assert_eq!(dummy.algorithm, real.algorithm);
        assert_eq!(dummy.version, real.version);
        assert_eq!(dummy.params, real.params);
        assert_eq!(
            dummy.hash.as_ref().map(|o| o.len()),
            real.hash.as_ref().map(|o| o.len())
        );
        assert!(!h.verify("correct horse battery", None).await);
        Ok(())
    }
}
