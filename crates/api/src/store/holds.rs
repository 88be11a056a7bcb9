//! Storage for find → hold → book: who performs which service, the tenant's booking
//! settings, the busy time availability subtracts, and holds. Both backends implement
//! [`BookingStore`] (`holds_pg.rs`, `holds_sqlite.rs`); the double-booking guard covers
//! appointments and live holds together (an exclusion constraint over `staff_busy` on
//! PostgreSQL, the overlap check in an immediate transaction on SQLite).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::availability::Span;
use phasebook_domain::{EventTypeId, PlannedSegment, ServiceId, StaffId};
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
    pub event_type_id: EventTypeId,
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

pub(crate) const DELETE_STAFF_SERVICES: &str =
    "delete from staff_services where tenant_id = $1 and staff_id = $2";
pub(crate) const ADD_STAFF_SERVICE: &str = "insert into staff_services (tenant_id, staff_id, \
     service_id) values ($1, $2, $3) on conflict do nothing";
pub(crate) const STAFF_SERVICES: &str = "select service_id from staff_services \
     where tenant_id = $1 and staff_id = $2 order by service_id";
pub(crate) const PERFORMERS: &str = "select staff_id from staff_services \
     where tenant_id = $1 and service_id = $2 order by staff_id";
pub(crate) const BOOKING_SETTINGS: &str =
    "select country, booking_horizon_days from tenants where tenant_id = $1";
pub(crate) const SET_BOOKING_SETTINGS: &str =
    "update tenants set country = $2, booking_horizon_days = $3 where tenant_id = $1";
pub(crate) const SET_RESERVATION_UID: &str = "update hold_segments \
     set calcom_reservation_uid = $3 where hold_id = $1 and segment_key = $2";
/// `$1` tenant, `$2` from, `$3` to, `$4` now.
pub(crate) const LIVE_HOLD_IDS: &str = "select distinct h.hold_id from holds h \
     join hold_segments s on s.hold_id = h.hold_id \
     where h.tenant_id = $1 and h.status = 'held' and h.expires_at > $4 \
     and s.starts_at < $3 and s.ends_at > $2";
pub(crate) const GET_HOLD: &str = "select hold_id, tenant_id, service_id, staff_id, time_zone, \
     status, expires_at, appointment_id, created_at from holds \
     where tenant_id = $1 and hold_id = $2";
pub(crate) const HOLD_SEGMENTS: &str = "select segment_key, staff_id, starts_at, ends_at, \
     event_type_id, calcom_reservation_uid from hold_segments where hold_id = $1 \
     order by position";
pub(crate) const MARK_RESERVATIONS_CLEARED: &str =
    "update holds set reservations_cleared_at = $2 where hold_id = $1";
pub(crate) const INSERT_HOLD: &str = "insert into holds (hold_id, tenant_id, service_id, \
     staff_id, time_zone, status, expires_at, created_at, updated_at) \
     values ($1, $2, $3, $4, $5, 'held', $6, $7, $7)";
pub(crate) const INSERT_HOLD_SEGMENT: &str = "insert into hold_segments (hold_id, segment_key, \
     tenant_id, position, staff_id, starts_at, ends_at, event_type_id) \
     values ($1, $2, $3, $4, $5, $6, $7, $8)";
pub(crate) const RELEASE_HOLD: &str = "update holds set status = 'released', updated_at = $3 \
     where tenant_id = $1 and hold_id = $2 and status = 'held'";
pub(crate) const HOLD_STATE: &str =
    "select status, expires_at from holds where tenant_id = $1 and hold_id = $2";
pub(crate) const TAKE_HOLD_FOR: &str = "update holds set status = 'booked', \
     appointment_id = $2, updated_at = $3 where hold_id = $1";

pub(crate) fn parse_hold_status(status: &str) -> StoreResult<HoldStatus> {
    HoldStatus::parse(status)
        .ok_or_else(|| super::StoreError::Corrupt(format!("hold status {status:?}")))
}

