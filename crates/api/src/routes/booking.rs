//! What availability, holds and appointments load before the domain decides: the service,
//! the tenant's booking settings, who performs the service and which event maps exist.
//! Nothing here decides; it only gathers.

use phasebook_domain::preflight::DEFAULT_HORIZON_DAYS;
use phasebook_domain::{SegmentKey, ServiceId, StaffId};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::event_maps::EventMap;
use crate::store::holds::BookingSettings;
use crate::store::sync::TenantConnection;
use crate::store::{StaffMember, StoredService};

/// Everything the pre-flight and the search need about one service, and the staff members
/// the request names.
pub(crate) struct ServiceContext {
    pub service: StoredService,
    pub settings: BookingSettings,
    pub performers: Vec<StaffId>,
    pub maps: Vec<EventMap>,
    /// Those of the asked staff members who exist.
    pub staff: Vec<StaffMember>,
}

impl ServiceContext {
    /// (segment, staff) pairs with a verified map.
    pub fn mapped(&self) -> Vec<(SegmentKey, StaffId)> {
        self.maps
            .iter()
            .filter(|m| m.unverified_reason.is_none())
            .map(|m| (m.segment_key.clone(), m.staff_id.clone()))
            .collect()
    }

    /// (segment, staff, why) for maps that must be checked again before booking on them.
    pub fn unverified(&self) -> Vec<(SegmentKey, StaffId, String)> {
        self.maps
            .iter()
            .filter_map(|m| {
                let reason = m.unverified_reason.clone()?;
                Some((m.segment_key.clone(), m.staff_id.clone(), reason))
            })
            .collect()
    }

    /// The bookable event type of a segment for a staff member, when its map is verified.
    pub fn bookable(&self, key: &SegmentKey, staff: &StaffId) -> Option<i64> {
        self.maps
            .iter()
            .filter(|m| m.unverified_reason.is_none())
            .find(|m| &m.segment_key == key && &m.staff_id == staff)
            .map(|m| m.bookable_event_type_id.0)
    }

    /// A staff member the context was loaded with, or the 422 naming `field`.
    pub fn staff_member(&self, staff_id: &StaffId, field: &str) -> Result<&StaffMember, ApiError> {
        self.staff
            .iter()
            .find(|s| &s.staff_id == staff_id)
            .ok_or_else(|| unknown_staff(staff_id, field))
    }

    /// Whether a staff member the context was loaded with exists.
    pub fn has_staff(&self, staff_id: &StaffId) -> bool {
        self.staff.iter().any(|s| &s.staff_id == staff_id)
    }

    /// Whether every segment of the service is mapped for this staff member.
    pub fn fully_mapped(&self, staff: &StaffId) -> bool {
        self.service
            .service
            .segments()
            .iter()
            .all(|s| self.bookable(&s.key, staff).is_some())
    }
}

pub(crate) fn unknown_service(service_id: &ServiceId) -> ApiError {
    ApiError::validation(
        "service_id",
        "unknown_service",
        format!("there is no service {service_id:?}; define it with PUT /services/{service_id}"),
    )
}

fn unknown_staff(staff_id: &StaffId, field: &str) -> ApiError {
    ApiError::validation(
        field,
        "unknown_staff",
        format!("there is no staff member {staff_id:?}; define them with PUT /staff/{staff_id}"),
    )
}

pub(crate) async fn load_service_context(
    state: &AppState,
    tenant_id: Uuid,
    service_id: &ServiceId,
) -> Result<ServiceContext, ApiError> {
    load_booking_context(state, tenant_id, service_id, &[]).await
}

/// [`load_service_context`] with the staff members in `staff` that exist, read in the same
/// statement.
pub(crate) async fn load_booking_context(
    state: &AppState,
    tenant_id: Uuid,
    service_id: &ServiceId,
    staff: &[StaffId],
) -> Result<ServiceContext, ApiError> {
    let context = state
        .store
        .booking_context(tenant_id, service_id, staff)
        .await?;
    Ok(ServiceContext {
        service: context.service.ok_or_else(|| unknown_service(service_id))?,
        settings: context.settings.unwrap_or(BookingSettings {
            country: None,
            horizon_days: DEFAULT_HORIZON_DAYS,
        }),
        performers: context.performers,
        maps: context.maps,
        staff: context.staff,
    })
}

pub(crate) async fn load_staff(
    state: &AppState,
    tenant_id: Uuid,
    staff_id: &StaffId,
    field: &str,
) -> Result<StaffMember, ApiError> {
    state
        .store
        .get_staff(tenant_id, staff_id)
        .await?
        .ok_or_else(|| unknown_staff(staff_id, field))
}

/// The tenant's Cal.com connection, for the shared per-tenant client.
pub(crate) async fn tenant_connection(
    state: &AppState,
    tenant_id: Uuid,
) -> Result<TenantConnection, ApiError> {
    let calcom = state
        .db
        .event_maps()
        .tenant_calcom(tenant_id)
        .await?
        .ok_or(ApiError::NotFound { what: "tenant" })?;
    Ok(TenantConnection {
        tenant_id,
        api_key: calcom.api_key,
        base_url: calcom.base_url,
        team_id: calcom.team_id,
    })
}
