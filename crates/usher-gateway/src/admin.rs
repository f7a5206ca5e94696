//! The admin console: server-rendered pages over the same engine functions and the same
//! query model as the API (a console URL and an API call say the same thing). Admins
//! only: others get 403, anonymous visitors are sent to sign in. Every change is a POST
//! with a CSRF token bound to the admin's session, behind a confirmation that says how
//! many sessions it ends.

use crate::app::AppState;
use crate::client::ClientContext;
use crate::csrf;
use crate::error::HttpError;
use crate::gate;
use crate::pages::render;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use std::sync::Arc;
use usher_core::clock::ago;
use usher_core::query::{Limit, Order, SortKey};
use usher_core::{EndReason, SessionId, SessionQuery, Timestamp, Token, User};
use usher_store::{EventQuery, SessionSelector};

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin", get(dashboard))
        .route("/admin/", get(dashboard))
        .route("/admin/sessions", get(sessions))
        .route("/admin/sessions/end", post(end))
        .route("/admin/sessions/{id}", get(session))
        .route("/admin/users", get(users))
        .route("/admin/users/{name}", get(user).post(user_action))
        .route("/admin/clients", get(clients))
        .merge(crate::admin_reports::router())
}

/// The admin behind a console request, and the CSRF token for its forms.
pub(crate) struct Console {
    pub(crate) user: Arc<User>,
    pub(crate) csrf: String,
    pub(crate) token: Token,
}

/// The answer to a console form whose CSRF token or origin does not check out.
pub(crate) fn expired_form() -> Response {
    HttpError::Forbidden(
        "This form has expired or was sent from another site. Reload the page and try again."
            .into(),
    )
    .into_response()
}

impl Console {
    /// A console form's CSRF token and origin check.
    pub(crate) fn form_ok(
        &self,
        state: &AppState,
        ctx: &ClientContext,
        headers: &HeaderMap,
        form: &[(String, String)],
    ) -> bool {
        crate::form::first(form, "csrf").is_some_and(|t| {
            state
                .csrf
                .verify("console", self.token.hash().as_bytes(), t)
        }) && csrf::same_origin(headers, &ctx.host)
    }
}

impl axum::extract::FromRequestParts<Arc<AppState>> for Console {
    type Rejection = Response;

    /// Admins only: strangers are sent to sign in, other users get 403.
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let ctx = ClientContext::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let (token, auth) = match state.session(&ctx, &parts.headers).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(gate::unauthenticated(
                    state,
                    &ctx,
                    &parts.headers,
                    &parts.uri,
                ));
            }
            Err(e) => return Err(HttpError::from(e).into_response()),
        };
        let Some(user) = auth.user.filter(|u| u.is_admin()) else {
            return Err(HttpError::Forbidden(
                "The admin console is for members of the admins group. Ask an administrator to add you.".into(),
            )
            .into_response());
        };
        let csrf = state.csrf.token("console", token.hash().as_bytes());
        Ok(Console { user, csrf, token })
    }
}

fn zone() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::try_system().unwrap_or(jiff::tz::TimeZone::UTC)
}

pub(crate) fn local(t: Timestamp) -> String {
    t.to_zoned_datetime(zone())
        .strftime("%Y-%m-%d %H:%M:%S %Z")
        .to_string()
}

pub(crate) fn encode(pairs: &[(&str, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// The console's query: the API's parameters, with the blanks a form submits dropped.
fn parse_query(raw: Option<&str>) -> (SessionQuery, Option<String>) {
    let pairs: Vec<(String, String)> = crate::form::pairs(raw.unwrap_or("").as_bytes())
        .into_iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    match SessionQuery::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())), true) {
        Ok(q) => (q, None),
        Err(e) => (SessionQuery::default(), Some(e.to_string())),
    }
}

struct Chart {
    title: &'static str,
    max: u64,
    /// SVG polyline points: numbers only.
    points: String,
}

