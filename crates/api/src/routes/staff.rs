//! `PUT/GET /staff/{staff_id}` and `GET /staff`: stylists and the Cal.com users their
//! segments are booked for.

use axum::extract::State;
use chrono::{DateTime, SubsecRound, Utc};
use phasebook_domain::staff::StaffProfile;
use phasebook_domain::{ServiceId, StaffId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, path_id};
use crate::state::AppState;
use crate::store::StaffMember;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(put_staff, get_staff))
        .routes(routes!(list_staff))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffRequest {
    pub name: String,
    #[schema(minimum = 1)]
    pub calcom_user_id: i64,
    /// How a managed event type's child for this host is found.
    pub calcom_username: String,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// The services this person performs (availability searches them; pre-flight and the
    /// event-map audit check them). Absent keeps the current list.
    #[serde(default)]
    pub services: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffView {
    pub staff_id: String,
    pub name: String,
    pub calcom_user_id: i64,
    pub calcom_username: String,
    pub time_zone: String,
    /// The services this person performs.
    pub services: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StaffList {
    pub items: Vec<StaffView>,
}

impl StaffView {
    fn of(s: &StaffMember, services: &[ServiceId]) -> Self {
        Self {
            staff_id: s.staff_id.to_string(),
            name: s.name.clone(),
            calcom_user_id: s.calcom_user_id.0,
            calcom_username: s.calcom_username.clone(),
            time_zone: s.time_zone.clone(),
            services: services.iter().map(ToString::to_string).collect(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// Creates or replaces a staff member (ops).
#[utoipa::path(put, path = "/staff/{staff_id}", tag = "staff",
    params(("staff_id" = String, Path, description = "Your id for the staff member")),
    request_body = StaffRequest,
    responses(
        (status = 200, body = StaffView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    ))]
async fn put_staff(
    State(state): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<String>,
    Json(request): Json<StaffRequest>,
) -> Result<axum::Json<StaffView>, ApiError> {
    caller.require(Permission::Operate)?;
    let staff_id = path_id("staff_id", &staff_id, StaffId::parse)?;
    let profile = StaffProfile::new(
        &request.name,
        request.calcom_user_id,
        &request.calcom_username,
        &request.time_zone,
    )?;
    let services = match &request.services {
        None => None,
        Some(list) => {
            let known = state.store.list_services(caller.tenant_id).await?;
            let mut ids = Vec::with_capacity(list.len());
            for (i, raw) in list.iter().enumerate() {
                let id = ServiceId::parse(raw).map_err(|e| e.within(&format!("services[{i}]")))?;
                if !known.iter().any(|s| s.service_id == id) {
                    return Err(ApiError::validation(
                        format!("services[{i}]"),
                        "unknown_service",
                        format!("there is no service {id:?}; define it with PUT /services/{id}"),
                    ));
                }
                ids.push(id);
            }
            Some(ids)
        }
    };
    let now = Utc::now().trunc_subsecs(3);
    let stored = state
        .store
        .put_staff(
            caller.tenant_id,
            &StaffMember {
                staff_id,
                name: profile.name,
                calcom_user_id: profile.calcom_user_id,
                calcom_username: profile.calcom_username,
                time_zone: profile.time_zone.name().to_string(),
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
    let booking = state.db.booking();
    if let Some(services) = &services {
        booking
            .set_staff_services(caller.tenant_id, &stored.staff_id, services)
            .await?;
    }
    let performs = booking
        .staff_services(caller.tenant_id, &stored.staff_id)
        .await?;
    Ok(axum::Json(StaffView::of(&stored, &performs)))
}

/// One staff member.
#[utoipa::path(get, path = "/staff/{staff_id}", tag = "staff",
    params(("staff_id" = String, Path)),
    responses(
        (status = 200, body = StaffView),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn get_staff(
    State(state): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<String>,
) -> Result<axum::Json<StaffView>, ApiError> {
    caller.require(Permission::Read)?;
    let not_found = || ApiError::NotFound {
        what: "staff member",
    };
    let staff_id = path_id("staff_id", &staff_id, StaffId::parse)?;
    let stored = state
        .store
        .get_staff(caller.tenant_id, &staff_id)
        .await?
        .ok_or_else(not_found)?;
    let performs = state
        .db
        .booking()
        .staff_services(caller.tenant_id, &stored.staff_id)
        .await?;
    Ok(axum::Json(StaffView::of(&stored, &performs)))
}

/// Every staff member of the tenant.
#[utoipa::path(get, path = "/staff", tag = "staff",
    responses((status = 200, body = StaffList)))]
async fn list_staff(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<StaffList>, ApiError> {
    caller.require(Permission::Read)?;
    let staff = state.store.list_staff(caller.tenant_id).await?;
    let performers = state
        .db
        .event_maps()
        .list_performers(caller.tenant_id)
        .await?;
    Ok(axum::Json(StaffList {
        items: staff
            .iter()
            .map(|member| {
                let services: Vec<ServiceId> = performers
                    .iter()
                    .filter(|(_, who)| who == &member.staff_id)
                    .map(|(service, _)| service.clone())
                    .collect();
                StaffView::of(member, &services)
            })
            .collect(),
    }))
}
