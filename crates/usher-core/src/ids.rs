//! Session identifiers: the public id shown to administrators, and the secret token
//! that lives only in the client's cookie (and, hashed, in the store).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const SESSION_ID_LEN: usize = 12;
/// base64url without padding of 32 bytes.
pub const TOKEN_TEXT_LEN: usize = 43;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("a session id is 12 characters of a-z and 2-7, e.g. `k7m2x9qaf3td`")]
    SessionId,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
}

fn random_bytes<const N: usize>() -> Result<[u8; N], IdError> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|e| IdError::Random(e.to_string()))?;
    Ok(buf)
}

/// Fills `N` bytes from the OS CSPRNG (for keys and salts elsewhere in Usher).
pub fn os_random<const N: usize>() -> Result<[u8; N], IdError> {
    random_bytes()
}

/// Public, non-secret id of a session (60 random bits, base32).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    pub fn generate() -> Result<Self, IdError> {
        let raw: [u8; SESSION_ID_LEN] = random_bytes()?;
        Ok(Self(raw.map(|b| BASE32[usize::from(b & 31)])))
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        let bytes = s.as_bytes();
        // A range test per byte, not a search of the alphabet: a restart parses a
        // million ids (issue 9).
        let base32 = |b: &u8| matches!(b, b'a'..=b'z' | b'2'..=b'7');
        if bytes.len() != SESSION_ID_LEN || !bytes.iter().all(base32) {
            return Err(IdError::SessionId);
        }
        let mut out = [0u8; SESSION_ID_LEN];
        out.copy_from_slice(bytes);
        Ok(Self(out))
    }

    /// The id's ASCII characters, without `as_str`'s UTF-8 check.
    pub fn as_bytes(&self) -> &[u8; SESSION_ID_LEN] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII from BASE32 is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.as_str())
    }
}

impl Serialize for SessionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The secret a client presents: 256 random bits. Never logged (its `Debug` is redacted).
#[derive(Clone)]
pub struct Token([u8; 32]);

impl Token {
    pub fn generate() -> Result<Self, IdError> {
        Ok(Self(random_bytes()?))
    }

    /// Reads a token from cookie text; anything that is not exactly 43 base64url
    /// characters of 32 bytes is simply not a token.
    pub fn parse(s: &str) -> Option<Self> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`Token::parse`] of text not yet known to be UTF-8 (base64 is ASCII: anything
    /// else fails to decode).
    pub fn parse_bytes(s: &[u8]) -> Option<Self> {
        if s.len() != TOKEN_TEXT_LEN {
            return None;
        }
        let mut out = [0u8; 32];
        match URL_SAFE_NO_PAD.decode_slice(s, &mut out) {
            Ok(32) => Some(Self(out)),
            _ => None,
        }
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// For cookie formats that carry a token inside a longer value.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of a token: what the store and the in-memory index key sessions by.
/// Comparing hashes need not be constant-time: learning a prefix of a SHA-256 image
/// tells nothing about the token.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenHash({:02x}{:02x}…)", self.0[0], self.0[1])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_12_base32_chars_and_parse_back() {
        let id = SessionId::generate().unwrap();
        assert_eq!(id.as_str().len(), 12);
        assert_eq!(SessionId::parse(id.as_str()), Ok(id));
        assert!(SessionId::parse("ABCDEFGHIJKL").is_err());
        assert!(SessionId::parse("abc").is_err());
        assert!(SessionId::parse("abcdefghijk1").is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_junk() {
        let t = Token::generate().unwrap();
        let text = t.encode();
        assert_eq!(text.len(), TOKEN_TEXT_LEN);
        let back = Token::parse(&text).map(|t| t.hash());
        assert_eq!(back, Some(t.hash()));
        for junk in ["", "x", &"A".repeat(44), &"*".repeat(43), "é"] {
            assert!(Token::parse(junk).is_none(), "{junk:?}");
        }
        assert_eq!(format!("{t:?}"), "Token(<redacted>)");
    }

    #[test]
    fn generated_tokens_differ() {
        let a = Token::generate().unwrap().encode();
        let b = Token::generate().unwrap().encode();
        assert_ne!(a, b);
    }
}
