//! `GET/POST /keys`, `DELETE /keys/{key_id}` and `GET /audit-log`: ops manage their
//! tenant's API keys (a key is shown once, at creation; an ops key cannot revoke the last
//! ops key) and read who did what.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{self, Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::guard;
use crate::state::AppState;
use crate::store::Role;
use crate::store::keys::{ApiKeyRecord, AuditEntry, Revocation};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_keys, create_key))
        .routes(routes!(revoke_key))
        .routes(routes!(audit_log))
}

/// An API key as listed: its prefix tells keys apart; the key itself is never shown again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub api_key_id: Uuid,
    /// `agent`, `viewer` or `ops`.
    pub role: String,
    /// The first characters of the key, e.g. `pb_live_Ab3x`.
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    /// Written at most once a minute per key.
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<&ApiKeyRecord> for ApiKeyView {
    fn from(k: &ApiKeyRecord) -> Self {
        Self {
            api_key_id: k.api_key_id,
            role: k.role.as_str().to_string(),
            key_prefix: k.key_prefix.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    /// `agent`, `viewer` or `ops`.
    pub role: String,
    /// A lifetime such as `90d`, `12h`, `30m` or `2w`; the key never expires without it.
    pub expires_in: Option<String>,
}

/// A new key: the only response that ever carries `api_key`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub api_key_id: Uuid,
    pub role: String,
    /// Shown once: store it now.
    pub api_key: String,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub audit_id: Uuid,
    /// The API key that acted; null when it was the command line.
    pub api_key_id: Option<Uuid>,
    /// e.g. `put service`, `resync`, `create key`, `revoke key`, `rotate secrets`.
    pub action: String,
    /// What was acted on: a request path or a key id.
    pub target: String,
    pub created_at: DateTime<Utc>,
}

impl From<&AuditEntry> for AuditEntryView {
    fn from(e: &AuditEntry) -> Self {
        Self {
            audit_id: e.audit_id,
            api_key_id: e.api_key_id,
            action: e.action.clone(),
            target: e.target.clone(),
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditLog {
    pub items: Vec<AuditEntryView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// At most this many entries, newest first (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// The tenant's API keys, revoked and expired ones included (ops).
#[utoipa::path(get, path = "/keys", tag = "keys",
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")
    ))]
async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ApiKeyList>, ApiError> {
    caller.require(Permission::Operate)?;
    let keys = state.db.keys().list_api_keys(caller.tenant_id).await?;
    Ok(axum::Json(ApiKeyList {
        items: keys.iter().map(ApiKeyView::from).collect(),
    }))
}

/// Creates an API key for the caller's tenant and shows it once (ops).
#[utoipa::path(post, path = "/keys", tag = "keys",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, body = CreatedKey),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    ))]
async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateKeyRequest>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Permission::Operate)?;
    let role: Role = request
        .role
        .parse()
        .map_err(|e: String| ApiError::validation("role", "invalid_role", e))?;
    let expires_at = request
        .expires_in
        .as_deref()
        .map(auth::parse_lifetime)
        .transpose()
        .map_err(|e| ApiError::validation("expires_in", "invalid_lifetime", e))?
        .map(|lifetime| Utc::now() + lifetime);
    let issued =
        auth::issue_expiring_api_key(state.store.as_ref(), caller.tenant_id, role, expires_at)
            .await?;
    guard::record(
        &state,
        &AuditEntry {
            audit_id: Uuid::now_v7(),
            tenant_id: caller.tenant_id,
            api_key_id: Some(caller.api_key_id),
            action: "create key".to_string(),
            target: format!("key {} ({})", issued.api_key_id, role.as_str()),
            created_at: Utc::now(),
        },
    )
    .await;
    use secrecy::ExposeSecret;
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedKey {
            api_key_id: issued.api_key_id,
            role: role.as_str().to_string(),
            api_key: issued.api_key.expose_secret().to_string(),
            expires_at,
        }),
    ))
}

/// Revokes one of the tenant's keys; it is refused everywhere within seconds. The last
/// usable ops key cannot be revoked through the API (409) (ops).
#[utoipa::path(delete, path = "/keys/{key_id}", tag = "keys",
    params(("key_id" = Uuid, Path, description = "The key's `api_key_id`")),
    responses(
        (status = 204, description = "Revoked (or it already was)"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")
    ))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path(key_id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    caller.require(Permission::Operate)?;
    let outcome = state
        .db
        .keys()
        .revoke_api_key(caller.tenant_id, key_id, Utc::now(), true)
        .await?;
    match outcome {
        Revocation::Revoked => {
            state.guard.forget(key_id);
            guard::record(
                &state,
                &AuditEntry {
                    audit_id: Uuid::now_v7(),
                    tenant_id: caller.tenant_id,
                    api_key_id: Some(caller.api_key_id),
                    action: "revoke key".to_string(),
                    target: format!("key {key_id}"),
                    created_at: Utc::now(),
                },
            )
            .await;
            Ok(StatusCode::NO_CONTENT)
        }
        Revocation::AlreadyRevoked => Ok(StatusCode::NO_CONTENT),
        Revocation::NotFound => Err(ApiError::NotFound { what: "API key" }),
        Revocation::LastOpsKey => Err(ApiError::Conflict {
            slug: "last-ops-key",
            detail: "This is the tenant's last usable ops key; create another ops key before revoking it.".to_string(),
        }),
    }
}

/// Who did what, newest first: every change made with an ops key, key creation and
/// revocation, and secret rotations by the command line (ops). Never holds a secret.
#[utoipa::path(get, path = "/audit-log", tag = "keys",
    params(AuditQuery),
    responses(
        (status = 200, body = AuditLog),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json")
    ))]
async fn audit_log(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditLog>, ApiError> {
    caller.require(Permission::Operate)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.db.keys().list_audit(caller.tenant_id, limit).await?;
    Ok(axum::Json(AuditLog {
        items: entries.iter().map(AuditEntryView::from).collect(),
    }))
}
