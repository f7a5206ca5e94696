//! The OpenAPI 3 document, derived from the handlers' annotations and the wire types,
//! served at `/usher/api/v1/openapi.json`. Query parameters are parsed by the shared
//! query model; the structs here describe them for clients.
#![allow(dead_code)] // fields exist for the schema only

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code: invalid_parameter, invalid_body, unauthenticated, forbidden,
    /// not_found, conflict, invalid, unsupported_media_type, unavailable, internal.
    code: String,
    message: String,
    /// The parameter or field that is wrong, when one is.
    param: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct SessionPage {
    total: u64,
    offset: u64,
    limit: u64,
    items: Vec<usher_core::SessionInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct EndedCount {
    ended: u64,
}

#[derive(Serialize, ToSchema)]
pub struct HistoryPage {
    items: Vec<usher_core::Event>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    next_cursor: Option<i64>,
    /// With `at`: the instant asked about.
    #[schema(format = DateTime)]
    at: Option<String>,
    /// With `at`: the user's sessions that were live at that instant.
    sessions: Option<Vec<usher_core::SessionInfo>>,
}

#[derive(Serialize, ToSchema)]
pub struct InactiveReport {
    #[schema(format = DateTime)]
    since: String,
    items: Vec<usher_core::InactiveUser>,
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    user: String,
    groups: Vec<String>,
    session: Option<String>,
    /// Send as X-CSRF-Token with a session cookie on unsafe methods.
    csrf_token: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TokenCreated {
    id: String,
    name: String,
    owner: String,
    #[schema(format = DateTime)]
    created_at: String,
    /// The secret: shown only in this answer.
    token: String,
}

/// Filters, sort and page of a session list (the console and the CLI take the same).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SessionListParams {
    /// A user name.
    #[param(pattern = "^[A-Za-z0-9._@+-]{1,64}$")]
    user: Option<String>,
    /// true: only anonymous sessions; false: only signed-in ones.
    anonymous: Option<bool>,
    /// web or api.
    #[param(rename = "type", pattern = "^(web|api)$")]
    kind: Option<String>,
    /// An IP address or CIDR range, e.g. 10.0.0.0/8 (IPv6 works too).
    #[param(
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(/(3[0-2]|[12]?[0-9]))?$"
    )]
    ip: Option<String>,
    /// Case-insensitive text in the user, IP, client or session id (at most 200 characters).
    #[param(min_length = 1, max_length = 200)]
    q: Option<String>,
    /// Only sessions used within this long, e.g. 15m, 2h, 1d.
    #[param(pattern = "^([0-9]{1,6}(ms|s|m|h|d)){1,4}$")]
    active_within: Option<String>,
    /// id, user, type, ip, client, requests, last_access (default), created.
    #[param(pattern = "^(id|user|type|ip|client|requests|last_access|created)$")]
    sort: Option<String>,
    /// asc or desc (default).
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
    /// 1 to 10000 (default 50).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<u32>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// A user name, or the name tried in a failed login.
    #[param(min_length = 1, max_length = 64)]
    user: Option<String>,
    /// login, login_failed, logout, expired, killed, evicted, user_created,
    /// user_disabled, user_enabled, user_removed, password_changed.
    event: Option<usher_core::EventKind>,
    /// An IP address, or a CIDR range (10.0.0.0/8).
    #[param(
        pattern = r"^((25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(/([0-9]|[12][0-9]|3[0-2]))?$"
    )]
    ip: Option<String>,
    /// From this date (2026-01-01) or RFC 3339 time.
    #[param(format = DateTime)]
    from: Option<String>,
    /// Before this date or time.
    #[param(format = DateTime)]
    to: Option<String>,
    /// The sessions live at this instant (of `user`, or everyone's), answered in
    /// `sessions` instead of events.
    #[param(format = DateTime)]
    at: Option<String>,
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// The next_cursor of the previous page.
    #[param(minimum = 1)]
    cursor: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InactiveParams {
    /// A date (2026-01-01) or RFC 3339 time; default 1 January of this year.
    #[param(format = DateTime)]
    since: Option<String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Usher API", description = "Sessions, users, history and API tokens of an Usher server."),
    servers((url = "/usher/api/v1")),
    security(("bearer" = [])),
    modifiers(&Security),
    paths(
        super::auth::me,
        super::sessions::list, super::sessions::csv, super::sessions::get_one,
        super::sessions::end_one, super::sessions::end_of_user, super::sessions::end_matching,
        super::users::list, super::users::create, super::users::get_one, super::users::update,
        super::users::remove,
        super::history::list, super::history::inactive, super::history::clients,
        super::tokens::list, super::tokens::create, super::tokens::revoke,
    ),
    components(schemas(super::sessions::EndFilter, ErrorBody, ErrorDetail, SessionPage, EndedCount, HistoryPage, InactiveReport, Me, TokenCreated))
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ApiDoc::openapi())
}
