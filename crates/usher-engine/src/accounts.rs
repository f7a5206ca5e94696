//! Account management shared by the CLI, the web login and (later) the API: every
//! change goes through the store, which records its event and tells running servers
//! through the change feed.

use crate::{EngineError, PasswordHasher};
use std::sync::Arc;
use usher_core::{Clock, Event, EventKind, Group, SessionId, User, Username};
use usher_store::Store;

#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    throttle: Arc<crate::throttle::Throttle>,
}

/// What a login attempt found.
#[derive(Debug)]
pub enum LoginOutcome {
    Ok(User),
    /// Unknown user, wrong password or disabled account: deliberately one answer.
    Refused,
    /// Too many failures for this account or from this address: try again after this
    /// long. No password was checked.
    Throttled(jiff::SignedDuration),
}

impl Accounts {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, hasher: PasswordHasher) -> Self {
        Self {
            store,
            clock,
            hasher,
            throttle: Arc::default(),
        }
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub async fn create(
        &self,
        name: Username,
        password: Option<&str>,
        admin: bool,
        actor: &str,
    ) -> Result<User, EngineError> {
        let mut user = User::new(name, self.clock.now());
        if admin {
            user.groups.push(Group::admins());
        }
        if let Some(pw) = password {
            user.password_hash = Some(self.hasher.hash(pw).await?);
        }
        self.store.user_create(&user, actor).await?;
        Ok(user)
    }

    pub async fn set_password(
        &self,
        name: &Username,
        password: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        let hash = self.hasher.hash(password).await?;
        self.store
            .user_set_password(name, &hash, actor, self.clock.now())
            .await?;
        Ok(())
    }

    pub async fn get(&self, name: &Username) -> Result<User, EngineError> {
        self.store
            .user_get(name)
            .await?
            .ok_or_else(|| usher_store::StoreError::NotFound(format!("user {name}")).into())
    }

    pub async fn set_disabled(
        &self,
        name: &Username,
        disabled: bool,
        actor: &str,
    ) -> Result<Vec<SessionId>, EngineError> {
        Ok(self
            .store
            .user_set_disabled(name, disabled, actor, self.clock.now())
            .await?)
    }

    pub async fn remove(
        &self,
        name: &Username,
        actor: &str,
    ) -> Result<Vec<SessionId>, EngineError> {
        Ok(self
            .store
            .user_remove(name, actor, self.clock.now())
            .await?)
    }

    /// Checks a name and password; every failure is recorded as `login_failed` with
    /// the name that was tried, and answered identically.
    pub async fn verify_login(
        &self,
        name: &str,
        password: &str,
        ip: std::net::IpAddr,
        user_agent: &str,
    ) -> Result<LoginOutcome, EngineError> {
        let now = self.clock.now();
        if let Some(wait) = self.throttle.wait(name, ip, now) {
            return Ok(LoginOutcome::Throttled(wait));
        }
        let user = match Username::parse(name) {
            Ok(n) => self.store.user_get(&n).await?,
            Err(_) => None,
        };
        let phc = user
            .as_ref()
            .filter(|u| !u.disabled)
            .and_then(|u| u.password_hash.as_deref());
        let ok = self.hasher.verify(password, phc).await;
        match user {
            Some(u) if ok => {
                self.throttle.succeeded(name, ip);
                Ok(LoginOutcome::Ok(u))
            }
            _ => {
                self.throttle.failed(name, ip, now);
                let mut e = Event::new(self.clock.now(), EventKind::LoginFailed);
                e.user = Some(name.chars().take(64).collect());
                e.ip = Some(ip);
                e.user_agent = Some(usher_core::user_agent::truncate(user_agent).to_owned());
                self.store.event_record(&e).await?;
                Ok(LoginOutcome::Refused)
            }
        }
    }
}