/// A 600×120 polyline over the last 24 hours (x by time, y scaled to the peak).
fn chart(title: &'static str, now: Timestamp, points: &[(Timestamp, u64)]) -> Chart {
    let max = points.iter().map(|p| p.1).max().unwrap_or(0);
    let day = 86_400.0;
    let mut out = String::new();
    for (at, v) in points {
        let age = now.duration_since(*at).as_secs_f64().clamp(0.0, day);
        let x = 600.0 * (1.0 - age / day);
        let y = 118.0 - 110.0 * (*v as f64) / (max.max(1) as f64);
        out.push_str(&format!("{x:.1},{y:.1} "));
    }
    Chart {
        title,
        max,
        points: out.trim_end().to_owned(),
    }
}

#[derive(Template)]
#[template(path = "admin/dashboard.html")]
struct DashboardPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    charts: Vec<Chart>,
    users_active: usize,
    web: u64,
    api: u64,
    anonymous: u64,
    cookieless: usize,
}

async fn dashboard(State(state): State<Arc<AppState>>, c: Console) -> Response {
    let all = SessionQuery {
        limit: Limit::All,
        ..SessionQuery::default()
    };
    let (_, live) = state.engine.list(&all);
    let mut users: Vec<&str> = live
        .iter()
        .filter_map(|s| s.user.as_ref().map(|u| u.as_str()))
        .collect();
    users.sort_unstable();
    users.dedup();
    let count =
        |f: &dyn Fn(&usher_core::SessionInfo) -> bool| live.iter().filter(|s| f(s)).count() as u64;
    let now = state.engine.clock().now();
    let timeline = state.engine.timeline().points();
    let sessions: Vec<(Timestamp, u64)> = timeline.iter().map(|p| (p.at, p.sessions)).collect();
    let requests: Vec<(Timestamp, u64)> = timeline.iter().map(|p| (p.at, p.requests)).collect();
    let charts = vec![
        chart("Active sessions", now, &sessions),
        chart("Requests per minute", now, &requests),
    ];
    render(
        StatusCode::OK,
        &DashboardPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            charts,
            users_active: users.len(),
            web: count(&|s| s.kind == usher_core::SessionKind::Web),
            api: count(&|s| s.kind == usher_core::SessionKind::Api),
            anonymous: count(&|s| s.user.is_none()),
            cookieless: state.engine.cookieless().len(),
        },
    )
}

struct Row {
    id: String,
    user: Option<String>,
    kind: &'static str,
    ip: String,
    client: String,
    user_agent: String,
    requests: u64,
    last_access_ago: String,
    last_access_abs: String,
    created_ago: String,
    created_abs: String,
}

struct Column {
    label: &'static str,
    link: String,
    arrow: &'static str,
}

