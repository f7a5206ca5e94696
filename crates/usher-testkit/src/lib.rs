//! Test harness: the real Usher server in-process on a free loopback port with its own
//! temporary SQLite file, an upstream app to put behind it, and a browser-like login.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod proxies;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use usher_core::{Clock, ManualClock, SystemClock, Timestamp, Username};
use usher_engine::{Accounts, EngineConfig, PasswordHasher};
use usher_gateway::{AppState, GatewaySettings, Server};
use usher_store::{Store, StoreUrl};

pub use upstream::Upstream;

/// How a test wants its server.
pub struct Options {
    pub gateway: GatewaySettings,
    pub engine: EngineConfig,
    /// `Some`: the server's time only moves when the test says so.
    pub manual_clock: bool,
    /// Where to listen; 127.0.0.1 on a free port when `None`.
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            gateway: GatewaySettings::default(),
            engine: EngineConfig {
                policy: usher_core::SessionPolicy::default(),
                flush_interval: Duration::from_millis(100),
                concurrency: Default::default(),
                retention: jiff::SignedDuration::from_hours(400 * 24),
                max_anonymous: 100_000,
            },
            manual_clock: false,
            listen: None,
        }
    }
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub store: Arc<dyn Store>,
    pub store_url: StoreUrl,
    pub state: Arc<AppState>,
    /// Set when the app runs on a manual clock.
    pub clock: Option<ManualClock>,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = StoreUrl::parse(&format!("sqlite://{}/usher.db", dir.path().display())).unwrap();
        Self::spawn_on(dir, url, options).await
    }

    /// Starts a server on an existing data directory (a restart).
    pub async fn spawn_on(dir: tempfile::TempDir, store_url: StoreUrl, options: Options) -> Self {
        let store = usher_store::open(&store_url).await.expect("store opens");
        let (clock, dyn_clock): (Option<ManualClock>, Arc<dyn Clock>) = if options.manual_clock {
            let c = ManualClock::new(Timestamp::from_second(1_800_000_000).unwrap());
            (Some(c.clone()), Arc::new(c))
        } else {
            (None, Arc::new(SystemClock))
        };
        let server = Server::build(
            options
                .listen
                .unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()),
            options.gateway,
            options.engine,
            store.clone(),
            dyn_clock,
        )
        .await
        .expect("server builds");
        let addr = server.local_addr().unwrap();
        let state = server.state();
        let (stop, stopped) = oneshot::channel();
        let handle = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
                .expect("server runs");
        });
        Self {
            addr,
            base: format!("http://{addr}"),
            store,
            store_url,
            state,
            clock,
            dir,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Graceful stop (as on SIGTERM), returning the data directory for a restart.
    pub async fn stop(mut self) -> (tempfile::TempDir, StoreUrl) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task");
        }
        (self.dir, self.store_url)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn accounts(&self) -> Accounts {
        Accounts::new(
            self.store.clone(),
            Arc::new(SystemClock),
            PasswordHasher::new(1).unwrap(),
        )
    }

    pub async fn add_user(&self, name: &str, password: &str, admin: bool) {
        self.accounts()
            .create(
                Username::parse(name).unwrap(),
                Some(password),
                admin,
                "test",
            )
            .await
            .unwrap();
    }

    /// An API token (`ush_…`) of a fresh administrator named `name`.
    pub async fn admin_token(&self, name: &str) -> String {
        self.add_user(name, &format!("{name}-password"), true).await;
        self.token_for(name).await
    }

    /// An API token owned by the existing user `name`.
    pub async fn token_for(&self, name: &str) -> String {
        let secret = usher_core::Token::generate().unwrap();
        let token = usher_core::ApiToken {
            id: usher_core::SessionId::generate().unwrap().to_string(),
            name: "test".into(),
            owner: Username::parse(name).unwrap(),
            created_at: usher_core::Clock::now(&SystemClock),
            last_used_at: None,
            revoked_at: None,
        };
        self.store
            .token_create(&token, &secret.hash())
            .await
            .unwrap();
        format!("ush_{}", secret.encode())
    }

    /// A web session of `user` made in the store behind the server's back, as another
    /// node would: not in this server's memory until it asks the store. Returns its id
    /// and its cookie as `name=value`. `browser`: the name read from `user_agent`.
    pub async fn session_in_store_only(
        &self,
        user: &str,
        user_agent: &str,
        browser: &str,
    ) -> (usher_core::SessionId, String) {
        let token = usher_core::Token::generate().unwrap();
        let made = usher_core::NewSession {
            id: usher_core::SessionId::generate().unwrap(),
            token_hash: token.hash(),
            user: Some(Username::parse(user).unwrap()),
            kind: usher_core::SessionKind::Web,
            created_at: usher_core::Clock::now(&SystemClock),
            client: usher_core::ClientSnapshot {
                ip: "127.0.0.1".parse().unwrap(),
                user_agent: user_agent.into(),
                host: "localhost".into(),
            },
            limit: None,
        };
        self.store.session_create(&made, browser).await.unwrap();
        (made.id, format!("usher_session={}", token.encode()))
    }

    /// Signs in like a browser: fetch the form, post it back. Returns the session
    /// cookie as `name=value`.
    pub async fn login(&self, user: &str, password: &str) -> String {
        let (status, cookie) = self.try_login(user, password, "/").await;
        assert_eq!(status, 303, "login of {user} failed");
        cookie.expect("a session cookie")
    }

    /// Signs in and returns the status and the session cookie, if one was set.
    pub async fn try_login(&self, user: &str, password: &str, rd: &str) -> (u16, Option<String>) {
        let resp = self.post_login(user, password, rd, None).await;
        let status = resp.status().as_u16();
        (
            status,
            session_cookie(&resp, &self.state.settings.cookie_name),
        )
    }

    /// The login POST with its form and pre-session cookie, plus an optional extra cookie.
    pub async fn post_login(
        &self,
        user: &str,
        password: &str,
        rd: &str,
        extra_cookie: Option<&str>,
    ) -> reqwest::Response {
        browser_login(&self.base, user, password, rd, extra_cookie).await
    }

    /// Logs out like a browser (confirmation page, then the form); returns the status.
    pub async fn logout(&self, cookie: &str) -> u16 {
        let c = client();
        let page = c
            .get(self.url("/usher/logout"))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap();
        let csrf = hidden_field(&page.text().await.unwrap(), "csrf").expect("logout form");
        c.post(self.url("/usher/logout"))
            .header("cookie", cookie)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Flushes pending request counts now (instead of waiting for the interval).
    pub async fn flush(&self) {
        self.state.engine.flush().await.unwrap();
    }

    /// `user`'s sessions as the store has them once every pending count is flushed.
    pub async fn sessions_of(&self, user: &str) -> Vec<usher_core::SessionRecord> {
        self.flush().await;
        self.store
            .sessions_of_user(&Username::parse(user).unwrap())
            .await
            .unwrap()
    }
}

