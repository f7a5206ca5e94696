//! History and the inactive-users report.

use super::{Admin, ApiError, query_pairs};
use crate::app::AppState;
use axum::Json;
use axum::extract::{RawQuery, State};
use std::net::IpAddr;
use std::sync::Arc;
use usher_core::{EventKind, Timestamp, Username};
use usher_store::EventQuery;

/// 1 January of `now`'s year, midnight UTC: the inactive report's default.
pub(crate) fn start_of_year(now: Timestamp) -> Timestamp {
    let year = now.to_zoned_datetime(jiff::tz::TimeZone::UTC).year();
    jiff::civil::date(year, 1, 1)
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp())
        .unwrap_or(now)
}

/// A time as `2026-11-02T10:00:00Z` or a day as `2026-11-02` (midnight UTC).
pub fn parse_time(param: &str, v: &str) -> Result<Timestamp, ApiError> {
    v.parse::<Timestamp>()
        .or_else(|_| {
            v.parse::<jiff::civil::Date>().and_then(|d| {
                d.to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .map(|z| z.timestamp())
            })
        })
        .map_err(|_| {
            ApiError::invalid(
                param,
                "a date (2026-11-02) or an RFC 3339 time (2026-11-02T10:00:00Z)",
            )
        })
}

/// The history filters of a query string, shared by the API and the console.
pub(crate) struct HistoryQuery {
    pub events: EventQuery,
    /// "Where was everyone (or `user`) at this instant".
    pub at: Option<Timestamp>,
}

/// `user`, `event`, `ip` (address or CIDR), `from`, `to`, `limit`, `cursor`, `at`.
/// Empty values are an error for the API and skipped for the console's forms.
pub(crate) fn parse_history(
    pairs: &[(String, String)],
    skip_empty: bool,
) -> Result<HistoryQuery, ApiError> {
    let mut q = EventQuery {
        limit: 100,
        ..Default::default()
    };
    let mut at = None;
    for (k, v) in pairs {
        let v = v.trim();
        if v.is_empty() {
            if skip_empty {
                continue;
            }
            return Err(ApiError::invalid(
                k,
                "empty; leave the parameter out instead",
            ));
        }
        match k.as_str() {
            "user" if v.chars().count() > 64 => {
                return Err(ApiError::invalid("user", "at most 64 characters"));
            }
            "user" => q.user = Some(v.to_owned()),
            "event" => {
                q.kind = Some(EventKind::parse(v).ok_or_else(|| {
                    ApiError::invalid("event", "one of login, login_failed, logout, expired, killed, evicted, user_created, user_disabled, user_enabled, user_removed, password_changed")
                })?)
            }
            "ip" => {
                q.ip = Some(
                    v.parse::<ipnet::IpNet>()
                        .or_else(|_| v.parse::<IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| ApiError::invalid("ip", "an IP address or a CIDR range such as 10.0.0.0/8"))?,
                )
            }
            "at" => at = Some(parse_time("at", v)?),
            "from" => q.from = Some(parse_time("from", v)?),
            "to" => q.to = Some(parse_time("to", v)?),
            "limit" => {
                q.limit = match v.parse::<u32>() {
                    Ok(n) if (1..=1000).contains(&n) => n,
                    _ => return Err(ApiError::invalid("limit", "a number from 1 to 1000")),
                }
            }
            "cursor" => {
                q.before = Some(v.parse::<i64>().ok().filter(|c| *c > 0).ok_or_else(|| {
                    ApiError::invalid("cursor", "the next_cursor of the previous page")
                })?)
            }
            other => {
                return Err(ApiError::invalid(other, "unknown parameter; use user, event, ip, at, from, to, limit, cursor"));
            }
        }
    }
    Ok(HistoryQuery { events: q, at })
}

#[utoipa::path(get, path = "/history", tag = "history", params(super::doc::HistoryParams),
    responses((status = 200, description = "Events, newest first", body = super::doc::HistoryPage),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let pairs = query_pairs(raw.as_deref());
    let HistoryQuery { events: q, at } = parse_history(&pairs, false)?;
    // "Where was this user at T": the sessions live at that instant, with their IPs.
    if let Some(at) = at {
        // Without `user`, everyone's; a name that cannot be a user had no sessions.
        let records = match q.user.as_deref().map(Username::parse) {
            None => state.engine.store().sessions_at(None, at).await?,
            Some(Ok(user)) => state.engine.store().sessions_at(Some(&user), at).await?,
            Some(Err(_)) => Vec::new(),
        };
        let sessions: Vec<usher_core::SessionInfo> = records
            .iter()
            .map(|r| usher_core::SessionInfo::of_stored(r, &state.engine.policy()))
            .collect();
        return Ok(Json(
            serde_json::json!({ "items": [], "next_cursor": null, "at": at, "sessions": sessions }),
        ));
    }
    let page = state.engine.store().events(&q).await?;
    Ok(Json(
        serde_json::json!({ "items": page.items, "next_cursor": page.next_cursor }),
    ))
}

/// Users whose last login is before `since` (default: 1 January this year, UTC), or
/// who never logged in, and who made no request since then either.
#[utoipa::path(get, path = "/reports/inactive", tag = "history", params(super::doc::InactiveParams),
    responses((status = 200, description = "Users without a login since the date", body = super::doc::InactiveReport),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn inactive(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut since = None;
    for (k, v) in query_pairs(raw.as_deref()) {
        match k.as_str() {
            "since" => since = Some(parse_time("since", &v)?),
            other => return Err(ApiError::invalid(other, "unknown parameter; use since")),
        }
    }
    let since = match since {
        Some(s) => s,
        None => start_of_year(state.engine.clock().now()),
    };
    let items = state.engine.store().inactive_users(since).await?;
    Ok(Json(serde_json::json!({ "since": since, "items": items })))
}

#[utoipa::path(get, path = "/clients", tag = "history",
    responses((status = 200, description = "Clients seen without a cookie or credential, most requests first", body = Vec<usher_engine::clients::CookielessClient>),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
/// `GET /clients`: cookieless clients on this node, per (IP, User-Agent).
pub async fn clients(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Json<Vec<usher_engine::clients::CookielessClient>> {
    Json(state.engine.cookieless().list())
}
