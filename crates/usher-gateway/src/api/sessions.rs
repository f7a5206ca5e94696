//! Session endpoints: list (and CSV), one, end one, end a user's, end by filter.

use super::{Admin, ApiError, json_body, query_pairs};
use crate::app::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde::Serialize;
use std::sync::Arc;
use usher_core::query::Limit;
use usher_core::{EndReason, SessionId, SessionInfo, SessionQuery, Timestamp, Username};
use usher_store::SessionSelector;

#[derive(Serialize)]
struct Page {
    total: u64,
    offset: u64,
    limit: u64,
    items: Vec<SessionInfo>,
}

fn parse_query(raw: Option<&str>, allow_all: bool) -> Result<SessionQuery, ApiError> {
    let pairs = query_pairs(raw);
    Ok(SessionQuery::parse(
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        allow_all,
    )?)
}

#[utoipa::path(get, path = "/sessions", tag = "sessions", params(super::doc::SessionListParams),
    responses((status = 200, description = "A page of live sessions", body = super::doc::SessionPage),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q = parse_query(raw.as_deref(), false)?;
    let (total, items) = state.engine.list(&q);
    let limit = match q.limit {
        Limit::Count(n) => u64::from(n),
        Limit::All => total,
    };
    Ok(Json(
        serde_json::to_value(Page {
            total,
            offset: q.offset,
            limit,
            items,
        })
        .unwrap_or_default(),
    ))
}

#[utoipa::path(get, path = "/sessions.csv", tag = "sessions", params(super::doc::SessionListParams),
    responses((status = 200, description = "Every matching live session as CSV", content_type = "text/csv", body = String),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn csv(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let mut q = parse_query(raw.as_deref(), true)?;
    let asked_limit = query_pairs(raw.as_deref())
        .iter()
        .any(|(k, _)| k == "limit");
    if !asked_limit {
        q.limit = Limit::All;
    }
    let (_, items) = state.engine.list(&q);
    let mut out = String::from(
        "id,user,type,ip,first_ip,client,user_agent,host,requests,created_at,last_access_at,expires_at\n",
    );
    for s in &items {
        let fields = [
            s.id.to_string(),
            s.user.as_ref().map(|u| u.to_string()).unwrap_or_default(),
            s.kind.as_str().to_owned(),
            s.ip.to_string(),
            s.first_ip.to_string(),
            s.client.clone(),
            s.user_agent.clone(),
            s.host.clone(),
            s.requests.to_string(),
            s.created_at.to_string(),
            s.last_access_at.to_string(),
            s.expires_at.to_string(),
        ];
        out.push_str(&usher_core::csv::line(&fields));
        out.push('\n');
    }
    let mut r = out.into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"usher-sessions.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[derive(Serialize)]
struct Ended {
    #[serde(flatten)]
    info: SessionInfo,
    ended_at: Option<Timestamp>,
    end_reason: Option<EndReason>,
    ended_by: Option<String>,
}

fn session_id(id: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(id).map_err(|e| ApiError::invalid("id", e.to_string()))
}

#[utoipa::path(get, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Public session id", pattern = "^[a-z2-7]{12}$")),
    responses((status = 200, description = "The session (ended ones carry ended_at, end_reason, ended_by)", body = usher_core::SessionInfo),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody)))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = session_id(&id)?;
    let policy = state.engine.policy();
    if let Some(live) = state.engine.session_info(&id) {
        return Ok(Json(serde_json::to_value(live).unwrap_or_default()));
    }
    let r = state
        .engine
        .store()
        .session_get(&id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no session {id}")))?;
    let info = SessionInfo::of_stored(&r, &policy);
    Ok(Json(
        serde_json::to_value(Ended {
            info,
            ended_at: r.ended_at,
            end_reason: r.end_reason,
            ended_by: r.ended_by,
        })
        .unwrap_or_default(),
    ))
}

#[utoipa::path(delete, path = "/sessions/{id}", tag = "sessions",
    params(("id" = String, Path, description = "Public session id", pattern = "^[a-z2-7]{12}$")),
    responses((status = 204, description = "Ended (killed)"),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn end_one(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = session_id(&id)?;
    let ended = state
        .engine
        .end(
            SessionSelector::Ids(vec![id]),
            EndReason::Killed,
            admin.name(),
        )
        .await?;
    if ended.is_empty() {
        return Err(ApiError::not_found(format!("no live session {id}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/users/{name}/sessions", tag = "sessions",
    params(("name" = String, Path, description = "User name", pattern = "^[A-Za-z0-9._@+-]{1,64}$")),
    responses((status = 200, description = "How many sessions were ended", body = super::doc::EndedCount),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn end_of_user(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let name = Username::parse(&name).map_err(|e| ApiError::invalid("name", e.to_string()))?;
    if state.engine.store().user_get(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no user {name}")));
    }
    let ended = state
        .engine
        .end(SessionSelector::User(name), EndReason::Killed, admin.name())
        .await?;
    Ok(Json(serde_json::json!({ "ended": ended.len() })))
}

/// Filters of `POST /sessions/end`: the list's filters, at least one.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct EndFilter {
    #[serde(default, deserialize_with = "super::present")]
    #[schema(pattern = "^[A-Za-z0-9._@+-]{1,64}$", nullable = false)]
    user: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(nullable = false)]
    anonymous: Option<bool>,
    #[serde(rename = "type", default, deserialize_with = "super::present")]
    #[schema(pattern = "^(web|api)$", nullable = false)]
    kind: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(/(3[0-2]|[12]?[0-9]))?$",
        nullable = false
    )]
    ip: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(min_length = 1, max_length = 200, nullable = false)]
    q: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(pattern = "^([0-9]{1,6}(ms|s|m|h|d)){1,4}$", nullable = false)]
    active_within: Option<String>,
}

/// `POST /sessions/end`: the body holds the same filters as the list's query.
#[utoipa::path(post, path = "/sessions/end", tag = "sessions",
    request_body(content = EndFilter, description = "Filters as in the list; at least one"),
    responses((status = 200, description = "How many sessions were ended", body = super::doc::EndedCount),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 415, description = "the body is not JSON", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn end_matching(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    let filter: EndFilter = json_body(&headers, &body)?;
    let mut pairs: Vec<(&str, String)> = Vec::new();
    let mut put = |k: &'static str, v: Option<String>| {
        if let Some(v) = v {
            pairs.push((k, v));
        }
    };
    put("user", filter.user);
    put("anonymous", filter.anonymous.map(|b| b.to_string()));
    put("type", filter.kind);
    put("ip", filter.ip);
    put("q", filter.q);
    put("active_within", filter.active_within);
    let mut q = SessionQuery::parse(pairs.iter().map(|(k, v)| (*k, v.as_str())), true)?;
    if !q.has_filter() {
        return Err(ApiError::bad_request(
            "empty_filter",
            "an empty filter would end every session; name at least one of user, anonymous, type, ip, q, active_within",
        ));
    }
    q.limit = Limit::All;
    let (_, matched) = state.engine.list(&q);
    let ids: Vec<SessionId> = matched.iter().map(|s| s.id).collect();
    if ids.is_empty() {
        return Ok(Json(serde_json::json!({ "ended": 0 })));
    }
    let ended = state
        .engine
        .end(SessionSelector::Ids(ids), EndReason::Killed, admin.name())
        .await?;
    Ok(Json(serde_json::json!({ "ended": ended.len() })))
}
