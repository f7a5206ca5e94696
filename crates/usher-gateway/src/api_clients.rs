//! API clients of the protected app: requests that carry `Authorization: Bearer ush_…`
//! (an Usher API token) or `Basic` (a user's name and password) instead of a cookie.
//!
//! Each (credential, client) pair is tracked as one `api` session — the same credential
//! from another address or User-Agent is another client — instead of one session per
//! request, the classic failure of session lists that fill with one-request REST
//! sessions. Basic credentials are verified with argon2 once and then remembered for a
//! minute (keyed by a keyed hash, never stored in clear), so a client that sends them on
//! every request does not pay a password hash each time.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::gate::Identity;
use crate::head::Head;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use dashmap::DashMap;
use jiff::SignedDuration;
use sha2::{Digest, Sha256};
use usher_core::{SessionId, SessionKind, Timestamp, Token, Username};
use usher_engine::EngineError;
use usher_engine::accounts::LoginOutcome;

/// How long a verified Basic credential is trusted without hashing it again.
const VERIFIED_TTL: SignedDuration = SignedDuration::from_secs(60);
/// Bounds on the two maps; past them they are emptied (entries are only a cache).
const MAX_CLIENTS: usize = 100_000;
const MAX_VERIFIED: usize = 10_000;

/// Locks taken to make a client's session, by the client key's first byte.
const CREATE_LOCKS: usize = 16;

#[derive(Default)]
pub struct ApiClients {
    sessions: DashMap<[u8; 32], SessionId>,
    /// Held while a client's session is made, so that a client's first requests, sent
    /// at once, find one session rather than make one each; clients whose keys fall
    /// on other locks are not held up.
    creating: [tokio::sync::Mutex<()>; CREATE_LOCKS],
    /// Verified Basic credentials: the engine's copy of the user at verification (a
    /// password change anywhere replaces it, which invalidates the entry) and an expiry.
    verified: DashMap<[u8; 32], (std::sync::Arc<usher_core::User>, Timestamp)>,
}

/// What an `Authorization` header says.
enum Credential {
    Token(Token),
    /// `name:password`, decoded.
    Basic(String),
}

fn credential(value: &str) -> Option<Credential> {
    if let Some(t) = value.strip_prefix("Bearer ") {
        let token = t
            .trim()
            .strip_prefix(crate::api::API_TOKEN_PREFIX)
            .and_then(Token::parse)?;
        return Some(Credential::Token(token));
    }
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    String::from_utf8(decoded).ok().map(Credential::Basic)
}

impl ApiClients {
    fn key(parts: &[&[u8]]) -> [u8; 32] {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        h.finalize().into()
    }

    /// The user an `Authorization` header proves, if any.
    async fn user_of(
        &self,
        state: &AppState,
        ctx: &ClientContext,
        value: &str,
    ) -> Result<Option<(Username, [u8; 32])>, EngineError> {
        let Some(cred) = credential(value) else {
            return Ok(None);
        };
        let store = state.engine.store();
        match cred {
            Credential::Token(token) => {
                let hash = token.hash();
                let Some(t) = store.token_by_hash(&hash).await? else {
                    return Ok(None);
                };
                Ok(Some((t.owner, Self::key(&[b"token", hash.as_bytes()]))))
            }
            Credential::Basic(basic) => {
                let Some((name, password)) = basic.split_once(':') else {
                    return Ok(None);
                };
                let key = Self::key(&[
                    b"basic",
                    state.csrf.key_bytes(),
                    name.as_bytes(),
                    password.as_bytes(),
                ]);
                let now = state.engine.clock().now();
                if let Some(hit) = self.verified.get(&key)
                    && hit.1 > now
                    && state
                        .engine
                        .user(&hit.0.name)
                        .is_some_and(|current| std::sync::Arc::ptr_eq(&current, &hit.0))
                {
                    return Ok(Some((hit.0.name.clone(), key)));
                }
                match state
                    .accounts
                    .verify_login(name, password, ctx.ip(), &ctx.user_agent)
                    .await?
                {
                    LoginOutcome::Ok(user) => {
                        // Remembered only against the engine's copy of the user (there
                        // once the user has a session): a change anywhere replaces it.
                        if let Some(current) = state.engine.user(&user.name) {
                            if self.verified.len() >= MAX_VERIFIED {
                                self.verified.clear();
                            }
                            self.verified.insert(key, (current, now + VERIFIED_TTL));
                        }
                        Ok(Some((user.name, key)))
                    }
                    LoginOutcome::Refused | LoginOutcome::Throttled(_) => Ok(None),
                }
            }
        }
    }

    /// The `api` session of this request's credential and client, counting the request
    /// (unless `track` is false: then an existing session is named but not counted, and
    /// none is created); `None` when there is no credential or it proves nothing.
    pub async fn authenticate(
        &self,
        state: &AppState,
        ctx: &ClientContext,
        head: &Head<'_>,
        track: bool,
    ) -> Result<Option<Identity>, EngineError> {
        let Some(value) = head.authorization.and_then(|v| v.to_str().ok()) else {
            return Ok(None);
        };
        let Some((name, credential_key)) = self.user_of(state, ctx, value).await? else {
            return Ok(None);
        };
        let client = Self::key(&[
            &credential_key,
            ctx.ip().to_string().as_bytes(),
            usher_core::user_agent::truncate(&ctx.user_agent).as_bytes(),
        ]);
        let req = ctx.request_info();
        let known = |this: &Self| -> Option<Identity> {
            let id = this.sessions.get(&client).map(|e| *e.value())?;
            let found = if track {
                state.engine.touch(&id, &req)
            } else {
                state.engine.peek(&id)
            };
            found.map(Identity::from)
        };
        if let Some(found) = known(self) {
            return Ok(Some(found));
        }
        // A user who is disabled or gone gets no session (the store refuses it too).
        let Some(user) = state
            .engine
            .store()
            .user_get(&name)
            .await?
            .filter(|u| !u.disabled)
        else {
            return Ok(None);
        };
        let _creating = if track {
            Some(
                self.creating[usize::from(client[0]) % CREATE_LOCKS]
                    .lock()
                    .await,
            )
        } else {
            None
        };
        // Another request of the same client may have made it while this one waited.
        if let Some(found) = known(self) {
            return Ok(Some(found));
        }
        if !track {
            // Served as this user, with no session made for it.
            return Ok(Some(Identity {
                user: Some(std::sync::Arc::new(usher_engine::sessions::public_user(
                    user,
                ))),
                session: None,
                credential: true,
            }));
        }
        let (_, live) = match state
            .engine
            .create(Some(&user), SessionKind::Api, &req)
            .await
        {
            Ok(created) => created,
            Err(EngineError::Store(usher_store::StoreError::Conflict(_))) => return Ok(None),
            Err(e) => return Err(e),
        };
        if self.sessions.len() >= MAX_CLIENTS {
            self.sessions.clear();
        }
        self.sessions.insert(client, live.id);
        Ok(state.engine.touch(&live.id, &req).map(Identity::from))
    }
}
