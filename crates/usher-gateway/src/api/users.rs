//! User endpoints: list, create, read, change, remove.

use super::{Admin, ApiError, json_body};
use crate::app::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use usher_core::{Group, Timestamp, User, Username};

#[derive(Serialize, utoipa::ToSchema)]
pub struct UserOut {
    #[schema(value_type = String)]
    name: Username,
    display_name: String,
    email: String,
    #[schema(value_type = Vec<String>)]
    groups: Vec<Group>,
    disabled: bool,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    last_login_at: Option<Timestamp>,
    /// Live sessions on this node's index.
    sessions: usize,
}

fn out(state: &AppState, u: User) -> UserOut {
    let sessions = state.engine.sessions_of(&u.name).len();
    UserOut {
        name: u.name,
        display_name: u.display_name,
        email: u.email,
        groups: u.groups,
        disabled: u.disabled,
        created_at: u.created_at,
        last_login_at: u.last_login_at,
        sessions,
    }
}

fn name(s: &str) -> Result<Username, ApiError> {
    Username::parse(s).map_err(|e| ApiError::invalid("name", e.to_string()))
}

fn groups(list: &[String]) -> Result<Vec<Group>, ApiError> {
    let mut out: Vec<Group> = list
        .iter()
        .map(|g| Group::parse(g).map_err(|e| ApiError::invalid("groups", e.to_string())))
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn text(field: &str, s: &str) -> Result<String, ApiError> {
    if s.chars().count() > 200 || s.chars().any(|c| c.is_ascii_control()) {
        return Err(ApiError::invalid(
            field,
            "at most 200 characters, no control characters",
        ));
    }
    Ok(s.to_owned())
}

#[utoipa::path(get, path = "/users", tag = "users",
    responses((status = 200, description = "Every user", body = Vec<UserOut>),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<Json<Vec<UserOut>>, ApiError> {
    let users = state.engine.store().user_list().await?;
    Ok(Json(users.into_iter().map(|u| out(&state, u)).collect()))
}

#[utoipa::path(get, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name", pattern = "^[A-Za-z0-9._@+-]{1,64}$")),
    responses((status = 200, description = "The user", body = UserOut),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody)))]
pub async fn get_one(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    Path(n): Path<String>,
) -> Result<Json<UserOut>, ApiError> {
    let user = state.accounts.get(&name(&n)?).await?;
    Ok(Json(out(&state, user)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(pattern = "^[A-Za-z0-9._@+-]{1,64}$")]
    name: String,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(min_length = 8, max_length = 256, nullable = false)]
    password: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f]*$", nullable = false)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f]*$", nullable = false)]
    email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Vec<GroupName>)]
    groups: Vec<String>,
    #[serde(default)]
    admin: bool,
}

#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, description = "Created", body = UserOut),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 409, description = "conflicts with what exists", body = super::doc::ErrorBody),
        (status = 415, description = "the body is not JSON", body = super::doc::ErrorBody),
        (status = 422, description = "a value is not acceptable", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let new: NewUser = json_body(&headers, &body)?;
    // Everything is checked before anything is written.
    let n = name(&new.name)?;
    let extra = groups(&new.groups)?;
    let display_name = new
        .display_name
        .as_deref()
        .map(|d| text("display_name", d))
        .transpose()?;
    let email = new.email.as_deref().map(|e| text("email", e)).transpose()?;
    if let Some(pw) = &new.password {
        usher_engine::PasswordHasher::check_policy(pw)?;
    }
    let mut user = state
        .accounts
        .create(n, new.password.as_deref(), new.admin, admin.name())
        .await?;
    if display_name.is_some() || email.is_some() || !extra.is_empty() {
        if let Some(d) = display_name {
            user.display_name = d;
        }
        if let Some(e) = email {
            user.email = e;
        }
        user.groups.extend(extra);
        user.groups.sort();
        user.groups.dedup();
        state
            .engine
            .store()
            .user_update(&user, admin.name(), state.engine.clock().now())
            .await?;
    }
    Ok((StatusCode::CREATED, Json(out(&state, user))))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Change {
    #[serde(default, deserialize_with = "super::present")]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f]*$", nullable = false)]
    display_name: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f]*$", nullable = false)]
    email: Option<String>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(value_type = Option<Vec<GroupName>>, nullable = false)]
    groups: Option<Vec<String>>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(nullable = false)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "super::present")]
    #[schema(min_length = 8, max_length = 256, nullable = false)]
    password: Option<String>,
}

