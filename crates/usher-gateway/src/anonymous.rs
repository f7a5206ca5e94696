//! The cookie of a lazy anonymous session (SPEC §2): handed to a visitor of a public
//! path, and turned into a session only when it comes back — so pings and scripts that
//! never return a cookie never create one.
//!
//! Usher keeps no state for a cookie it hands out, so the value proves it came from
//! Usher: 32 random bytes (the session's token, 256 bits like every token) followed by
//! 16 bytes of HMAC over them with the server secret. A value the client made up is
//! never adopted as a session; a valid one is only ever an anonymous session, since a
//! signed-in session's cookie is a bare token (43 characters, not 64).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use usher_core::Token;

const MAC_LEN: usize = 16;
/// 48 bytes in base64url without padding.
const VALUE_LEN: usize = 64;

fn mac(key: &[u8], token: &[u8; 32]) -> [u8; MAC_LEN] {
    let mut out = [0u8; MAC_LEN];
    if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) {
        m.update(b"usher anonymous session\0");
        m.update(token);
        out.copy_from_slice(&m.finalize().into_bytes()[..MAC_LEN]);
    }
    out
}

/// A fresh anonymous cookie value and the token inside it.
pub fn issue(key: &[u8]) -> Result<(Token, String), usher_core::ids::IdError> {
    let token = Token::generate()?;
    let mut raw = [0u8; 32 + MAC_LEN];
    raw[..32].copy_from_slice(token.as_bytes());
    raw[32..].copy_from_slice(&mac(key, token.as_bytes()));
    Ok((token, URL_SAFE_NO_PAD.encode(raw)))
}

/// The token inside an anonymous cookie value, and whether Usher issued it.
pub fn read(key: &[u8], value: &str) -> Option<(Token, bool)> {
    if value.len() != VALUE_LEN {
        return None;
    }
    let mut raw = [0u8; 32 + MAC_LEN];
    match URL_SAFE_NO_PAD.decode_slice(value.as_bytes(), &mut raw) {
        Ok(n) if n == raw.len() => {}
        _ => return None,
    }
    let mut token = [0u8; 32];
    token.copy_from_slice(&raw[..32]);
    let genuine = bool::from(mac(key, &token).ct_eq(&raw[32..]));
    Some((Token::from_bytes(token), genuine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_values_usher_issued_are_genuine() {
        let (token, value) = issue(b"key one").unwrap();
        assert_eq!(value.len(), VALUE_LEN);
        let (back, genuine) = read(b"key one", &value).unwrap();
        assert!(genuine);
        assert_eq!(back.hash(), token.hash());
        assert!(
            !read(b"key two", &value).unwrap().1,
            "another server's secret"
        );
        let mut forged = value.clone();
        forged.replace_range(60.., "AAAA");
        assert!(!read(b"key one", &forged).unwrap().1);
        for junk in ["", "x", &token.encode(), &"*".repeat(64), &"A".repeat(65)] {
            assert!(read(b"key one", junk).is_none(), "{junk:?}");
        }
    }
}
