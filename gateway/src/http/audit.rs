//! `GET /api/audit?limit=&before=`: who started, cancelled, re-ran, logged in and
//! reloaded, newest first, a page at a time; admins only.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use shipwatch_config::Role;
use shipwatch_protocol::api::AuditLog;

use super::{ApiError, HttpState, Principal};

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    limit: Option<u32>,
    /// Only records older than this id (the last `id` of the previous page).
    before: Option<i64>,
}

pub(super) async fn list(
    State(http): State<HttpState>,
    who: Principal,
    Query(q): Query<AuditQuery>,
) -> Result<Json<AuditLog>, ApiError> {
    who.at_least(Role::Admin)?;
    let audit = http
        .gateway
        .store
        .audit_page(q.limit.unwrap_or(100).min(1000), q.before)
        .await?;
    Ok(Json(AuditLog { audit }))
}