/// Signs in at the Usher on `base` (`http://host:port`) like a browser: fetch the form,
/// post it back with its pre-session cookie (plus `extra_cookie`, if any).
pub async fn browser_login(
    base: &str,
    user: &str,
    password: &str,
    rd: &str,
    extra_cookie: Option<&str>,
) -> reqwest::Response {
    let client = client();
    let form = client
        .get(format!("{base}/usher/login"))
        .send()
        .await
        .unwrap();
    let login_cookie = set_cookie_named(&form, "usher_login").expect("login cookie");
    let html = form.text().await.unwrap();
    let csrf = hidden_field(&html, "csrf").expect("csrf field");
    let mut cookie = login_cookie;
    if let Some(extra) = extra_cookie {
        cookie = format!("{cookie}; {extra}");
    }
    client
        .post(format!("{base}/usher/login"))
        .header("cookie", cookie)
        .form(&[
            ("username", user),
            ("password", password),
            ("rd", rd),
            ("csrf", &csrf),
        ])
        .send()
        .await
        .unwrap()
}

/// The status of a GET to `url` presenting `cookie`.
pub async fn status(url: &str, cookie: &str) -> u16 {
    client()
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The Prometheus text of the Usher at `base` (`http://host:port`).
pub async fn metrics(base: &str) -> String {
    let r = client()
        .get(format!("{base}/usher/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

/// One series of the Usher at `base`: its value, `None` when it is not exported.
/// `series` is the name with its labels, as printed (`usher_x_total{reason="y"}`).
pub async fn metric(base: &str, series: &str) -> Option<f64> {
    metrics(base)
        .await
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A client that neither follows redirects nor keeps cookies: tests see every hop.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `name=value` of the first `Set-Cookie` named `name`.
pub fn set_cookie_named(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
        .find(|c| c.split('=').next() == Some(name) && c.len() > name.len() + 1)
}

/// The session cookie set by `resp`, under any of its prefixed names.
pub fn session_cookie(resp: &reqwest::Response, base: &str) -> Option<String> {
    [
        base.to_owned(),
        format!("__Host-{base}"),
        format!("__Secure-{base}"),
    ]
    .iter()
    .find_map(|n| set_cookie_named(resp, n))
}

/// The value of `<input type="hidden" name="NAME" value="...">` in a page.
pub fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker)? + marker.len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].to_owned())
}
