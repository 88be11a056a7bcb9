//! HTTP routes of event maps (ops only): store a map after Cal.com confirms it, read one or
//! all, and the audit. Handlers only move data; the decisions are in the domain crate.

use axum::extract::State;
use chrono::{DateTime, Utc};
use phasebook_domain::{EventTypeId, SegmentKey, ServiceId, StaffId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::event_maps::{self as maps, Audit, EventMapError};
use crate::extract::{Json, Path, path_id};
use crate::state::AppState;
use crate::store::event_maps::EventMap;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_event_maps))
        .routes(routes!(audit_event_maps))
        .routes(routes!(put_event_map, get_event_map))
}

/// Body of `PUT /event-maps/{service_id}/{segment_key}/{staff_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutEventMap {
    /// The Cal.com event type to use: an individual type, a managed parent (its child for
    /// this staff member is resolved), or a round-robin/collective type with them as host.
    #[schema(minimum = 1)]
    pub event_type_id: i64,
}

/// A stored event map.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventMapBody {
    pub service_id: String,
    pub segment_key: String,
    pub staff_id: String,
    /// The event type that was configured.
    pub event_type_id: i64,
    /// The event type bookings are made on (the host's child for a managed parent).
    pub bookable_event_type_id: i64,
    /// How the bookable id was derived: `individual`, `managed_parent_child`,
    /// `managed_child`, `round_robin_host`, `collective_host` or `team_host`.
    pub resolution: String,
    /// When Cal.com last confirmed the map.
    pub checked_at: DateTime<Utc>,
    /// Set when the segment's length or the staff member's Cal.com user changed after
    /// `checked_at`: why the map must be checked again (PUT it again). Bookings on it are
    /// refused with `segment-map-unverified` until then.
    pub unverified_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<EventMap> for EventMapBody {
    fn from(m: EventMap) -> Self {
        Self {
            service_id: m.service_id.to_string(),
            segment_key: m.segment_key.to_string(),
            staff_id: m.staff_id.to_string(),
            event_type_id: m.event_type_id.0,
            bookable_event_type_id: m.bookable_event_type_id.0,
            resolution: m.resolution,
            checked_at: m.checked_at,
            unverified_reason: m.unverified_reason,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventMapList {
    pub items: Vec<EventMapBody>,
}

/// Ids in the path that cannot be valid name nothing that exists: a 404.
fn parse_path(
    service_id: &str,
    segment_key: &str,
    staff_id: &str,
) -> Result<(ServiceId, SegmentKey, StaffId), ApiError> {
    let service = path_id("service_id", service_id, ServiceId::parse)?;
    let segment = path_id("segment_key", segment_key, SegmentKey::parse)?;
    let staff = path_id("staff_id", staff_id, StaffId::parse)?;
    Ok((service, segment, staff))
}

/// Store an event map after Cal.com confirms it is bookable for the staff member.
#[utoipa::path(
    put,
    path = "/event-maps/{service_id}/{segment_key}/{staff_id}",
    tag = "event maps",
    params(
        ("service_id" = String, Path),
        ("segment_key" = String, Path),
        ("staff_id" = String, Path),
    ),
    request_body = PutEventMap,
    responses(
        (status = 200, description = "Stored: bookable for this staff member", body = EventMapBody),
        (status = 401, description = "`unauthorized`: no valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: only ops keys may map event types", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such service, segment or staff member for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not stored, and nothing else changed. `detail` says what is wrong, `fix` how to fix it; \
`type` (and `code`) is one of: \
`event-type-not-found` (Cal.com has no such event type that the tenant's key can read); \
`event-type-length-mismatch` (the event type's length differs from the segment's duration; both are named); \
`managed-parent-without-child` (a managed parent with no child for this staff member's Cal.com user; names the parent and the user, and both fixes: assign the host through Cal.com's team event-type endpoints or run `phasebook provision`, or map an individual event type; when Cal.com lists the user as a host but no child turns up, the fix is the staff member's `calcom_username`); \
`host-not-assigned` (a round-robin or collective team event type that does not list the staff member as host); \
`event-type-owned-by-another-user` (a personal event type or managed child of someone else); \
`validation` (`event_type_id` is not a positive id)", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`calcom-failed`: Cal.com could not be reached, did not answer in time, or refused the tenant's key; `code` names what happened", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn put_event_map(
    State(state): State<AppState>,
    caller: Caller,
    Path((service_id, segment_key, staff_id)): Path<(String, String, String)>,
    Json(body): Json<PutEventMap>,
) -> Result<axum::Json<EventMapBody>, ApiError> {
    caller.require(Permission::Operate)?;
    let (service_id, segment_key, staff_id) = parse_path(&service_id, &segment_key, &staff_id)?;
    if body.event_type_id <= 0 {
        return Err(ApiError::validation(
            "event_type_id",
            "invalid_event_type_id",
            "event_type_id must be a positive Cal.com event type id",
        ));
    }
    let store = state.db.event_maps();
    let subject = maps::load_subject(
        store,
        caller.tenant_id,
        &service_id,
        &segment_key,
        &staff_id,
    )
    .await?;
    let tenant = maps::tenant_calcom(store, caller.tenant_id).await?;
    let client = maps::shared_client_for(&tenant, state.sync.budgets(), false)?;
    let map = maps::put_event_map(
        store,
        &client,
        caller.tenant_id,
        tenant.team_id,
        &subject,
        EventTypeId(body.event_type_id),
    )
    .await?;
    Ok(axum::Json(map.into()))
}

/// Read one event map.
#[utoipa::path(
    get,
    path = "/event-maps/{service_id}/{segment_key}/{staff_id}",
    tag = "event maps",
    params(
        ("service_id" = String, Path),
        ("segment_key" = String, Path),
        ("staff_id" = String, Path),
    ),
    responses(
        (status = 200, description = "The configured id, the bookable id, how it was resolved and when Cal.com last confirmed it", body = EventMapBody),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: ops keys only", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not-found`: no such event map for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn get_event_map(
    State(state): State<AppState>,
    caller: Caller,
    Path((service_id, segment_key, staff_id)): Path<(String, String, String)>,
) -> Result<axum::Json<EventMapBody>, ApiError> {
    caller.require(Permission::Operate)?;
    let (service_id, segment_key, staff_id) = parse_path(&service_id, &segment_key, &staff_id)?;
    let map = state
        .db
        .event_maps()
        .get_event_map(caller.tenant_id, &service_id, &segment_key, &staff_id)
        .await?
        .ok_or(ApiError::NotFound { what: "event map" })?;
    Ok(axum::Json(map.into()))
}

/// List the tenant's event maps.
#[utoipa::path(
    get,
    path = "/event-maps",
    tag = "event maps",
    responses(
        (status = 200, body = EventMapList),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: ops keys only", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn list_event_maps(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<EventMapList>, ApiError> {
    caller.require(Permission::Operate)?;
    let maps = state
        .db
        .event_maps()
        .list_event_maps(caller.tenant_id)
        .await?;
    Ok(axum::Json(EventMapList {
        items: maps.into_iter().map(EventMapBody::from).collect(),
    }))
}

/// Every service × segment × staff member that performs it, with a verdict and the fix.
/// Staff "perform" a service when they have at least one map for it; for a service with
/// no maps at all every staff member is listed.
#[utoipa::path(
    get,
    path = "/event-maps/audit",
    tag = "event maps",
    responses(
        (status = 200, description = "The audit; `ok` is false when anything needs fixing. A map Cal.com could not be asked about is an `unverified` warning, not an error response", body = Audit),
        (status = 401, description = "`unauthorized`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: ops keys only", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`calcom-failed`: the tenant's Cal.com settings cannot be used (e.g. an invalid base URL)", body = Problem, content_type = "application/problem+json"),
    ),
)]
async fn audit_event_maps(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Audit>, ApiError> {
    caller.require(Permission::Operate)?;
    let store = state.db.event_maps();
    let tenant = maps::tenant_calcom(store, caller.tenant_id).await?;
    let client = maps::shared_client_for(&tenant, state.sync.budgets(), false)?;
    Ok(axum::Json(
        maps::audit(store, &client, caller.tenant_id).await?,
    ))
}

impl From<EventMapError> for ApiError {
    fn from(err: EventMapError) -> Self {
        match err {
            EventMapError::UnknownSubject { what, .. } => ApiError::NotFound { what },
            EventMapError::Refused(refusal) => ApiError::Refused {
                slug: refusal.code(),
                title: refusal.title(),
                detail: refusal.detail(),
                fix: refusal.fix(),
            },
            EventMapError::NoTeam => ApiError::Refused {
                slug: "no-calcom-team",
                title: "Tenant has no Cal.com team",
                detail: EventMapError::NoTeam.to_string(),
                fix: "Set the tenant's Cal.com team id.".to_string(),
            },
            EventMapError::Calcom(e) => ApiError::Calcom {
                kind: e.kind(),
                detail: e.message(),
            },
            EventMapError::Store(e) => e.into(),
            EventMapError::Output(e) => ApiError::Internal(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use phasebook_domain::resolution::Refusal;

    /// Every refusal `PUT /event-maps/…` can answer is named in the published document.
    #[test]
    fn every_refusal_type_is_documented() {
        let doc: serde_json::Value =
            serde_json::from_str(&crate::routes::openapi_json()).expect("openapi json");
        let put = &doc["paths"]["/event-maps/{service_id}/{segment_key}/{staff_id}"]["put"];
        let described = put["responses"]["422"]["description"]
            .as_str()
            .unwrap_or_default();
        for code in Refusal::CODES {
            assert!(
                described.contains(&format!("`{code}`")),
                "{code} is undocumented"
            );
        }
        let gateway = put["responses"]["502"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(gateway.contains("`calcom-failed`"));
    }
}
