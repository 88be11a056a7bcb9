//! Persistence: one [`Store`] trait the handlers use, with its extensions
//! ([`event_maps::EventMapStore`], [`holds::BookingStore`], [`keys::KeyStore`],
//! [`console::ConsoleStore`], [`reschedule::RescheduleStore`]), implemented for PostgreSQL
//! ([`PgStore`]) and SQLite ([`SqliteStore`]); both pass the same conformance suite.
//! Every method takes the tenant and every query filters by it.
//!
//! Each implementation is written once (`shared.rs` and a macro beside each trait) and
//! expanded for both backends through the backend's codec (how an id and an instant are
//! stored). What really differs stays in the backend's own files: the double-booking guard
//! (`pg.rs`, `holds_pg.rs`, `reschedule_pg.rs`: an exclusion constraint; `sqlite.rs`,
//! `holds_sqlite.rs`, `reschedule_sqlite.rs`: an overlap check under `begin immediate`),
//! row locks, and time functions.

pub mod booking_context;
pub mod console;
pub mod event_maps;
pub mod holds;
mod holds_pg;
mod holds_sqlite;
pub mod keys;
mod pg;
pub mod reschedule;
mod reschedule_pg;
mod reschedule_sqlite;
mod shared;
mod sqlite;
pub mod sync;
mod sync_pg;
mod sync_sqlite;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use phasebook_domain::sync::{AppointmentSyncStatus, SegmentSyncStatus};
use phasebook_domain::{
    AppointmentStatus, CalcomUserId, Customer, EventTypeId, PlannedSegment, SegmentKey, Service,
    ServiceId, StaffId,
};
use secrecy::SecretString;
use uuid::Uuid;

pub use pg::PgStore;
pub use sqlite::SqliteStore;

/// How long an idempotency key pins its first response.
pub const IDEMPOTENCY_TTL: TimeDelta = TimeDelta::hours(24);
/// An in-flight key older than this belongs to a request that died (the request timeout is
/// far shorter), so a retry may take it over instead of waiting a day.
pub const IDEMPOTENCY_STALE_IN_FLIGHT: TimeDelta = TimeDelta::minutes(2);

/// What can go wrong in the store. `DoubleBooking` is the only expected business outcome;
/// the rest are failures the API reports as a logged 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("a segment overlaps an active segment of appointment {conflicting_appointment_id:?}")]
    DoubleBooking {
        /// None only when the conflicting appointment vanished between the violation and
        /// the look-up (cancelled concurrently).
        conflicting_appointment_id: Option<Uuid>,
    },
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A secret column could not be sealed or opened (no key, another key, tampered).
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How often a transaction that PostgreSQL rolled back for a deadlock or a serialization
/// failure is run again before the error is reported.
pub(crate) const RETRIES_ON_CONFLICT: u32 = 4;

/// True for PostgreSQL's deadlock (40P01) and serialization failure (40001): the whole
/// transaction was rolled back and may simply be run again.
pub(crate) fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db)
        if matches!(db.code().as_deref(), Some("40P01") | Some("40001")))
}

/// What an API key may do; see `auth` for the permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Agent,
    Viewer,
    Ops,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Viewer => "viewer",
            Self::Ops => "ops",
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "agent" => Ok(Self::Agent),
            "viewer" => Ok(Self::Viewer),
            "ops" => Ok(Self::Ops),
            other => Err(format!(
                "{other:?} is not a role; expected agent, viewer or ops"
            )),
        }
    }
}

/// A tenant as created by `phasebook tenant create`.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub tenant_id: Uuid,
    pub name: String,
    pub calcom_api_key: SecretString,
    pub calcom_base_url: String,
    pub calcom_team_id: Option<i64>,
    pub webhook_secret: SecretString,
    pub created_at: DateTime<Utc>,
}

/// An API key row: only the SHA-256 of the key is stored, plus a short prefix so ops can
/// tell keys apart.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub api_key_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    pub key_hash: String,
    pub key_prefix: String,
    pub created_at: DateTime<Utc>,
    /// After this instant the key is refused.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Who a presented key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiKeyOwner {
    pub api_key_id: Uuid,
    pub tenant_id: Uuid,
    pub role: Role,
    /// After this instant the key is refused (checked by the caller, against its clock).
    pub expires_at: Option<DateTime<Utc>>,
    /// The tenant's own request limit; None: the server's default.
    pub rate_limit: Option<keys::ApiRateLimit>,
}

