//! Storage for find → hold → book: who performs which service, the tenant's booking
//! settings, the busy time availability subtracts, and holds. Both backends implement
//! [`BookingStore`] (`holds_pg.rs`, `holds_sqlite.rs`); the double-booking guard covers
//! appointments and live holds together (an exclusion constraint over `staff_busy` on
//! PostgreSQL, the overlap check in an immediate transaction on SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{PlannedSegment, ServiceId, StaffId};
use uuid::Uuid;

use super::event_maps::EventMapStore;
use super::{Database, IdempotentResponse, NewAppointment, StoreResult};

/// What a tenant allows when booking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingSettings {
    /// ISO 3166 alpha-2; national phone numbers are read with it. None: refused.
    pub country: Option<String>,
    pub horizon_days: u32,
}

/// How a hold ended, or that it still holds (until `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldStatus {
    Held,
    Released,
    Booked,
}

impl HoldStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Held => "held",
            Self::Released => "released",
            Self::Booked => "booked",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "held" => Some(Self::Held),
            "released" => Some(Self::Released),
            "booked" => Some(Self::Booked),
            _ => None,
        }
    }
}

/// One held segment and its Cal.com reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldSegment {
    pub segment: PlannedSegment,
    /// The bookable event type the segment is reserved (and later booked) on.
    pub event_type_id: i64,
    pub calcom_reservation_uid: Option<String>,
}

/// A hold as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub hold_id: Uuid,
    pub tenant_id: Uuid,
    pub service_id: ServiceId,
    pub staff_id: StaffId,
    pub time_zone: String,
    pub status: HoldStatus,
    pub expires_at: DateTime<Utc>,
    pub appointment_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub segments: Vec<HoldSegment>,
}

impl Hold {
    /// A held hold blocks time until it expires; after that it blocks nothing.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.status == HoldStatus::Held && self.expires_at > now
    }
}

/// What converting a hold into an appointment gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldConversion {
    Booked,
    /// The hold is past `expires_at`: nothing was written.
    Expired,
    /// The hold was released or already booked: nothing was written.
    Ended(HoldStatus),
    /// No such hold for this tenant.
    Missing,
}

/// A hold whose Cal.com reservations must be deleted (released, booked or expired).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldToClear {
    pub tenant_id: Uuid,
    pub hold_id: Uuid,
    pub reservation_uids: Vec<String>,
}

#[async_trait]
pub trait BookingStore: EventMapStore {
    /// Replaces the services a staff member performs.
    async fn set_staff_services(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
        services: &[ServiceId],
    ) -> StoreResult<()>;
    async fn staff_services(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
    ) -> StoreResult<Vec<ServiceId>>;
    /// Staff who perform the service, by id.
    async fn performers(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
    ) -> StoreResult<Vec<StaffId>>;

    async fn booking_settings(&self, tenant_id: Uuid) -> StoreResult<Option<BookingSettings>>;
    async fn set_booking_settings(
        &self,
        tenant_id: Uuid,
        settings: &BookingSettings,
    ) -> StoreResult<()>;

    /// Active appointment segments and live holds of these staff members that touch `span`.
    async fn busy_time(
        &self,
        tenant_id: Uuid,
        staff: &[StaffId],
        span: Span,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<(StaffId, Span)>>;

    /// Stores a hold and blocks its segments' time; [`super::StoreError::DoubleBooking`]
    /// when an active appointment or a live hold overlaps.
    async fn create_hold(&self, hold: &Hold, now: DateTime<Utc>) -> StoreResult<()>;
    async fn set_reservation_uid(
        &self,
        hold_id: Uuid,
        segment_key: &str,
        uid: &str,
    ) -> StoreResult<()>;
    async fn get_hold(&self, tenant_id: Uuid, hold_id: Uuid) -> StoreResult<Option<Hold>>;
    /// Ids of the holds live at `now` with a segment touching `[from, to)`.
    async fn live_hold_ids(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Uuid>>;
    /// The holds live at `now` with a segment touching `[from, to)` (the console's day).
    async fn live_holds_between(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<Hold>> {
        let mut holds = Vec::new();
        for hold_id in self.live_hold_ids(tenant_id, from, to, now).await? {
            if let Some(hold) = self.get_hold(tenant_id, hold_id).await? {
                holds.push(hold);
            }
        }
        Ok(holds)
    }
    /// Marks a held hold released and frees its time. None when there is no such hold.
    async fn release_hold(
        &self,
        tenant_id: Uuid,
        hold_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Hold>>;
    /// Books `appointment` with exactly the hold's times in one transaction: the hold ends
    /// as booked and its time passes to the appointment.
    async fn create_appointment_from_hold(
        &self,
        hold_id: Uuid,
        appointment: &NewAppointment,
        idempotency: Option<(&str, &IdempotentResponse)>,
    ) -> StoreResult<HoldConversion>;
    /// Holds that ended or expired and still have Cal.com reservations to delete.
    async fn holds_to_clear(&self, now: DateTime<Utc>, limit: u32)
    -> StoreResult<Vec<HoldToClear>>;
    async fn mark_reservations_cleared(&self, hold_id: Uuid, now: DateTime<Utc>)
    -> StoreResult<()>;
}

impl Database {
    /// The find → hold → book view of the configured backend.
    pub fn booking(&self) -> &dyn BookingStore {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }
}
