//! The console's history (`/admin/history`: the API's filters, newest first, a cursor
//! that stays put while new events arrive, CSV export) and the inactive-users report
//! (`/admin/reports/inactive`, from which the selected users are disabled in one step).

use crate::admin::{Console, encode, expired_form, local};
use crate::api::history::{HistoryQuery, parse_history, parse_time, start_of_year};
use crate::app::AppState;
use crate::client::ClientContext;
use crate::error::HttpError;
use crate::form::first;
use crate::pages::render;
use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use std::sync::Arc;
use usher_core::clock::ago;
use usher_core::{EventKind, Timestamp, Username};

/// Most rows one CSV export writes.
const CSV_MAX_ROWS: usize = 100_000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/history", get(history))
        .route("/admin/reports/inactive", get(inactive).post(disable))
}

fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    crate::form::pairs(uri.query().unwrap_or("").as_bytes())
}

/// One history row as shown.
struct EventRow {
    time: String,
    kind: &'static str,
    user: String,
    session: String,
    ip: String,
    client: String,
    user_agent: String,
    actor: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "admin/history.html")]
struct HistoryPage<'a> {
    prefix: &'a str,
    admin: &'a str,
    error: Option<String>,
    /// The filters as typed: user, event, ip, from, to.
    values: [String; 5],
    kinds: [EventKind; 11],
    rows: Vec<EventRow>,
    /// Query strings of the older page, the newest page (when not on it), the CSV.
    older: Option<String>,
    newest: Option<String>,
    csv: String,
}

const FILTERS: [&str; 5] = ["user", "event", "ip", "from", "to"];

async fn history(State(state): State<Arc<AppState>>, c: Console, uri: Uri) -> Response {
    let pairs = query_pairs(&uri);
    let want_csv = first(&pairs, "format") == Some("csv");
    let filters: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, v)| k != "format" && !v.trim().is_empty())
        .cloned()
        .collect();
    let values = FILTERS.map(|k| first(&filters, k).unwrap_or("").to_owned());
    let kept: Vec<(&str, String)> = FILTERS
        .iter()
        .zip(&values)
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    let mut page = HistoryPage {
        prefix: state.prefix(),
        admin: c.user.name.as_str(),
        error: None,
        values: values.clone(),
        kinds: EventKind::ALL,
        rows: Vec::new(),
        older: None,
        newest: None,
        csv: encode(&[kept.clone(), vec![("format", "csv".to_owned())]].concat()),
    };
    let q = match parse_history(&filters, true) {
        Ok(HistoryQuery { at: Some(_), .. }) => Err(
            "`at` (who was live at an instant) is answered by the API and `usher history --at`; here, filter by time with from and to.".to_owned(),
        ),
        Ok(h) => Ok(h.events),
        Err(e) => Err(match e.param() {
            Some(p) => format!("{p}: {}", e.message()),
            None => e.message().to_owned(),
        }),
    };
    let mut q = match q {
        Ok(q) => q,
        Err(message) => {
            page.error = Some(message);
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    if want_csv {
        return export(&state, q).await;
    }
    q.limit = 100;
    let result = match state.engine.store().events(&q).await {
        Ok(r) => r,
        Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
    };
    let now = state.engine.clock().now();
    page.rows = result
        .items
        .into_iter()
        .map(|e| EventRow {
            time: format!("{} ({})", local(e.at), ago(e.at, now)),
            kind: e.kind.as_str(),
            user: e.user.unwrap_or_default(),
            session: e.session.map(|s| s.to_string()).unwrap_or_default(),
            ip: e.ip.map(|i| i.to_string()).unwrap_or_default(),
            client: e
                .user_agent
                .as_deref()
                .map(usher_core::user_agent::summarize)
                .unwrap_or_default(),
            user_agent: e.user_agent.unwrap_or_default(),
            actor: e.actor.unwrap_or_default(),
            detail: e.detail.unwrap_or_default(),
        })
        .collect();
    page.older = result
        .next_cursor
        .map(|c| encode(&[kept.clone(), vec![("cursor", c.to_string())]].concat()));
    page.newest = q.before.map(|_| encode(&kept));
    render(StatusCode::OK, &page)
}

/// Every matching event (up to [`CSV_MAX_ROWS`]), newest first, as CSV.
async fn export(state: &AppState, mut q: usher_store::EventQuery) -> Response {
    let mut out = usher_core::csv::line(&[
        "time",
        "event",
        "user",
        "session",
        "ip",
        "user_agent",
        "actor",
        "detail",
    ]);
    out.push_str("\r\n");
    q.limit = 1000;
    let mut rows = 0;
    loop {
        let page = match state.engine.store().events(&q).await {
            Ok(p) => p,
            Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
        };
        for e in page.items {
            out.push_str(&usher_core::csv::line(&[
                e.at.to_string(),
                e.kind.as_str().to_owned(),
                e.user.unwrap_or_default(),
                e.session.map(|s| s.to_string()).unwrap_or_default(),
                e.ip.map(|i| i.to_string()).unwrap_or_default(),
                e.user_agent.unwrap_or_default(),
                e.actor.unwrap_or_default(),
                e.detail.unwrap_or_default(),
            ]));
            out.push_str("\r\n");
            rows += 1;
        }
        match page.next_cursor {
            Some(c) if rows < CSV_MAX_ROWS => q.before = Some(c),
            _ => break,
        }
    }
    let mut r = out.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"usher-history.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

struct InactiveRow {
    name: String,
    display_name: String,
    disabled: bool,
    last_login: String,
    last_login_ip: String,
    last_activity: String,
}

#[derive(Template)]
#[template(path = "admin/inactive.html")]
struct InactivePage<'a> {
    prefix: &'a str,
    admin: &'a str,
    csrf: &'a str,
    /// The date the report is for, as typed or defaulted (YYYY-MM-DD).
    since: String,
    error: Option<String>,
    notice: Option<String>,
    rows: Vec<InactiveRow>,
    /// On the confirmation step: the users about to be disabled.
    confirm: Vec<String>,
}

fn since_of(state: &AppState, value: Option<&str>) -> Result<Timestamp, String> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => parse_time("since", v).map_err(|e| format!("since: {}", e.message())),
        None => Ok(start_of_year(state.engine.clock().now())),
    }
}