/// A service definition as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredService {
    pub service_id: ServiceId,
    pub service: Service,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A staff member and the Cal.com user their segments are booked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffMember {
    pub staff_id: StaffId,
    pub name: String,
    pub calcom_user_id: CalcomUserId,
    pub calcom_username: String,
    pub time_zone: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Everything needed to insert an appointment; the id and instants are decided by the
/// caller, so the response can be built (and pinned to an idempotency key) before commit.
#[derive(Debug, Clone)]
pub struct NewAppointment {
    pub appointment_id: Uuid,
    pub tenant_id: Uuid,
    pub service_id: ServiceId,
    pub staff_id: StaffId,
    pub time_zone: String,
    pub customer: Customer,
    pub notes: Option<String>,
    pub segments: Vec<PlannedSegment>,
    pub created_at: DateTime<Utc>,
    /// A caller waits for the sync outcome (`Prefer: wait`): the first run's Cal.com
    /// requests are interactive, not background work.
    pub awaited: bool,
}

impl NewAppointment {
    pub fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.segments.first().map(|s| s.starts_at)
    }

    pub fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.segments.last().map(|s| s.ends_at)
    }

    /// The appointment exactly as it reads back right after creation.
    pub fn as_created(&self) -> Appointment {
        Appointment {
            appointment_id: self.appointment_id,
            tenant_id: self.tenant_id,
            service_id: self.service_id.clone(),
            staff_id: self.staff_id.clone(),
            starts_at: self.starts_at().unwrap_or(self.created_at),
            ends_at: self.ends_at().unwrap_or(self.created_at),
            time_zone: self.time_zone.clone(),
            status: AppointmentStatus::Booked,
            customer: self.customer.clone(),
            notes: self.notes.clone(),
            sync_status: AppointmentSyncStatus::Pending,
            requires_manual_review: false,
            review_reason: None,
            created_at: self.created_at,
            updated_at: self.created_at,
            cancelled_at: None,
            cancellation_reason: None,
            revision: 0,
            segments: self
                .segments
                .iter()
                .enumerate()
                .map(|(position, s)| AppointmentSegment {
                    key: s.key.clone(),
                    position: position as i32,
                    staff_id: s.staff_id.clone(),
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                    active: true,
                    sync_status: SegmentSyncStatus::Pending,
                    event_type_id: None,
                    calcom_booking_uid: None,
                    calcom_booking_id: None,
                    attempts: 0,
                    last_error: None,
                    next_attempt_at: None,
                })
                .collect(),
        }
    }
}

/// An appointment with its segments, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    pub appointment_id: Uuid,
    pub tenant_id: Uuid,
    pub service_id: ServiceId,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub time_zone: String,
    pub status: AppointmentStatus,
    pub customer: Customer,
    pub notes: Option<String>,
    pub sync_status: AppointmentSyncStatus,
    pub requires_manual_review: bool,
    pub review_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The caller's reason, when the appointment was cancelled with one.
    pub cancellation_reason: Option<String>,
    /// How many times it was moved (`POST /appointments/{appointment_id}/reschedule`).
    pub revision: i32,
    pub segments: Vec<AppointmentSegment>,
}

/// One staffed segment and the state of its Cal.com booking.
#[derive(Debug, Clone, PartialEq)]
pub struct AppointmentSegment {
    pub key: SegmentKey,
    pub position: i32,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub active: bool,
    pub sync_status: SegmentSyncStatus,
    pub event_type_id: Option<EventTypeId>,
    pub calcom_booking_uid: Option<String>,
    pub calcom_booking_id: Option<i64>,
    pub attempts: i32,
    pub last_error: Option<serde_json::Value>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Filters and keyset position for listing appointments, ordered by (starts_at, id).
#[derive(Debug, Clone, Default)]
pub struct AppointmentQuery {
    pub sync_status: Option<AppointmentSyncStatus>,
    pub requires_manual_review: Option<bool>,
    pub staff_id: Option<StaffId>,
    /// Appointments that end after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Appointments that start before this instant.
    pub to: Option<DateTime<Utc>>,
    /// Only the caller with this phone number (E.164).
    pub customer_phone: Option<String>,
    /// Only the caller with this e-mail address, in its lookup form
    /// (`phasebook_domain::appointment::email_lookup_form`).
    pub customer_email: Option<String>,
    /// Only strictly after this (starts_at, appointment_id).
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: u32,
}

/// A response pinned to an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

/// The first answer to a request with an idempotency key, pinned to the key in the same
/// statement that claims it: a create's 201 with the appointment, or a refusal.
#[derive(Debug, Clone, Copy)]
pub struct KeyedAnswer<'a> {
    pub key: &'a str,
    pub request_hash: &'a str,
    pub response: &'a IdempotentResponse,
}

