//! Where the CLI's session, history and token commands act: straight on the store (in
//! the directory where `usher serve` runs, or with `--config`), or through a running
//! server's API (`--server URL` with `USHER_TOKEN`). Either way a running server sees a
//! change within a second: directly through the API, or through the store's change feed.

use crate::config::Settings;
use anyhow::{Context, bail};
use serde::Deserialize;
use std::sync::Arc;
use usher_core::{
    ApiToken, Clock, EndReason, Event, InactiveUser, SessionId, SessionInfo, SessionPolicy,
    SessionQuery, SystemClock, Timestamp, Token, Username,
};
use usher_store::{EndSessions, EventQuery, SessionSelector, Store};

/// Who ends a session from the CLI, as history records it.
pub const ACTOR: &str = "cli";

pub enum Backend {
    Local {
        store: Arc<dyn Store>,
        policy: SessionPolicy,
    },
    Remote {
        http: reqwest::Client,
        base: String,
        token: String,
    },
}

/// What to end.
pub enum KillTarget {
    Ids(Vec<SessionId>),
    User(Username),
    Anonymous,
}

#[derive(Deserialize)]
struct Page {
    total: u64,
    items: Vec<SessionInfo>,
}

#[derive(Deserialize)]
struct Ended {
    ended: usize,
}

#[derive(Deserialize)]
struct HistoryPage {
    items: Vec<Event>,
}

#[derive(Deserialize)]
struct InactivePage {
    items: Vec<InactiveUser>,
}