fn day(t: Timestamp) -> String {
    t.to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .strftime("%Y-%m-%d")
        .to_string()
}

async fn inactive_page(
    state: &AppState,
    c: &Console,
    since_text: Option<&str>,
    notice: Option<String>,
    confirm: Vec<String>,
) -> Response {
    let since = match since_of(state, since_text) {
        Ok(s) => s,
        Err(message) => {
            let page = InactivePage {
                prefix: state.prefix(),
                admin: c.user.name.as_str(),
                csrf: &c.csrf,
                since: since_text.unwrap_or("").to_owned(),
                error: Some(message),
                notice: None,
                rows: Vec::new(),
                confirm: Vec::new(),
            };
            return render(StatusCode::BAD_REQUEST, &page);
        }
    };
    let users = match state.engine.store().inactive_users(since).await {
        Ok(u) => u,
        Err(e) => return HttpError::from(usher_engine::EngineError::from(e)).into_response(),
    };
    let now = state.engine.clock().now();
    let when = |t: Option<Timestamp>| {
        t.map_or_else(
            || "never".to_owned(),
            |t| format!("{} ({})", local(t), ago(t, now)),
        )
    };
    let rows = users
        .into_iter()
        .map(|u| InactiveRow {
            name: u.name.to_string(),
            display_name: u.display_name,
            disabled: u.disabled,
            last_login: when(u.last_login_at),
            last_login_ip: u.last_login_ip.map(|i| i.to_string()).unwrap_or_default(),
            last_activity: when(u.last_activity_at),
        })
        .collect();
    render(
        StatusCode::OK,
        &InactivePage {
            prefix: state.prefix(),
            admin: c.user.name.as_str(),
            csrf: &c.csrf,
            since: since_text
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map_or_else(|| day(since), str::to_owned),
            error: None,
            notice,
            rows,
            confirm,
        },
    )
}

async fn inactive(State(state): State<Arc<AppState>>, c: Console, uri: Uri) -> Response {
    let pairs = query_pairs(&uri);
    if let Some((k, _)) = pairs.iter().find(|(k, _)| k != "since") {
        let message = format!("{k}: unknown parameter; use since");
        return HttpError::BadRequest(message).into_response();
    }
    inactive_page(&state, &c, first(&pairs, "since"), None, Vec::new()).await
}

/// `POST /admin/reports/inactive`: disable the selected users, after a confirmation
/// that names them. Their sessions end (`user_disabled`); yourself you cannot disable.
async fn disable(
    State(state): State<Arc<AppState>>,
    c: Console,
    ctx: ClientContext,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = crate::form::pairs(&body);
    if !c.form_ok(&state, &ctx, &headers, &form) {
        return expired_form();
    }
    let since = first(&form, "since").map(str::to_owned);
    let mut names = Vec::new();
    for (k, v) in &form {
        if k != "user" {
            continue;
        }
        match Username::parse(v) {
            Ok(n) if n == c.user.name => {
                return HttpError::BadRequest("You cannot disable yourself.".into())
                    .into_response();
            }
            Ok(n) => names.push(n),
            Err(_) => {
                return HttpError::BadRequest(format!("`{v}` is not a user name.")).into_response();
            }
        }
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        return HttpError::BadRequest("No user was selected.".into()).into_response();
    }
    if first(&form, "confirmed") != Some("yes") {
        let confirm = names.iter().map(|n| n.to_string()).collect();
        return inactive_page(&state, &c, since.as_deref(), None, confirm).await;
    }
    let actor = c.user.name.as_str();
    let mut ended = 0;
    for name in &names {
        match state.accounts.set_disabled(name, true, actor).await {
            Ok(ids) => {
                ended += ids.len();
                state.engine.forget(&ids);
                if let Err(e) = state.engine.refresh_user(name).await {
                    return HttpError::from(e).into_response();
                }
            }
            Err(e) => return HttpError::from(e).into_response(),
        }
    }
    let notice = format!(
        "Disabled {} user(s); ended {ended} session(s).",
        names.len()
    );
    inactive_page(&state, &c, since.as_deref(), Some(notice), Vec::new()).await
}
