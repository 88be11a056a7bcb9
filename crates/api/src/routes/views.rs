//! What the API answers about an appointment: the appointment, its segments, its customer
//! and its sync status in short. Shared by booking, reading, moving and `Prefer: wait`.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::Appointment;
/// An appointment with its planned segments and sync status.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentView {
    pub id: Uuid,
    pub service_id: String,
    pub staff_id: String,
    /// Start of the first segment (UTC).
    pub starts_at: DateTime<Utc>,
    /// End of the last segment (UTC).
    pub ends_at: DateTime<Utc>,
    pub time_zone: String,
    /// `booked` or `cancelled`.
    #[schema(example = "booked")]
    pub status: String,
    pub customer: CustomerView,
    pub notes: Option<String>,
    pub segments: Vec<AppointmentSegmentView>,
    pub sync: SyncSummary,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The caller's reason, when cancelled with one.
    pub cancellation_reason: Option<String>,
    /// 0 when booked; one more with every move (`POST /appointments/{appointment_id}/reschedule`).
    pub revision: i32,
}

#[derive(Serialize, ToSchema)]
pub struct CustomerView {
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl std::fmt::Debug for CustomerView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerView { <redacted> }")
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentSegmentView {
    pub key: String,
    pub staff_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// `pending`, `syncing`, `synced`, `failed`, `needs_review`, `cancelling`, `cancelled`.
    pub sync_status: String,
    pub calcom_booking_uid: Option<String>,
}

/// The appointment's sync status in short; `GET /appointments/{appointment_id}/sync` has
/// every segment and attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncSummary {
    /// `pending`, `syncing`, `synced`, `partially_synced`, `failed`, `needs_review`,
    /// `cancelling`, `cancelled`.
    pub status: String,
    pub requires_manual_review: bool,
    pub review_reason: Option<String>,
}

impl From<&Appointment> for AppointmentView {
    fn from(a: &Appointment) -> Self {
        Self {
            id: a.appointment_id,
            service_id: a.service_id.to_string(),
            staff_id: a.staff_id.to_string(),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            time_zone: a.time_zone.clone(),
            status: a.status.to_string(),
            customer: CustomerView {
                name: a.customer.name().to_string(),
                email: a.customer.email().map(str::to_string),
                phone: a.customer.phone().map(str::to_string),
            },
            notes: a.notes.clone(),
            segments: a
                .segments
                .iter()
                .map(|s| AppointmentSegmentView {
                    key: s.key.to_string(),
                    staff_id: s.staff_id.to_string(),
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    sync_status: s.sync_status.to_string(),
                    calcom_booking_uid: s.calcom_booking_uid.clone(),
                })
                .collect(),
            sync: SyncSummary {
                status: a.sync_status.to_string(),
                requires_manual_review: a.requires_manual_review,
                review_reason: a.review_reason.clone(),
            },
            created_at: a.created_at,
            updated_at: a.updated_at,
            cancelled_at: a.cancelled_at,
            cancellation_reason: a.cancellation_reason.clone(),
            revision: a.revision,
        }
    }
}