/// How the write of an appointment pins its answer to the request's idempotency key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum KeyPin<'a> {
    /// The request claimed the key before the write (a hold's booking, which reads the
    /// hold first): the write completes it.
    Claimed(&'a str, &'a IdempotentResponse),
    /// The write claims the key itself, completed; when the key is taken nothing is written.
    Unclaimed(KeyedAnswer<'a>),
}

/// The outcome of presenting an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is ours: process the request, then complete or release it (or, when the
    /// claim carried the answer, it is pinned already).
    Claimed,
    /// Another request with this key is still being processed.
    InFlight,
    /// The key was used with a different request body.
    Mismatch,
    /// The key already holds a response: replay it.
    Completed(IdempotentResponse),
}

/// The persistence operations of the API. Implemented by [`PgStore`] and [`SqliteStore`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `postgres` or `sqlite`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations; a no-op when none are pending.
    async fn migrate(&self) -> StoreResult<()>;
    /// Round-trips a trivial query (readiness).
    async fn ping(&self) -> StoreResult<()>;

    async fn create_tenant(&self, tenant: &NewTenant) -> StoreResult<()>;
    async fn tenant_exists(&self, tenant_id: Uuid) -> StoreResult<bool>;
    async fn create_api_key(&self, key: &NewApiKey) -> StoreResult<()>;
    /// The owner of an unrevoked key with this SHA-256 hex hash (expired or not).
    async fn find_api_key(&self, key_hash: &str) -> StoreResult<Option<ApiKeyOwner>>;

    /// Creates or replaces a service. Segments that keep their key keep their event maps.
    async fn put_service(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
        service: &Service,
        now: DateTime<Utc>,
    ) -> StoreResult<StoredService>;
    async fn get_service(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
    ) -> StoreResult<Option<StoredService>>;
    async fn list_services(&self, tenant_id: Uuid) -> StoreResult<Vec<StoredService>>;

    /// Creates or replaces a staff member (`created_at` of an existing one is kept).
    async fn put_staff(&self, tenant_id: Uuid, staff: &StaffMember) -> StoreResult<StaffMember>;
    async fn get_staff(
        &self,
        tenant_id: Uuid,
        staff_id: &StaffId,
    ) -> StoreResult<Option<StaffMember>>;
    async fn list_staff(&self, tenant_id: Uuid) -> StoreResult<Vec<StaffMember>>;

    /// Everything a booking of `service_id` reads before the domain decides, in one
    /// statement: the service with its segments, the tenant's booking settings, who
    /// performs the service and its event maps (of `staff` alone, when it names any), and
    /// those of `staff` who exist.
    async fn booking_context(
        &self,
        tenant_id: Uuid,
        service_id: &ServiceId,
        staff: &[StaffId],
    ) -> StoreResult<booking_context::BookingContext>;

    /// Inserts the appointment, its segments and a pending sync job in one transaction.
    /// With `idempotency`, the same transaction claims the key with the answer pinned; when
    /// the key is taken (answered, in flight or used with another body) nothing is written
    /// and the key's state is returned instead of [`IdempotencyClaim::Claimed`]. Fails with
    /// [`StoreError::DoubleBooking`] when a segment overlaps an active segment or a live
    /// hold of the same staff member; the key is then left as it was.
    async fn create_appointment(
        &self,
        appointment: &NewAppointment,
        idempotency: Option<KeyedAnswer<'_>>,
    ) -> StoreResult<IdempotencyClaim>;
    async fn get_appointment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<Appointment>>;
    async fn list_appointments(
        &self,
        tenant_id: Uuid,
        query: &AppointmentQuery,
    ) -> StoreResult<Vec<Appointment>>;
    /// Replaces the customer's contact details and the notes (`None`: none); `None` when
    /// the tenant has no such appointment.
    async fn update_appointment_details(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        customer: &Customer,
        notes: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>>;

    /// Cancels locally, in one transaction: status cancelled, segments inactive (their
    /// time is free again), and the sync job due now (or, when a worker holds it, marked to
    /// run again) so the worker cancels what Cal.com holds. Cancelling a cancelled
    /// appointment changes only the job and the derived sync. None when there is no such
    /// appointment.
    async fn cancel_appointment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>> {
        self.cancel_appointment_with_reason(tenant_id, appointment_id, None, now)
            .await
    }

    /// [`Store::cancel_appointment`] with the caller's reason, kept with the appointment
    /// and sent to Cal.com. A repeated cancel keeps the first reason.
    async fn cancel_appointment_with_reason(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Appointment>>;

    /// Claims `key` for a request with this body hash (see [`IdempotencyClaim`]). Expired
    /// keys and stale in-flight keys are taken over.
    async fn claim_idempotency_key(
        &self,
        tenant_id: Uuid,
        key: &str,
        request_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim>;
    /// Claims the key completed with `answer` (a refusal that wrote nothing else), or
    /// returns what the key holds when it is taken.
    async fn pin_first_answer(
        &self,
        tenant_id: Uuid,
        answer: KeyedAnswer<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<IdempotencyClaim>;
    /// Pins a response that was produced without an appointment write (a 4xx).
    async fn complete_idempotency_key(
        &self,
        tenant_id: Uuid,
        key: &str,
        response: &IdempotentResponse,
    ) -> StoreResult<()>;
    /// Forgets an in-flight key (the request failed with a 5xx or never finished).
    async fn release_idempotency_key(&self, tenant_id: Uuid, key: &str) -> StoreResult<()>;
    /// Deletes expired keys; returns how many.
    async fn purge_expired_idempotency_keys(&self, now: DateTime<Utc>) -> StoreResult<u64>;
}

/// The configured database, as a concrete backend. Handlers use [`Database::store`];
/// backend-specific code (the sync engine, event maps) matches on the variant.
#[derive(Clone)]
pub enum Database {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Database {
    /// Connects to `url`: `postgres://…`/`postgresql://…` selects PostgreSQL, `sqlite:…`
    /// SQLite (the file is created when missing).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url).await?))
        } else {
            Err(StoreError::Database(sqlx::Error::Configuration(
                format!(
                    "unsupported database URL scheme in {:?}; use postgres://… or sqlite://…",
                    url.split(':').next().unwrap_or_default()
                )
                .into(),
            )))
        }
    }

    pub fn store(&self) -> &dyn Store {
        match self {
            Self::Postgres(s) => s,
            Self::Sqlite(s) => s,
        }
    }

    /// An owned handle on the same store.
    pub fn shared(&self) -> Arc<dyn Store> {
        match self {
            Self::Postgres(s) => Arc::new(s.clone()),
            Self::Sqlite(s) => Arc::new(s.clone()),
        }
    }

    /// Closes the pool (waits for connections to be returned).
    pub async fn close(&self) {
        match self {
            Self::Postgres(s) => s.pool.close().await,
            Self::Sqlite(s) => s.pool.close().await,
        }
    }
}

/// How long a connection acquisition may wait before the request fails.
pub(crate) const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) fn parse_service_id(value: &str) -> StoreResult<ServiceId> {
    ServiceId::parse(value).map_err(|e| StoreError::Corrupt(format!("service id: {e}")))
}

pub(crate) fn parse_staff_id(value: &str) -> StoreResult<StaffId> {
    StaffId::parse(value).map_err(|e| StoreError::Corrupt(format!("staff id: {e}")))
}

pub(crate) fn parse_segment_key(value: &str) -> StoreResult<SegmentKey> {
    SegmentKey::parse(value).map_err(|e| StoreError::Corrupt(format!("segment key: {e}")))
}

pub(crate) fn parse_role(value: &str) -> StoreResult<Role> {
    value.parse().map_err(StoreError::Corrupt)
}

pub(crate) fn parse_appointment_status(value: &str) -> StoreResult<AppointmentStatus> {
    AppointmentStatus::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("appointment status {value:?}")))
}

