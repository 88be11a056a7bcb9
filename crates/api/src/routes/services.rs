//! `PUT/GET /services/{service_id}` and `GET /services`: the salon's services and their
//! ordered, staffed segments.

use axum::extract::State;
use chrono::{DateTime, SubsecRound, Utc};
use phasebook_domain::service_change::{ServiceChange, service_change};
use phasebook_domain::{SegmentKey, SegmentSpec, Service, ServiceId, StaffId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, path_id};
use crate::state::AppState;
use crate::store::StoredService;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_service, get_service))
        .routes(routes!(list_services))
}

/// A service definition: its segments in order.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceRequest {
    pub name: String,
    #[schema(min_items = 1, max_items = 10)]
    pub segments: Vec<SegmentRequest>,
}

/// One segment; every segment is staffed, the gap after it is not.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentRequest {
    /// Short key, unique within the service (`A`, `B`, …).
    #[schema(min_length = 1, max_length = 16, pattern = "^[A-Za-z0-9._-]+$")]
    pub key: String,
    pub name: String,
    /// 5 to 600.
    #[schema(minimum = 5, maximum = 600)]
    pub duration_minutes: u32,
    /// Processing time after this segment (0 for the last one).
    #[serde(default)]
    #[schema(maximum = 1440)]
    pub gap_after_minutes: u32,
    /// Optional upper bound of the gap; availability search may use the slack.
    #[serde(default)]
    #[schema(maximum = 1440)]
    pub gap_after_max_minutes: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub service_id: String,
    pub name: String,
    pub segments: Vec<SegmentView>,
    /// Length of an appointment with every gap at its minimum.
    pub total_minutes: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentView {
    pub key: String,
    pub name: String,
    pub duration_minutes: u32,
    pub gap_after_minutes: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gap_after_max_minutes: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    pub items: Vec<ServiceView>,
}

impl From<&StoredService> for ServiceView {
    fn from(s: &StoredService) -> Self {
        Self {
            service_id: s.service_id.to_string(),
            name: s.service.name().to_string(),
            total_minutes: s.service.total_minutes(),
            segments: s
                .service
                .segments()
                .iter()
                .map(|seg| SegmentView {
                    key: seg.key.to_string(),
                    name: seg.name.clone(),
                    duration_minutes: seg.duration_minutes,
                    gap_after_minutes: seg.gap_after_minutes,
                    gap_after_max_minutes: seg.gap_after_max_minutes,
                })
                .collect(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

pub(crate) fn parse_service_id(value: &str) -> Result<ServiceId, ApiError> {
    ServiceId::parse(value).map_err(|e| ApiError::Validation(e.within("service_id")))
}

fn to_service(request: ServiceRequest) -> Result<Service, ApiError> {
    let segments = request
        .segments
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(SegmentSpec {
                key: SegmentKey::parse(&s.key)
                    .map_err(|e| e.within(&format!("segments[{i}].key")))?,
                name: s.name,
                duration_minutes: s.duration_minutes,
                gap_after_minutes: s.gap_after_minutes,
                gap_after_max_minutes: s.gap_after_max_minutes,
            })
        })
        .collect::<Result<Vec<_>, phasebook_domain::FieldError>>()?;
    Ok(Service::new(&request.name, segments)?)
}

/// Creates or replaces a service (ops).
#[utoipa::path(put, path = "/services/{service_id}", tag = "services",
    params(("service_id" = String, Path, description = "Your id for the service")),
    request_body = ServiceRequest,
    responses(
        (status = 200, body = ServiceView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The new segments drop a segment key that event maps point at; nothing is changed"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    ))]
async fn put_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(service_id): Path<String>,
    Json(request): Json<ServiceRequest>,
) -> Result<axum::Json<ServiceView>, ApiError> {
    caller.require(Permission::Operate)?;
    let service_id = path_id("service_id", &service_id, ServiceId::parse)?;
    let service = to_service(request)?;
    if let Some(current) = state
        .store
        .get_service(caller.tenant_id, &service_id)
        .await?
    {
        let maps: Vec<(SegmentKey, StaffId)> = state
            .db
            .event_maps()
            .list_event_maps(caller.tenant_id)
            .await?
            .into_iter()
            .filter(|m| m.service_id == service_id)
            .map(|m| (m.segment_key, m.staff_id))
            .collect();
        let change = service_change(&current.service, &service, &maps);
        if change.loses_maps() {
            return Err(ApiError::ServiceChangeLosesMaps {
                detail: loses_maps_detail(&service_id, &change),
            });
        }
        for (key, staff) in &change.resized {
            // The store marks these maps unverified in the same write; this says so in the log.
            tracing::warn!(service_id = %service_id, segment = %key, maps = staff.len(), "segment length changed; its event maps are marked unverified until checked again");
        }
    }
    let stored = state
        .store
        .put_service(
            caller.tenant_id,
            &service_id,
            &service,
            Utc::now().trunc_subsecs(3),
        )
        .await?;
    Ok(axum::Json(ServiceView::from(&stored)))
}

fn loses_maps_detail(service_id: &ServiceId, change: &ServiceChange) -> String {
    let lost: Vec<String> = change
        .removed
        .iter()
        .map(|(key, staff)| {
            let who: Vec<&str> = staff.iter().map(StaffId::as_str).collect();
            format!("segment {key} (mapped for {})", who.join(", "))
        })
        .collect();
    format!(
        "The new definition of service {service_id} drops {}; storing it would delete those event maps, and appointments still waiting to sync would point at maps that no longer exist. Keep the segment keys (rename a segment with its `name`, not its `key`), or define the new segments as another service with PUT /services/{{new_service_id}} and map that one.",
        lost.join(" and ")
    )
}

/// One service.
#[utoipa::path(get, path = "/services/{service_id}", tag = "services",
    params(("service_id" = String, Path)),
    responses(
        (status = 200, body = ServiceView),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn get_service(
    State(state): State<AppState>,
    caller: Caller,
    Path(service_id): Path<String>,
) -> Result<axum::Json<ServiceView>, ApiError> {
    caller.require(Permission::Read)?;
    let not_found = || ApiError::NotFound { what: "service" };
    let service_id = path_id("service_id", &service_id, ServiceId::parse)?;
    let stored = state
        .store
        .get_service(caller.tenant_id, &service_id)
        .await?
        .ok_or_else(not_found)?;
    Ok(axum::Json(ServiceView::from(&stored)))
}

/// Every service of the tenant.
#[utoipa::path(get, path = "/services", tag = "services",
    responses((status = 200, body = ServiceList)))]
async fn list_services(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<ServiceList>, ApiError> {
    caller.require(Permission::Read)?;
    let services = state.store.list_services(caller.tenant_id).await?;
    Ok(axum::Json(ServiceList {
        items: services.iter().map(ServiceView::from).collect(),
    }))
}