/// [`BookingStore`] for one backend through the codec of the invoking module (see
/// `shared.rs`). The methods the guard makes different are passed in after `dialect`.
macro_rules! booking_store {
    (store = $store:ty, db = $db:ty, dialect = { $($dialect:tt)* }) => {
        impl $store {
            /// The hold's own rows (not the guard's), inside the caller's transaction.
            async fn insert_hold_rows(
                tx: &mut sqlx::Transaction<'static, $db>,
                hold: &Hold,
            ) -> Result<(), sqlx::Error> {
                sqlx::query(super::holds::INSERT_HOLD)
                    .bind(db_id(hold.hold_id))
                    .bind(db_id(hold.tenant_id))
                    .bind(hold.service_id.as_str())
                    .bind(hold.staff_id.as_str())
                    .bind(&hold.time_zone)
                    .bind(db_at(hold.expires_at))
                    .bind(db_at(hold.created_at))
                    .execute(&mut **tx)
                    .await?;
                for (position, s) in hold.segments.iter().enumerate() {
                    sqlx::query(super::holds::INSERT_HOLD_SEGMENT)
                        .bind(db_id(hold.hold_id))
                        .bind(s.segment.key.as_str())
                        .bind(db_id(hold.tenant_id))
                        .bind(i32::try_from(position).unwrap_or(i32::MAX))
                        .bind(s.segment.staff_id.as_str())
                        .bind(db_at(s.segment.starts_at))
                        .bind(db_at(s.segment.ends_at))
                        .bind(s.event_type_id.0)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl BookingStore for $store {
            async fn set_staff_services(
                &self,
                tenant_id: Uuid,
                staff_id: &StaffId,
                services: &[ServiceId],
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(super::holds::DELETE_STAFF_SERVICES)
                    .bind(db_id(tenant_id))
                    .bind(staff_id.as_str())
                    .execute(&mut *tx)
                    .await?;
                for service in services {
                    sqlx::query(super::holds::ADD_STAFF_SERVICE)
                        .bind(db_id(tenant_id))
                        .bind(staff_id.as_str())
                        .bind(service.as_str())
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn staff_services(
                &self,
                tenant_id: Uuid,
                staff_id: &StaffId,
            ) -> StoreResult<Vec<ServiceId>> {
                let rows: Vec<String> = sqlx::query_scalar(super::holds::STAFF_SERVICES)
                    .bind(db_id(tenant_id))
                    .bind(staff_id.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|s| parse_service_id(s)).collect()
            }

            async fn performers(
                &self,
                tenant_id: Uuid,
                service_id: &ServiceId,
            ) -> StoreResult<Vec<StaffId>> {
                let rows: Vec<String> = sqlx::query_scalar(super::holds::PERFORMERS)
                    .bind(db_id(tenant_id))
                    .bind(service_id.as_str())
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|s| parse_staff_id(s)).collect()
            }

            async fn booking_settings(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Option<BookingSettings>> {
                let row = sqlx::query(super::holds::BOOKING_SETTINGS)
                    .bind(db_id(tenant_id))
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|r| {
                    Ok(BookingSettings {
                        country: r.try_get("country")?,
                        horizon_days: u32::try_from(r.try_get::<i32, _>("booking_horizon_days")?)
                            .map_err(|_| StoreError::Corrupt("booking horizon".into()))?,
                    })
                })
                .transpose()
            }

            async fn set_booking_settings(
                &self,
                tenant_id: Uuid,
                settings: &BookingSettings,
            ) -> StoreResult<()> {
                sqlx::query(super::holds::SET_BOOKING_SETTINGS)
                    .bind(db_id(tenant_id))
                    .bind(settings.country.as_deref())
                    .bind(i32::try_from(settings.horizon_days).unwrap_or(i32::MAX))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_reservation_uid(
                &self,
                hold_id: Uuid,
                segment_key: &str,
                uid: &str,
            ) -> StoreResult<()> {
                sqlx::query(super::holds::SET_RESERVATION_UID)
                    .bind(db_id(hold_id))
                    .bind(segment_key)
                    .bind(uid)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn live_hold_ids(
                &self,
                tenant_id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> StoreResult<Vec<Uuid>> {
                let rows = sqlx::query(super::holds::LIVE_HOLD_IDS)
                    .bind(db_id(tenant_id))
                    .bind(db_at(from))
                    .bind(db_at(to))
                    .bind(db_at(now))
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(|row| get_id(row, "hold_id")).collect()
            }

            async fn get_hold(&self, tenant_id: Uuid, hold_id: Uuid) -> StoreResult<Option<Hold>> {
                let Some(row) = sqlx::query(super::holds::GET_HOLD)
                    .bind(db_id(tenant_id))
                    .bind(db_id(hold_id))
                    .fetch_optional(&self.pool)
                    .await?
                else {
                    return Ok(None);
                };
                let segments = sqlx::query(super::holds::HOLD_SEGMENTS)
                    .bind(db_id(hold_id))
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(|r| {
                        Ok(HoldSegment {
                            segment: PlannedSegment {
                                key: parse_segment_key(&r.try_get::<String, _>("segment_key")?)?,
                                staff_id: parse_staff_id(&r.try_get::<String, _>("staff_id")?)?,
                                starts_at: get_at(r, "starts_at")?,
                                ends_at: get_at(r, "ends_at")?,
                            },
                            event_type_id: phasebook_domain::EventTypeId(r.try_get("event_type_id")?),
                            calcom_reservation_uid: r.try_get("calcom_reservation_uid")?,
                        })
                    })
                    .collect::<StoreResult<Vec<_>>>()?;
                Ok(Some(Hold {
                    hold_id: get_id(&row, "hold_id")?,
                    tenant_id: get_id(&row, "tenant_id")?,
                    service_id: parse_service_id(&row.try_get::<String, _>("service_id")?)?,
                    staff_id: parse_staff_id(&row.try_get::<String, _>("staff_id")?)?,
                    time_zone: row.try_get("time_zone")?,
                    status: super::holds::parse_hold_status(&row.try_get::<String, _>("status")?)?,
                    expires_at: get_at(&row, "expires_at")?,
                    appointment_id: get_opt_id(&row, "appointment_id")?,
                    created_at: get_at(&row, "created_at")?,
                    segments,
                }))
            }

            async fn mark_reservations_cleared(
                &self,
                hold_id: Uuid,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                sqlx::query(super::holds::MARK_RESERVATIONS_CLEARED)
                    .bind(db_id(hold_id))
                    .bind(db_at(now))
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            $($dialect)*
        }
    };
}

pub(crate) use booking_store;