pub(crate) fn parse_appointment_sync_status(value: &str) -> StoreResult<AppointmentSyncStatus> {
    AppointmentSyncStatus::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("appointment sync status {value:?}")))
}

pub(crate) fn parse_segment_sync_status(value: &str) -> StoreResult<SegmentSyncStatus> {
    SegmentSyncStatus::parse(value)
        .ok_or_else(|| StoreError::Corrupt(format!("segment sync status {value:?}")))
}

pub(crate) fn rebuild_customer(
    name: &str,
    email: Option<&str>,
    phone: Option<&str>,
) -> StoreResult<Customer> {
    Customer::new(name, email, phone)
        .map_err(|e| StoreError::Corrupt(format!("customer {}: {}", e.field, e.code)))
}

/// Rebuilds a service from its stored segment rows (already in position order).
pub(crate) fn rebuild_service(
    name: &str,
    segments: Vec<phasebook_domain::SegmentSpec>,
) -> StoreResult<Service> {
    Service::new(name, segments).map_err(|e| StoreError::Corrupt(format!("service: {e}")))
}

/// A column (`create_outcome_unknown`) over `appointment_segments s`: true when a create
/// (or a Cal.com reschedule, which creates too) for the segment was sent and its outcome is
/// not known (none recorded, or `unknown`), so
/// a booking may exist that we hold no uid for. Written once: the cancel and the sync
/// engine's load both select it.
macro_rules! create_outcome_unknown_column {
    () => {
        "exists (select 1 from sync_attempts x \
         where x.appointment_id = s.appointment_id and x.segment_key = s.segment_key \
         and x.operation in ('create', 'reschedule') \
         and (x.outcome is null or x.outcome = 'unknown')) \
         as create_outcome_unknown"
    };
}