#[derive(Template)]
#[template(path = "admin/sessions.html")]
struct SessionsPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    csrf: &'a str,
    rows: Vec<Row>,
    columns: Vec<Column>,
    total: u64,
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    error: Option<String>,
    filtered: bool,
    filter_pairs: Vec<(&'static str, String)>,
    filter_query: String,
    self_query: String,
    page_sizes: [&'static str; 5],
    limit_text: &'static str,
    zone: String,
    f_user: String,
    f_anon: String,
    f_type: String,
    f_ip: String,
    f_q: String,
    f_active: String,
}

const COLUMNS: [(&str, SortKey); 8] = [
    ("Session", SortKey::Id),
    ("User", SortKey::User),
    ("Type", SortKey::Type),
    ("IP", SortKey::Ip),
    ("Client", SortKey::Client),
    ("Requests", SortKey::Requests),
    ("Last accessed", SortKey::LastAccess),
    ("Created", SortKey::Created),
];

async fn sessions(State(state): State<Arc<AppState>>, c: Console, uri: Uri) -> Response {
    let (q, error) = parse_query(uri.query());
    let (total, items) = state.engine.list(&q);
    let now = state.engine.clock().now();
    let filter = SessionQuery {
        sort: SortKey::LastAccess,
        order: Order::Desc,
        offset: 0,
        limit: Limit::Count(usher_core::query::DEFAULT_LIMIT),
        ..q.clone()
    };
    let filter_pairs = filter.to_pairs();
    let link = |q: &SessionQuery| encode(&q.to_pairs());
    let columns = COLUMNS
        .iter()
        .map(|(label, key)| {
            let active = q.sort == *key;
            let order = match (active, q.order) {
                (true, Order::Desc) => Order::Asc,
                (true, Order::Asc) => Order::Desc,
                (false, _)
                    if matches!(
                        key,
                        SortKey::Id | SortKey::User | SortKey::Ip | SortKey::Type | SortKey::Client
                    ) =>
                {
                    Order::Asc
                }
                (false, _) => Order::Desc,
            };
            Column {
                label,
                link: link(&SessionQuery {
                    sort: *key,
                    order,
                    offset: 0,
                    ..q.clone()
                }),
                arrow: match (active, q.order) {
                    (true, Order::Asc) => " ▲",
                    (true, Order::Desc) => " ▼",
                    _ => "",
                },
            }
        })
        .collect();
    let size = match q.limit {
        Limit::Count(n) => u64::from(n),
        Limit::All => total.max(1),
    };
    let prev = (q.offset > 0).then(|| {
        link(&SessionQuery {
            offset: q.offset.saturating_sub(size),
            ..q.clone()
        })
    });
    let next = (q.offset + size < total).then(|| {
        link(&SessionQuery {
            offset: q.offset + size,
            ..q.clone()
        })
    });
    let rows: Vec<Row> = items
        .into_iter()
        .map(|s| Row {
            id: s.id.to_string(),
            user: s.user.map(|u| u.to_string()),
            kind: s.kind.as_str(),
            ip: s.ip.to_string(),
            client: s.client,
            user_agent: s.user_agent,
            requests: s.requests,
            last_access_ago: ago(s.last_access_at, now),
            last_access_abs: local(s.last_access_at),
            created_ago: ago(s.created_at, now),
            created_abs: local(s.created_at),
        })
        .collect();
    let first = if rows.is_empty() { 0 } else { q.offset + 1 };
    let last = q.offset + rows.len() as u64;
    let value = |k: &str| {
        filter_pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let limit_text = match q.limit {
        Limit::Count(25) => "25",
        Limit::Count(100) => "100",
        Limit::Count(500) => "500",
        Limit::All => "all",
        _ => "50",
    };
    let mut r = render(
        StatusCode::OK,
        &SessionsPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            csrf: &c.csrf,
            rows,
            columns,
            total,
            first,
            last,
            prev,
            next,
            error,
            filtered: q.has_filter(),
            filter_query: encode(&filter_pairs),
            self_query: link(&q),
            page_sizes: ["25", "50", "100", "500", "all"],
            limit_text,
            zone: zone().iana_name().unwrap_or("UTC").to_owned(),
            f_user: value("user"),
            f_anon: value("anonymous"),
            f_type: value("type"),
            f_ip: value("ip"),
            f_q: value("q"),
            f_active: value("active_within"),
            filter_pairs,
        },
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[derive(Template)]
#[template(path = "admin/confirm.html")]
struct ConfirmPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    csrf: &'a str,
    count: usize,
    what: String,
    mode: &'a str,
    back: &'a str,
    ids: Vec<String>,
    filter_pairs: Vec<(String, String)>,
}

/// `POST /admin/sessions/end`: end the selected sessions, or every one matching the
/// filter — first a confirmation that says how many, then the deed.
async fn end(
    State(state): State<Arc<AppState>>,
    c: Console,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = crate::form::pairs(&body);
    let field = |k: &str| crate::form::first(&form, k);
    if !c.form_ok(&state, &ctx, &headers, &form) {
        return expired_form();
    }
    let back = field("back").unwrap_or("").to_owned();
    let mode = if field("what") == Some("matching") {
        "matching"
    } else {
        "selected"
    };
    let filter_pairs: Vec<(String, String)> = form
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("f_").map(|k| (k.to_owned(), v.clone())))
        .filter(|(_, v)| !v.trim().is_empty())
        .collect();
    let ids: Vec<SessionId> = if mode == "matching" {
        let q = SessionQuery::parse(
            filter_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            true,
        );
        match q {
            Ok(mut q) if q.has_filter() => {
                q.limit = Limit::All;
                q.offset = 0;
                state.engine.list(&q).1.into_iter().map(|s| s.id).collect()
            }
            _ => {
                return HttpError::BadRequest(
                    "Ending all matching sessions needs a filter; set one first.".into(),
                )
                .into_response();
            }
        }
    } else {
        form.iter()
            .filter(|(k, _)| k == "id")
            .filter_map(|(_, v)| SessionId::parse(v).ok())
            .collect()
    };
    if ids.is_empty() {
        return HttpError::BadRequest("No session was selected.".into()).into_response();
    }
    if field("confirmed") != Some("yes") {
        let what = if mode == "matching" {
            "Every session matching the current filter will end.".to_owned()
        } else {
            "The selected sessions will end.".to_owned()
        };
        return render(
            StatusCode::OK,
            &ConfirmPage {
                prefix: state.prefix(),
                admin: c.user.name.as_str(),
                csrf: &c.csrf,
                count: ids.len(),
                what,
                mode,
                back: &back,
                ids: if mode == "selected" {
                    ids.iter().map(|i| i.to_string()).collect()
                } else {
                    Vec::new()
                },
                filter_pairs,
            },
        );
    }
    match state
        .engine
        .end(
            SessionSelector::Ids(ids),
            EndReason::Killed,
            c.user.name.as_str(),
        )
        .await
    {
        Ok(ended) => {
            tracing::info!(admin = %c.user.name, ended = ended.len(), "sessions ended from the console");
            let mut r = StatusCode::SEE_OTHER.into_response();
            let target = format!(
                "{}/admin/sessions?{}",
                state.prefix(),
                back.replace(['\r', '\n'], "")
            );
            r.headers_mut()
                .insert(header::LOCATION, gate::location(&target));
            r
        }
        Err(e) => HttpError::from(e).into_response(),
    }
}

#[derive(Template)]
#[template(path = "admin/session.html")]
struct SessionPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    csrf: &'a str,
    id: String,
    live: bool,
    fields: Vec<(&'static str, String)>,
    events: Vec<(String, &'static str, String, String)>,
}

async fn session(
    State(state): State<Arc<AppState>>,
    c: Console,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = SessionId::parse(&id) else {
        return HttpError::NotFound.into_response();
    };
    let now = state.engine.clock().now();
    let live = state.engine.session_info(&id);
    let record = match &live {
        Some(_) => None,
        None => match state.engine.store().session_get(&id).await {
            Ok(Some(r)) => Some(r),
            Ok(None) => return HttpError::NotFound.into_response(),
            Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
        },
    };
    let info = match (&live, &record) {
        (Some(i), _) => i.clone(),
        (None, Some(r)) => {
            usher_core::SessionInfo::from_record(r, r.ended_at.unwrap_or(r.last_access_at))
        }
        _ => return HttpError::NotFound.into_response(),
    };
    let when = |t: Timestamp| format!("{} ({})", local(t), ago(t, now));
    let mut fields = vec![
        (
            "User",
            info.user
                .as_ref()
                .map_or_else(|| "Anonymous".to_owned(), |u| u.to_string()),
        ),
        ("Type", info.kind.as_str().to_owned()),
        ("IP", info.ip.to_string()),
        ("First IP", info.first_ip.to_string()),
        ("Client", info.client.clone()),
        ("User-Agent", info.user_agent.clone()),
        ("Host", info.host.clone()),
        ("Requests", info.requests.to_string()),
        ("Created", when(info.created_at)),
        ("Last accessed", when(info.last_access_at)),
    ];
    match &record {
        None => fields.push(("Expires", when(info.expires_at))),
        Some(r) => {
            if let Some(t) = r.ended_at {
                fields.push(("Ended", when(t)));
            }
            fields.push((
                "End reason",
                r.end_reason
                    .map(|e| e.as_str().to_owned())
                    .unwrap_or_default(),
            ));
            fields.push(("Ended by", r.ended_by.clone().unwrap_or_default()));
        }
    }
    let events = state
        .engine
        .store()
        .events(&EventQuery {
            user: info.user.as_ref().map(|u| u.to_string()),
            limit: 500,
            ..Default::default()
        })
        .await
        .map(|p| p.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.session == Some(id))
        .map(|e| {
            (
                when(e.at),
                e.kind.as_str(),
                e.ip.map(|i| i.to_string()).unwrap_or_default(),
                e.actor.unwrap_or_default(),
            )
        })
        .collect();
    render(
        StatusCode::OK,
        &SessionPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            csrf: &c.csrf,
            id: id.to_string(),
            live: live.is_some(),
            fields,
            events,
        },
    )
}

#[derive(Template)]
#[template(path = "admin/users.html")]
struct UsersPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    users: Vec<(String, String, String, &'static str, usize, String)>,
}

async fn users(State(state): State<Arc<AppState>>, c: Console) -> Response {
    let now = state.engine.clock().now();
    let list = match state.engine.store().user_list().await {
        Ok(l) => l,
        Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
    };
    let users = list
        .into_iter()
        .map(|u| {
            let sessions = state.engine.sessions_of(&u.name).len();
            (
                u.name.to_string(),
                u.display_name.clone(),
                u.groups_joined(),
                if u.disabled { "disabled" } else { "active" },
                sessions,
                u.last_login_at
                    .map_or_else(|| "never".to_owned(), |t| ago(t, now)),
            )
        })
        .collect();
    render(
        StatusCode::OK,
        &UsersPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            users,
        },
    )
}

