//! `GET /api/audit`: who started and cancelled what, newest first; admins only.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use shipwatch_config::Role;
use shipwatch_protocol::api::AuditLog;

use super::{ApiError, HttpState, Principal};

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    limit: Option<u32>,
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
        .audit_log(q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(Json(AuditLog { audit }))
}