pub(crate) use create_outcome_unknown_column;

/// Before a segment is stored as `$4` minutes long: marks its maps unverified (`$5` says
/// why) when the stored length differs. `$1` tenant, `$2` service, `$3` segment key.
pub(crate) const MARK_RESIZED_MAPS: &str = "update event_maps set unverified_reason = $5 \
     where tenant_id = $1 and service_id = $2 and segment_key = $3 and exists ( \
     select 1 from service_segments s where s.tenant_id = event_maps.tenant_id \
     and s.service_id = event_maps.service_id and s.segment_key = event_maps.segment_key \
     and s.duration_minutes <> $4)";

/// Before a staff member is stored with Cal.com user `$3`: marks their maps unverified
/// (`$4` says why) when the stored user differs. `$1` tenant, `$2` staff.
pub(crate) const MARK_REPOINTED_MAPS: &str = "update event_maps set unverified_reason = $4 \
     where tenant_id = $1 and staff_id = $2 and exists ( \
     select 1 from staff s where s.tenant_id = event_maps.tenant_id \
     and s.staff_id = event_maps.staff_id and s.calcom_user_id <> $3)";

/// The segments of one appointment as a sync run needs them (`$1` appointment, `$2` tenant,
/// `$3` service), the same text for both backends.
pub(crate) const LOAD_SEGMENTS: &str = concat!(
    "select s.segment_key, s.position, s.staff_id, s.starts_at, s.ends_at, \
     s.sync_status, s.event_type_id, s.calcom_booking_uid, s.calcom_booking_id, \
     s.attempts, s.last_error, s.next_attempt_at, s.review_reason, \
     s.moving_from, s.moving_from_event_type_id, \
     st.calcom_user_id, st.calcom_username, st.time_zone as staff_time_zone, \
     m.event_type_id as map_event_type_id, m.bookable_event_type_id, m.resolution, ",
    create_outcome_unknown_column!(),
    " from appointment_segments s \
     left join staff st on st.tenant_id = s.tenant_id and st.staff_id = s.staff_id \
     left join event_maps m on m.tenant_id = s.tenant_id and m.service_id = $3 \
       and m.segment_key = s.segment_key and m.staff_id = s.staff_id \
     where s.appointment_id = $1 and s.tenant_id = $2 order by s.position"
);

/// Cal.com-facing segment state after a local cancel, derived by the domain rule.
pub(crate) fn segment_status_after_cancel(
    segment: &AppointmentSegment,
    create_outcome_unknown: bool,
) -> SegmentSyncStatus {
    // A create whose answer never came (a run that died, or a resync that reset the
    // segment meanwhile) may have left a booking: it must be looked for, not declared done.
    phasebook_domain::appointment::segment_status_on_cancel(
        segment.sync_status,
        segment.calcom_booking_uid.is_some()
            || segment.calcom_booking_id.is_some()
            || create_outcome_unknown,
        u32::try_from(segment.attempts).unwrap_or(0),
    )
}