#[derive(Template)]
#[template(path = "admin/clients.html")]
struct ClientsPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    clients: Vec<(String, String, String, u64, String, String)>,
}

async fn clients(State(state): State<Arc<AppState>>, c: Console) -> Response {
    let now = state.engine.clock().now();
    let clients = state
        .engine
        .cookieless()
        .list()
        .into_iter()
        .map(|x| {
            (
                x.ip.to_string(),
                x.user_agent,
                x.client,
                x.requests,
                ago(x.first_seen, now),
                ago(x.last_seen, now),
            )
        })
        .collect();
    render(
        StatusCode::OK,
        &ClientsPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            clients,
        },
    )
}

#[derive(Template)]
#[template(path = "admin/user.html")]
struct UserPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    csrf: &'a str,
    name: String,
    notice: Option<String>,
    fields: Vec<(&'static str, String)>,
    actions: Vec<(&'static str, &'static str)>,
    /// id, client, ip, requests, last used
    sessions: Vec<(String, String, String, u64, String)>,
    /// time, event, session, ip, actor
    events: Vec<(String, &'static str, String, String, String)>,
}

async fn user_view(
    state: &AppState,
    c: &Console,
    name: &usher_core::Username,
    notice: Option<String>,
) -> Response {
    let user = match state.accounts.get(name).await {
        Ok(u) => u,
        Err(e) => return HttpError::from(e).into_response(),
    };
    let now = state.engine.clock().now();
    let when = |t: Timestamp| format!("{} ({})", local(t), ago(t, now));
    let fields = vec![
        ("Display name", user.display_name.clone()),
        ("Email", user.email.clone()),
        ("Groups", user.groups_joined()),
        (
            "Status",
            if user.disabled { "disabled" } else { "active" }.to_owned(),
        ),
        ("Created", when(user.created_at)),
        (
            "Last login",
            user.last_login_at.map_or_else(|| "never".to_owned(), when),
        ),
    ];
    let mut actions = Vec::new();
    actions.push(if user.disabled {
        ("enable", "Enable")
    } else {
        ("disable", "Disable (ends all sessions)")
    });
    actions.push(if user.is_admin() {
        ("revoke_admin", "Remove from admins")
    } else {
        ("grant_admin", "Make admin")
    });
    let sessions = state
        .engine
        .sessions_of(name)
        .into_iter()
        .map(|s| {
            (
                s.id.to_string(),
                s.client,
                s.ip.to_string(),
                s.requests,
                ago(s.last_access_at, now),
            )
        })
        .collect();
    let events = state
        .engine
        .store()
        .events(&EventQuery {
            user: Some(name.to_string()),
            limit: 50,
            ..Default::default()
        })
        .await
        .map(|p| p.items)
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                when(e.at),
                e.kind.as_str(),
                e.session.map(|s| s.to_string()).unwrap_or_default(),
                e.ip.map(|i| i.to_string()).unwrap_or_default(),
                e.actor.unwrap_or_default(),
            )
        })
        .collect();
    render(
        StatusCode::OK,
        &UserPage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            csrf: &c.csrf,
            name: name.to_string(),
            notice,
            fields,
            actions,
            sessions,
            events,
        },
    )
}

