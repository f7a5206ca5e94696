//! History and the inactive-users report.

use super::{Admin, ApiError, query_pairs};
use crate::app::AppState;
use axum::Json;
use axum::extract::{RawQuery, State};
use std::net::IpAddr;
use std::sync::Arc;
use usher_core::{EventKind, Timestamp, Username};
use usher_store::EventQuery;

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
    let mut q = EventQuery {
        limit: 100,
        ..Default::default()
    };
    let mut at = None;
    for (k, v) in query_pairs(raw.as_deref()) {
        if v.is_empty() {
            return Err(ApiError::invalid(
                &k,
                "empty; leave the parameter out instead",
            ));
        }
        match k.as_str() {
            "user" if v.chars().count() > 64 => {
                return Err(ApiError::invalid("user", "at most 64 characters"));
            }
            "user" => q.user = Some(v),
            "event" => {
                q.kind = Some(EventKind::parse(&v).ok_or_else(|| {
                    ApiError::invalid("event", "one of login, login_failed, logout, expired, killed, evicted, user_created, user_disabled, user_enabled, user_removed, password_changed")
                })?)
            }
            "ip" => q.ip = Some(v.parse::<IpAddr>().map_err(|_| ApiError::invalid("ip", "an IP address"))?),
            "at" => at = Some(parse_time("at", &v)?),
            "from" => q.from = Some(parse_time("from", &v)?),
            "to" => q.to = Some(parse_time("to", &v)?),
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
            .map(|r| {
                usher_core::SessionInfo::from_record(
                    r,
                    r.ended_at.unwrap_or_else(|| {
                        state
                            .engine
                            .policy()
                            .of(r.user.is_none())
                            .expires_at(r.created_at, r.last_access_at)
                    }),
                )
            })
            .collect();
        return Ok(Json(
            serde_json::json!({ "items": [], "next_cursor": null, "at": at, "sessions": sessions }),
        ));
    }
    let items = state.engine.store().events(&q).await?;
    let next = (items.len() == q.limit as usize)
        .then(|| items.last().map(|e| e.id))
        .flatten();
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": next }),
    ))
}

/// Users whose last login is before `since` (default: 1 January this year, UTC), or
/// who never logged in.
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
        None => {
            let now = state
                .engine
                .clock()
                .now()
                .to_zoned_datetime(jiff::tz::TimeZone::UTC);
            jiff::civil::date(now.year(), 1, 1)
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp())
                .map_err(|_| ApiError::invalid("since", "could not work out 1 January"))?
        }
    };
    let users = state.engine.store().user_list().await?;
    let items: Vec<serde_json::Value> = users
        .into_iter()
        .filter(|u| u.last_login_at.is_none_or(|t| t < since))
        .map(|u| {
            serde_json::json!({
                "name": u.name,
                "display_name": u.display_name,
                "disabled": u.disabled,
                "created_at": u.created_at,
                "last_login_at": u.last_login_at,
            })
        })
        .collect();
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