/// The appointment's status, locked by the PostgreSQL caller (which appends `for update`);
/// SQLite's `begin immediate` already holds the write lock. `$1` tenant, `$2` appointment.
pub(crate) const APPOINTMENT_STATUS: &str =
    "select status from appointments where tenant_id = $1 and appointment_id = $2";

/// The segments as a cancel reads them: their state, whether a create may have reached
/// Cal.com, and what the appointment's derived sync reads (review reason, a failed try).
/// `$1` tenant, `$2` appointment.
pub(crate) const CANCEL_SEGMENTS: &str = concat!(
    "select s.segment_key, s.position, s.staff_id, s.starts_at, s.ends_at, s.active, \
     s.sync_status, s.event_type_id, s.calcom_booking_uid, s.calcom_booking_id, s.attempts, \
     s.last_error, s.next_attempt_at, s.review_reason, \
     s.last_error is not null as has_error, ",
    create_outcome_unknown_column!(),
    " from appointment_segments s where s.tenant_id = $1 and s.appointment_id = $2 \
     order by s.position"
);

/// Frees a segment's time and sets its Cal.com-facing state. `$1` appointment, `$2` segment
/// key, `$3` status, `$4` now.
pub(crate) const CANCEL_SEGMENT: &str = "update appointment_segments \
     set active = false, sync_status = $3, next_attempt_at = null, updated_at = $4 \
     where appointment_id = $1 and segment_key = $2";

/// `$1` tenant, `$2` appointment, `$3` now, `$4` the caller's reason.
pub(crate) const MARK_CANCELLED: &str = "update appointments \
     set status = 'cancelled', cancelled_at = $3, cancellation_reason = $4 \
     where tenant_id = $1 and appointment_id = $2";

/// Makes the appointment's job due now, creating it when missing. A job already leased
/// keeps its lease and is marked to run again, so its worker re-reads the cancel.
/// `$1` new job id, `$2` tenant, `$3` appointment, `$4` now.
pub(crate) const QUEUE_SYNC_JOB: &str = "insert into sync_jobs (sync_job_id, tenant_id, \
     appointment_id, state, run_at, verify_bookings, created_at, updated_at) \
     values ($1, $2, $3, 'pending', $4, false, $4, $4) \
     on conflict (appointment_id) do update set \
       state = case when sync_jobs.state = 'leased' then 'leased' else 'pending' end, \
       rerun = sync_jobs.state = 'leased', run_at = $4, updated_at = $4";

/// `$1` tenant, `$2` appointment, `$3` sync status, `$4` review flag, `$5` review reason,
/// `$6` now.
pub(crate) const WRITE_APPOINTMENT_SYNC: &str = "update appointments \
     set sync_status = $3, requires_manual_review = $4, review_reason = $5, updated_at = $6 \
     where tenant_id = $1 and appointment_id = $2";

/// One row of [`CANCEL_SEGMENTS`].
pub(crate) struct CancelSegment {
    pub segment: AppointmentSegment,
    pub create_outcome_unknown: bool,
    pub review_reason: Option<String>,
    pub has_error: bool,
}

/// What a cancel writes, decided once for both backends.
pub(crate) struct CancelPlan {
    /// The segments whose state changes (none when the appointment was already cancelled).
    pub segments: Vec<(SegmentKey, SegmentSyncStatus)>,
    /// The appointment's sync as derived from its segments afterwards.
    pub sync: phasebook_domain::sync::AppointmentSync,
}

pub(crate) fn plan_cancel(already_cancelled: bool, rows: Vec<CancelSegment>) -> CancelPlan {
    let mut segments = Vec::new();
    let mut states = Vec::with_capacity(rows.len());
    for row in rows {
        let status = if already_cancelled {
            row.segment.sync_status
        } else {
            let status = segment_status_after_cancel(&row.segment, row.create_outcome_unknown);
            segments.push((row.segment.key.clone(), status));
            status
        };
        states.push(phasebook_domain::sync::SegmentState {
            key: row.segment.key,
            status,
            retrying: row.has_error,
            review_reason: row.review_reason,
        });
    }
    CancelPlan {
        segments,
        sync: phasebook_domain::sync::derive_appointment_sync(
            phasebook_domain::sync::DesiredState::Cancelled,
            &states,
        ),
    }
}