async fn user(
    State(state): State<Arc<AppState>>,
    c: Console,
    Path(name): Path<String>,
) -> Response {
    let Ok(name) = usher_core::Username::parse(&name) else {
        return HttpError::NotFound.into_response();
    };
    user_view(&state, &c, &name, None).await
}

/// `POST /admin/users/{name}`: one action per form, CSRF-checked; the page comes back
/// saying what happened.
async fn user_action(
    State(state): State<Arc<AppState>>,
    c: Console,
    ctx: ClientContext,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(name) = usher_core::Username::parse(&name) else {
        return HttpError::NotFound.into_response();
    };
    let form = crate::form::pairs(&body);
    let field = |k: &str| crate::form::first(&form, k).map(str::to_owned);
    if !c.form_ok(&state, &ctx, &headers, &form) {
        return expired_form();
    }
    let actor = c.user.name.as_str();
    let yourself = name == c.user.name;
    let result: Result<String, HttpError> = async {
        match field("action").as_deref() {
            Some("end_sessions") => {
                let n = state
                    .engine
                    .end(
                        SessionSelector::User(name.clone()),
                        EndReason::Killed,
                        actor,
                    )
                    .await?
                    .len();
                Ok(format!("Ended {n} session(s)."))
            }
            Some("disable") if yourself => {
                Err(HttpError::BadRequest("You cannot disable yourself.".into()))
            }
            Some(a @ ("disable" | "enable")) => {
                let ended = state
                    .accounts
                    .set_disabled(&name, a == "disable", actor)
                    .await?;
                state.engine.forget(&ended);
                state.engine.refresh_user(&name).await?;
                Ok(if a == "disable" {
                    format!("Disabled; ended {} session(s).", ended.len())
                } else {
                    "Enabled.".to_owned()
                })
            }
            Some("revoke_admin") if yourself => Err(HttpError::BadRequest(
                "You cannot leave the admins group yourself.".into(),
            )),
            Some(a @ ("grant_admin" | "revoke_admin")) => {
                let mut u = state.accounts.get(&name).await?;
                if a == "grant_admin" {
                    u.groups.push(usher_core::Group::admins());
                    u.groups.sort();
                    u.groups.dedup();
                } else {
                    u.groups.retain(|g| g.as_str() != usher_core::user::ADMINS);
                }
                state
                    .engine
                    .store()
                    .user_update(&u, actor, state.engine.clock().now())
                    .await
                    .map_err(usher_engine::EngineError::from)?;
                state.engine.refresh_user(&name).await?;
                Ok(if a == "grant_admin" {
                    "Now an administrator."
                } else {
                    "No longer an administrator."
                }
                .to_owned())
            }
            Some("password") => {
                let pw = field("new_password").unwrap_or_default();
                state.accounts.set_password(&name, &pw, actor).await?;
                Ok("Password changed.".to_owned())
            }
            _ => Err(HttpError::BadRequest("Unknown action.".into())),
        }
    }
    .await;
    match result {
        Ok(notice) => user_view(&state, &c, &name, Some(notice)).await,
        Err(e) => e.into_response(),
    }
}