impl Backend {
    /// The API when `--server` (or `USHER_SERVER`) is given, else the store.
    pub async fn open(settings: &Settings, server: Option<&str>) -> anyhow::Result<Self> {
        match server {
            Some(base) => {
                let token = std::env::var("USHER_TOKEN").map_err(|_| {
                    anyhow::anyhow!(
                        "--server needs an API token in USHER_TOKEN (create one with `usher token create NAME` where the server runs)"
                    )
                })?;
                let base = base.trim_end_matches('/');
                url::Url::parse(base).with_context(|| {
                    format!("--server `{base}` is not a URL such as http://127.0.0.1:8080")
                })?;
                Ok(Self::Remote {
                    http: reqwest::Client::builder()
                        .timeout(std::time::Duration::from_secs(30))
                        .build()?,
                    base: format!("{base}{}/api/v1", settings.gateway.prefix),
                    token,
                })
            }
            None => Ok(Self::Local {
                store: crate::users::open_store(settings).await?,
                policy: settings.engine.policy,
            }),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(String, String)],
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let Self::Remote { http, base, token } = self else {
            bail!("not connected to a server");
        };
        let mut req = http
            .request(method, format!("{base}{path}"))
            .bearer_auth(token)
            .query(query);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("cannot reach {base}"))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or("no details");
        bail!("the server answered {status}: {message}")
    }

    pub async fn sessions(
        &self,
        pairs: &[(String, String)],
    ) -> anyhow::Result<(u64, Vec<SessionInfo>)> {
        match self {
            Self::Local { store, policy } => {
                let q =
                    SessionQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), true)
                        .map_err(|e| {
                            anyhow::anyhow!("--{}", e.to_string().replacen('_', "-", 1))
                        })?;
                let live = store.sessions_live().await?;
                let (total, page) = q.run(live, SystemClock.now());
                Ok((
                    total,
                    page.iter()
                        .map(|r| SessionInfo::of_stored(r, policy))
                        .collect(),
                ))
            }
            Self::Remote { .. } => {
                if !pairs.iter().any(|(k, v)| k == "limit" && v == "all") {
                    let page: Page = self
                        .call(reqwest::Method::GET, "/sessions", pairs, None)
                        .await?
                        .json()
                        .await?;
                    return Ok((page.total, page.items));
                }
                // The API pages at most 10,000 rows: walk the pages.
                let mut all = Vec::new();
                loop {
                    let mut q: Vec<(String, String)> = pairs
                        .iter()
                        .filter(|(k, _)| k != "limit" && k != "offset")
                        .cloned()
                        .collect();
                    q.push(("limit".into(), usher_core::query::MAX_LIMIT.to_string()));
                    q.push(("offset".into(), all.len().to_string()));
                    let page: Page = self
                        .call(reqwest::Method::GET, "/sessions", &q, None)
                        .await?
                        .json()
                        .await?;
                    let done = page.items.is_empty();
                    all.extend(page.items);
                    if done || all.len() as u64 >= page.total {
                        return Ok((page.total, all));
                    }
                }
            }
        }
    }

    /// Ends sessions; returns how many this call ended.
    pub async fn kill(&self, target: KillTarget) -> anyhow::Result<usize> {
        match self {
            Self::Local { store, .. } => {
                let selector = match target {
                    KillTarget::Ids(ids) => SessionSelector::Ids(ids),
                    KillTarget::User(u) => SessionSelector::User(u),
                    KillTarget::Anonymous => SessionSelector::Ids(
                        store
                            .sessions_live()
                            .await?
                            .into_iter()
                            .filter(|s| s.user.is_none())
                            .map(|s| s.id)
                            .collect(),
                    ),
                };
                let end = EndSessions {
                    selector,
                    reason: EndReason::Killed,
                    actor: ACTOR.into(),
                    at: SystemClock.now(),
                    touches: Vec::new(),
                };
                Ok(store.sessions_end(&end).await?.len())
            }
            Self::Remote { .. } => match target {
                KillTarget::Ids(ids) => {
                    let mut n = 0;
                    for id in ids {
                        match self
                            .call(
                                reqwest::Method::DELETE,
                                &format!("/sessions/{id}"),
                                &[],
                                None,
                            )
                            .await
                        {
                            Ok(_) => n += 1,
                            Err(e) if e.to_string().contains("404") => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(n)
                }
                KillTarget::User(u) => {
                    let r: Ended = self
                        .call(
                            reqwest::Method::DELETE,
                            &format!("/users/{u}/sessions"),
                            &[],
                            None,
                        )
                        .await?
                        .json()
                        .await?;
                    Ok(r.ended)
                }
                KillTarget::Anonymous => {
                    let body = serde_json::json!({ "anonymous": true });
                    let r: Ended = self
                        .call(reqwest::Method::POST, "/sessions/end", &[], Some(body))
                        .await?
                        .json()
                        .await?;
                    Ok(r.ended)
                }
            },
        }
    }

    pub async fn history(&self, q: &EventQuery) -> anyhow::Result<Vec<Event>> {
        match self {
            Self::Local { store, .. } => Ok(store.events(q).await?.items),
            Self::Remote { .. } => {
                let mut pairs = vec![("limit".to_owned(), q.limit.clamp(1, 1000).to_string())];
                if let Some(u) = &q.user {
                    pairs.push(("user".into(), u.clone()));
                }
                if let Some(k) = q.kind {
                    pairs.push(("event".into(), k.as_str().into()));
                }
                if let Some(ip) = q.ip {
                    pairs.push(("ip".into(), ip.to_string()));
                }
                if let Some(t) = q.from {
                    pairs.push(("from".into(), t.to_string()));
                }
                if let Some(t) = q.to {
                    pairs.push(("to".into(), t.to_string()));
                }
                let page: HistoryPage = self
                    .call(reqwest::Method::GET, "/history", &pairs, None)
                    .await?
                    .json()
                    .await?;
                Ok(page.items)
            }
        }
    }

    /// The sessions (of `user`, or everyone's) that were live at `at`.
    pub async fn sessions_at(
        &self,
        user: Option<&Username>,
        at: Timestamp,
    ) -> anyhow::Result<Vec<SessionInfo>> {
        match self {
            Self::Local { store, policy } => Ok(store
                .sessions_at(user, at)
                .await?
                .iter()
                .map(|r| SessionInfo::of_stored(r, policy))
                .collect()),
            Self::Remote { .. } => {
                let mut q = vec![("at".to_owned(), at.to_string())];
                if let Some(u) = user {
                    q.push(("user".into(), u.to_string()));
                }
                let v: serde_json::Value = self
                    .call(reqwest::Method::GET, "/history", &q, None)
                    .await?
                    .json()
                    .await?;
                Ok(serde_json::from_value(v["sessions"].clone())?)
            }
        }
    }

    pub async fn inactive(&self, since: Timestamp) -> anyhow::Result<Vec<InactiveUser>> {
        match self {
            Self::Local { store, .. } => Ok(store.inactive_users(since).await?),
            Self::Remote { .. } => {
                let q = [("since".to_owned(), since.to_string())];
                let page: InactivePage = self
                    .call(reqwest::Method::GET, "/reports/inactive", &q, None)
                    .await?
                    .json()
                    .await?;
                Ok(page.items)
            }
        }
    }

    /// Cookieless clients live in the running server's memory: only through its API.
    pub async fn clients(&self) -> anyhow::Result<Vec<usher_engine::clients::CookielessClient>> {
        match self {
            Self::Local { .. } => bail!(
                "cookieless clients are counted in the running server's memory: use --server URL with USHER_TOKEN"
            ),
            Self::Remote { .. } => Ok(self
                .call(reqwest::Method::GET, "/clients", &[], None)
                .await?
                .json()
                .await?),
        }
    }

    /// Creates a token for `owner`; returns it with its secret, shown only now.
    pub async fn token_create(
        &self,
        name: &str,
        owner: Option<&str>,
    ) -> anyhow::Result<(ApiToken, String)> {
        match self {
            Self::Local { store, .. } => {
                let owner = match owner {
                    Some(o) => Username::parse(o)?,
                    None => store
                        .user_list()
                        .await?
                        .into_iter()
                        .find(|u| u.is_admin() && !u.disabled)
                        .map(|u| u.name)
                        .ok_or_else(|| {
                            anyhow::anyhow!("no administrator to own the token; pass --owner")
                        })?,
                };
                let user = store.user_get(&owner).await?.ok_or_else(|| {
                    anyhow::anyhow!("there is no user {owner} (see `usher user list`)")
                })?;
                if !user.is_admin() {
                    eprintln!(
                        "note: {owner} is not an administrator: this token lets an API client reach the protected app as {owner}, but not Usher's own API"
                    );
                }
                let secret = Token::generate()?;
                let token = ApiToken {
                    id: SessionId::generate()?.to_string(),
                    name: name.to_owned(),
                    owner,
                    created_at: SystemClock.now(),
                    last_used_at: None,
                    revoked_at: None,
                };
                store.token_create(&token, &secret.hash()).await?;
                Ok((
                    token,
                    format!(
                        "{}{}",
                        usher_gateway::api::API_TOKEN_PREFIX,
                        secret.encode()
                    ),
                ))
            }
            Self::Remote { .. } => {
                if owner.is_some() {
                    bail!(
                        "--owner works on the store only; through --server the token belongs to USHER_TOKEN's owner"
                    );
                }
                let v: serde_json::Value = self
                    .call(
                        reqwest::Method::POST,
                        "/tokens",
                        &[],
                        Some(serde_json::json!({ "name": name })),
                    )
                    .await?
                    .json()
                    .await?;
                let secret = v["token"].as_str().unwrap_or_default().to_owned();
                Ok((serde_json::from_value(v)?, secret))
            }
        }
    }

    pub async fn token_list(&self) -> anyhow::Result<Vec<ApiToken>> {
        match self {
            Self::Local { store, .. } => Ok(store.token_list().await?),
            Self::Remote { .. } => Ok(self
                .call(reqwest::Method::GET, "/tokens", &[], None)
                .await?
                .json()
                .await?),
        }
    }

    /// `false` when there was no such live token.
    pub async fn token_revoke(&self, id: &str) -> anyhow::Result<bool> {
        match self {
            Self::Local { store, .. } => Ok(store.token_revoke(id, SystemClock.now()).await?),
            Self::Remote { .. } => {
                match self
                    .call(reqwest::Method::DELETE, &format!("/tokens/{id}"), &[], None)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(e) if e.to_string().contains("404") => Ok(false),
                    Err(e) => Err(e),
                }
            }
        }
    }
}