/// A group name: lowercase letters, digits, `.`, `_`, `-`.
#[derive(utoipa::ToSchema)]
#[schema(pattern = "^[a-z0-9._-]{1,64}$")]
pub struct GroupName(#[allow(dead_code)] String);

#[utoipa::path(patch, path = "/users/{name}", tag = "users", request_body = Change,
    params(("name" = String, Path, description = "User name", pattern = "^[A-Za-z0-9._@+-]{1,64}$")),
    responses((status = 200, description = "The changed user", body = UserOut),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody),
        (status = 409, description = "conflicts with what exists", body = super::doc::ErrorBody),
        (status = 415, description = "the body is not JSON", body = super::doc::ErrorBody),
        (status = 422, description = "a value is not acceptable", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(n): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<UserOut>, ApiError> {
    let n = name(&n)?;
    let change: Change = json_body(&headers, &body)?;
    let mut user = state.accounts.get(&n).await?;
    let locks_out = change.disabled == Some(true)
        || change
            .groups
            .as_ref()
            .is_some_and(|g| !g.iter().any(|g| g == usher_core::user::ADMINS));
    if n.as_str() == admin.name() && locks_out {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot disable yourself or leave the admins group; ask another administrator",
        ));
    }
    // Everything is checked before anything is written.
    if let Some(pw) = &change.password {
        usher_engine::PasswordHasher::check_policy(pw)?;
    }
    let profile =
        change.display_name.is_some() || change.email.is_some() || change.groups.is_some();
    if let Some(d) = &change.display_name {
        user.display_name = text("display_name", d)?;
    }
    if let Some(e) = &change.email {
        user.email = text("email", e)?;
    }
    if let Some(g) = &change.groups {
        user.groups = groups(g)?;
    }
    if profile {
        state
            .engine
            .store()
            .user_update(&user, admin.name(), state.engine.clock().now())
            .await?;
        state.engine.refresh_user(&n).await?;
    }
    if let Some(pw) = &change.password {
        state.accounts.set_password(&n, pw, admin.name()).await?;
    }
    if let Some(disabled) = change.disabled {
        let ended = state
            .accounts
            .set_disabled(&n, disabled, admin.name())
            .await?;
        state.engine.forget(&ended);
        state.engine.refresh_user(&n).await?;
    }
    let user = state.accounts.get(&n).await?;
    Ok(Json(out(&state, user)))
}

#[utoipa::path(delete, path = "/users/{name}", tag = "users",
    params(("name" = String, Path, description = "User name", pattern = "^[A-Za-z0-9._@+-]{1,64}$")),
    responses((status = 204, description = "Removed; their sessions ended"),
        (status = 400, description = "a parameter or the body is wrong", body = super::doc::ErrorBody),
        (status = 401, description = "no or a bad credential", body = super::doc::ErrorBody),
        (status = 403, description = "not an admin, or a cookie without X-CSRF-Token", body = super::doc::ErrorBody),
        (status = 404, description = "no such thing", body = super::doc::ErrorBody),
        (status = 409, description = "conflicts with what exists", body = super::doc::ErrorBody),
        (status = 503, description = "the store is unavailable", body = super::doc::ErrorBody)))]
pub async fn remove(
    State(state): State<Arc<AppState>>,
    admin: Admin,
    Path(n): Path<String>,
) -> Result<StatusCode, ApiError> {
    let n = name(&n)?;
    if n.as_str() == admin.name() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "you cannot remove yourself; ask another administrator",
        ));
    }
    let ended = state.accounts.remove(&n, admin.name()).await?;
    state.engine.forget(&ended);
    state.engine.refresh_user(&n).await?;
    Ok(StatusCode::NO_CONTENT)
}
