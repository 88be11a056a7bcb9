//! Storage for the sync engine: leasing outbox jobs, the write-ahead attempt log, segment
//! booking state, the derived appointment sync status, and the read models behind
//! `GET /appointments/{appointment_id}/sync` and `GET /sync/health`. `sync_pg.rs` and
//! `sync_sqlite.rs` implement [`SyncStore`] for each backend.
//!
//! Every write made on behalf of a leased job is fenced: it only happens while the job is
//! still leased to the same claim (owner and run number), so a worker whose lease expired
//! can never overwrite what its successor recorded.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use phasebook_domain::appointment::AppointmentStatus;
use phasebook_domain::sync::{
    AppointmentSync, AppointmentSyncStatus, DesiredState, SegmentBooking, SegmentError,
    SegmentState, SegmentSyncStatus, StoredBooking, derive_appointment_sync,
    only_calcom_was_unavailable,
};
use phasebook_domain::{CalcomUserId, EventTypeId, SegmentKey, StaffId};
use secrecy::SecretString;
use serde::Serialize;
use uuid::Uuid;

pub use super::{StoreError, StoreResult};

/// Stamps `verified_at` on every tenant not swept since `$1` (`$2` is now) and returns their
/// Cal.com connections; one text for both backends.
pub(crate) const CLAIM_VERIFICATION: &str = "update tenants set verified_at = $2 \
     where verified_at is null or verified_at < $1 \
     returning tenant_id, calcom_api_key, calcom_base_url, calcom_team_id";

/// The synced segments of booked appointments of tenant `$1` starting in `[$2, $3)`.
pub(crate) const SYNCED_BOOKINGS_BETWEEN: &str = "select s.appointment_id, s.segment_key, \
     s.calcom_booking_uid, s.starts_at, s.ends_at from appointment_segments s \
     join appointments a on a.appointment_id = s.appointment_id \
     where s.tenant_id = $1 and a.status = 'booked' and s.sync_status = 'synced' \
       and s.calcom_booking_uid is not null and s.starts_at >= $2 and s.starts_at < $3";

/// A segment in review: its appointment and its last error's kind.
pub type ReviewErrorKind = (Uuid, Option<String>);

/// Identifies one claim of a job: writes for it succeed only while it still holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub appointment_id: Uuid,
    pub owner: String,
    /// `sync_jobs.runs` after the claim: a new claim always has a larger number.
    pub run: i32,
}

/// A job leased to this worker.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub sync_job_id: Uuid,
    pub tenant_id: Uuid,
    pub fence: Fence,
    /// Ops asked for a resync: check that booked segments still exist in Cal.com.
    pub verify_bookings: bool,
    /// Someone may be waiting for this run (the job was made due by a create, a resync, a
    /// cancel or a reschedule, not by a scheduled retry): its Cal.com calls go first.
    pub interactive: bool,
}

impl ClaimedJob {
    pub fn appointment_id(&self) -> Uuid {
        self.fence.appointment_id
    }
}

/// The tenant's Cal.com connection as the worker needs it.
#[derive(Debug, Clone)]
pub struct TenantConnection {
    pub tenant_id: Uuid,
    pub api_key: SecretString,
    pub base_url: String,
    pub team_id: Option<i64>,
}

/// The staff member a segment is booked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffCalcom {
    pub user_id: CalcomUserId,
    pub username: String,
    pub time_zone: String,
}

/// The stored event map of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedEventType {
    pub event_type_id: EventTypeId,
    pub bookable_event_type_id: EventTypeId,
    pub resolution: String,
}

/// One segment with everything the engine needs to book or cancel it. The engine never
/// edits it: the domain's [`SegmentBooking::apply`] gives the next `booking`, which the
/// store saves together with the attempt's outcome.
#[derive(Debug, Clone)]
pub struct SegmentWork {
    pub key: SegmentKey,
    pub position: i32,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub booking: SegmentBooking,
    pub staff: Option<StaffCalcom>,
    pub map: Option<MappedEventType>,
    /// The appointment was moved and the segment's booking may still stand here (its
    /// previous start), on `moving_from_event_type_id`: the engine moves it, then clears it.
    pub moving_from: Option<DateTime<Utc>>,
    pub moving_from_event_type_id: Option<i64>,
}

/// An appointment with its segments, as one job sees it.
#[derive(Debug, Clone)]
pub struct AppointmentWork {
    pub appointment_id: Uuid,
    pub tenant: TenantConnection,
    pub service_id: String,
    pub desired: DesiredState,
    pub time_zone: String,
    pub customer_name: String,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub notes: Option<String>,
    /// The caller's reason for cancelling, passed on to Cal.com.
    pub cancellation_reason: Option<String>,
    /// How many times the appointment was moved; carried in a booking's metadata.
    pub revision: i32,
    pub segments: Vec<SegmentWork>,
}

/// The write-ahead record of one call to Cal.com, written before the call is sent.
#[derive(Debug, Clone)]
pub struct AttemptStart {
    pub sync_attempt_id: Uuid,
    pub tenant_id: Uuid,
    pub appointment_id: Uuid,
    pub segment_key: SegmentKey,
    /// `create`, `reconcile`, `cancel`, `verify`, `resolve`, `cancel_duplicate`.
    pub operation: &'static str,
    pub event_type_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    /// The booking a cancel is about to cancel, and the one a reschedule moves from, known
    /// before the call: written ahead so that a process killed mid-call still leaves the
    /// log naming the booking it asked Cal.com to end.
    pub calcom_booking_uid: Option<String>,
    pub moved_from_uid: Option<String>,
}

/// How a call ended.
#[derive(Debug, Clone)]
pub struct AttemptFinish {
    pub sync_attempt_id: Uuid,
    pub finished_at: DateTime<Utc>,
    /// `created`, `adopted`, `not_found`, `cancelled`, `already_cancelled`, `exists`,
    /// `missing`, `resolved`, `failed`, `unknown` (may have created a booking).
    pub outcome: &'static str,
    pub error: Option<SegmentError>,
    pub calcom_booking_uid: Option<String>,
    /// A move's attempt: the booking it moved from (`calcom_booking_uid` is the new one).
    pub moved_from_uid: Option<String>,
}

/// One row of the attempt log, for `GET /appointments/{appointment_id}/sync`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    pub segment_key: String,
    pub operation: String,
    pub event_type_id: Option<i64>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Empty while the call is in flight (or when the worker died during it).
    pub outcome: Option<String>,
    pub error_kind: Option<String>,
    pub http_status: Option<i32>,
    pub calcom_message: Option<String>,
    pub calcom_booking_uid: Option<String>,
    /// A move's attempt: the booking it moved from.
    pub moved_from_uid: Option<String>,
    pub worker: Option<String>,
}

/// One segment's sync state, for `GET /appointments/{appointment_id}/sync`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SegmentSyncView {
    pub key: String,
    pub staff_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub status: SegmentSyncStatus,
    pub event_type_id: Option<i64>,
    pub calcom_booking_uid: Option<String>,
    pub calcom_booking_id: Option<i64>,
    pub attempts: i32,
    #[schema(value_type = Option<Object>)]
    pub last_error: Option<SegmentError>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub review_reason: Option<String>,
    /// Set while the segment's booking is being moved: where it stood before the
    /// appointment was rescheduled.
    pub moving_from: Option<DateTime<Utc>>,
}

/// An appointment's whole sync picture.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SyncView {
    pub appointment_id: Uuid,
    #[schema(value_type = String)]
    pub status: AppointmentSyncStatus,
    pub requires_manual_review: bool,
    pub review_reason: Option<String>,
    /// The caller's reason, when the appointment was cancelled with one (Cal.com was sent
    /// the same text).
    pub cancellation_reason: Option<String>,
    /// `pending`, `leased` or `done`.
    pub job_state: Option<String>,
    pub next_run_at: Option<DateTime<Utc>>,
    pub segments: Vec<SegmentSyncView>,
    pub attempts: Vec<AttemptRecord>,
}

/// What `GET /sync/health` reports for one tenant.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct SyncHealth {
    /// Appointments by sync status (every status present, zero when none).
    pub appointments_by_status: std::collections::BTreeMap<String, i64>,
    /// Finished Cal.com calls of the last 24 h that succeeded, divided by all finished calls;
    /// `None` when there were none.
    pub success_rate_24h: Option<f64>,
    pub attempts_24h: i64,
    pub failed_attempts_24h: i64,
    /// Age in seconds of the oldest due job not yet done.
    pub oldest_pending_job_age_seconds: Option<f64>,
    pub jobs_pending: i64,
    pub jobs_leased: i64,
    pub appointments_needing_review: i64,
    /// When the verification sweep last compared this tenant's coming bookings with
    /// Cal.com; `None` until it first has.
    pub last_verified_at: Option<DateTime<Utc>>,
}

/// A segment found by its Cal.com booking (webhooks carry only uid and id).
#[derive(Debug, Clone)]
pub struct BookedSegment {
    pub appointment_id: Uuid,
    pub segment_key: SegmentKey,
    pub status: SegmentSyncStatus,
    pub desired: DesiredState,
    pub calcom_booking_uid: Option<String>,
    pub starts_at: DateTime<Utc>,
    pub service_id: String,
    pub staff_id: StaffId,
    pub calcom_user_id: Option<i64>,
    pub calcom_username: Option<String>,
    /// The appointment's time zone.
    pub time_zone: String,
    /// Set while phasebook itself moves this booking (see `SegmentWork::moving_from`).
    pub moving_from: Option<DateTime<Utc>>,
}

/// A segment's event map, re-resolved: the id to book from now on.
#[derive(Debug, Clone)]
pub struct BookableUpdate {
    pub service_id: String,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub bookable: EventTypeId,
    pub resolution: String,
    pub checked_at: DateTime<Utc>,
}

/// The job's state after a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobNext {
    /// Nothing left to do until something changes.
    Done,
    /// Run again at this instant (a retry is scheduled).
    At(DateTime<Utc>),
}

/// Storage for the sync engine. Dyn-compatible, so the worker can hold
/// `Arc<dyn SyncStore>` whichever backend the service runs on.
#[async_trait]
pub trait SyncStore: Send + Sync + 'static {
    /// Leases up to `limit` due jobs (pending and due, or leased with an expired lease) to
    /// `owner` until `lease_until`, and commits the claim before returning.
    async fn claim_jobs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> StoreResult<Vec<ClaimedJob>> {
        self.claim_jobs_fairly(owner, now, lease_until, limit, limit, false)
            .await
    }

    /// Like `claim_jobs`, fair across tenants: tenants take turns (each tenant's oldest due
    /// job first, then each one's second, …), and no tenant ends up with more than
    /// `per_tenant` jobs leased to `owner`, so a tenant whose Cal.com hangs cannot take the
    /// whole worker. Jobs someone waits on ([`ClaimedJob::interactive`]) come first;
    /// `interactive_only` claims nothing else.
    async fn claim_jobs_fairly(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        per_tenant: i64,
        interactive_only: bool,
    ) -> StoreResult<Vec<ClaimedJob>>;

    /// Extends a held lease; `false` when the lease was lost.
    async fn renew_lease(&self, fence: &Fence, lease_until: DateTime<Utc>) -> StoreResult<bool>;

    /// Gives a job back (shutdown): pending again, due now.
    async fn release_job(&self, fence: &Fence, now: DateTime<Utc>) -> StoreResult<bool>;

    /// Everything a run needs; `None` if the appointment is gone.
    async fn load_work(&self, job: &ClaimedJob) -> StoreResult<Option<AppointmentWork>>;

    /// Writes the attempt row (write-ahead) and marks the segment `syncing` (or
    /// `cancelling`), fenced. `false`: the lease is lost and the call must not be made.
    async fn begin_attempt(
        &self,
        fence: &Fence,
        attempt: &AttemptStart,
        segment_status: SegmentSyncStatus,
    ) -> StoreResult<bool>;

    /// Saves the segment's new state, with how its call ended when one did, in one fenced
    /// transaction. `false`: the lease is lost and nothing was written.
    async fn save_segment(
        &self,
        fence: &Fence,
        attempt: Option<&AttemptFinish>,
        segment: &SegmentWork,
    ) -> StoreResult<bool>;

    /// Stores a re-resolved bookable event type for a segment's event map.
    async fn update_bookable_event_type(
        &self,
        tenant_id: Uuid,
        update: &BookableUpdate,
    ) -> StoreResult<()>;

    /// Ends a run: re-derives the appointment's sync status from its segments, and leaves
    /// the job done or pending for `next`, releasing the lease. Fenced.
    async fn finish_job(
        &self,
        fence: &Fence,
        now: DateTime<Utc>,
        next: JobNext,
    ) -> StoreResult<Option<AppointmentSync>>;

    /// Makes the appointment's job due now (creating it if missing): after a cancel, a
    /// webhook, or to retry. With `resync`, segments that failed or need review start over
    /// (attempt count and review cleared) and booked ones are verified in Cal.com.
    /// `None` when the appointment is not the tenant's.
    async fn request_sync(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        now: DateTime<Utc>,
        resync: bool,
    ) -> StoreResult<Option<AppointmentSync>>;

    /// The appointment's sync status as stored (cheap; for `Prefer: wait`).
    async fn appointment_sync(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<AppointmentSync>>;

    async fn sync_view(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
    ) -> StoreResult<Option<SyncView>>;

    async fn sync_health(&self, tenant_id: Uuid, now: DateTime<Utc>) -> StoreResult<SyncHealth>;

    /// Claims the verification sweep of tenants not swept since `since` (every replica may
    /// ask; each tenant is handed to one): stamps `verified_at = now` and returns their
    /// Cal.com connections.
    async fn claim_verification(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<TenantConnection>>;

    /// The synced segments of booked appointments starting in `[from, to)`.
    async fn synced_bookings_between(
        &self,
        tenant_id: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> StoreResult<Vec<StoredBooking>>;

    /// Asks the appointment's job to verify its bookings in Cal.com (and converge them),
    /// due now; a leased job runs again after its holder. `false`: no such appointment.
    async fn request_verification(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Booked appointments in review whose every segment in review failed only because
    /// Cal.com was unavailable (see `only_calcom_was_unavailable`).
    async fn reviews_waiting_for_calcom(&self, tenant_id: Uuid) -> StoreResult<Vec<Uuid>> {
        let rows = self.review_error_kinds(tenant_id).await?;
        let mut kinds: std::collections::BTreeMap<Uuid, Vec<Option<String>>> =
            std::collections::BTreeMap::new();
        for (appointment_id, kind) in rows {
            kinds.entry(appointment_id).or_default().push(kind);
        }
        Ok(kinds
            .into_iter()
            .filter(|(_, k)| {
                let k: Vec<Option<&str>> = k.iter().map(Option::as_deref).collect();
                only_calcom_was_unavailable(&k)
            })
            .map(|(id, _)| id)
            .collect())
    }

    /// (appointment, last error kind) of every segment in review of a booked appointment.
    async fn review_error_kinds(&self, tenant_id: Uuid) -> StoreResult<Vec<ReviewErrorKind>>;

    /// The tenant's webhook secret (`None`: no such tenant).
    async fn webhook_secret(&self, tenant_id: Uuid) -> StoreResult<Option<String>>;

    /// The segment holding a Cal.com booking, by uid or numeric id.
    async fn find_booked_segment(
        &self,
        tenant_id: Uuid,
        booking_uid: Option<&str>,
        booking_id: Option<i64>,
    ) -> StoreResult<Option<BookedSegment>>;

    /// Puts a segment in review (a change made in Cal.com), optionally pointing it at the
    /// booking that replaced its own, and re-derives the appointment's status.
    async fn review_segment(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        segment_key: &SegmentKey,
        reason: &str,
        replacement: Option<(&str, Option<i64>)>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Marks a segment cancelled in Cal.com as done when the appointment is cancelled too.
    async fn mark_segment_cancelled(
        &self,
        tenant_id: Uuid,
        appointment_id: Uuid,
        segment_key: &SegmentKey,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Jobs not done yet (pending or leased), and how many of those are due at `now`.
    async fn outstanding_jobs(&self, now: DateTime<Utc>) -> StoreResult<(i64, i64)>;

    /// The earliest `run_at` of a pending job (to sleep exactly until it).
    async fn next_run_at(&self) -> StoreResult<Option<DateTime<Utc>>>;
}

/// Derives the appointment's sync from stored rows `(segment_key, sync_status,
/// review_reason)`.
pub(crate) fn derive_from_rows(
    appointment_status: &str,
    rows: Vec<(String, String, Option<String>, bool)>,
) -> AppointmentSync {
    let desired = desired_state(appointment_status);
    let segments: Vec<SegmentState> = rows
        .into_iter()
        .filter_map(|(key, status, reason, has_error)| {
            Some(SegmentState {
                key: SegmentKey::parse(&key).ok()?,
                status: SegmentSyncStatus::parse(&status).unwrap_or(SegmentSyncStatus::Pending),
                retrying: has_error,
                review_reason: reason,
            })
        })
        .collect();
    derive_appointment_sync(desired, &segments)
}

/// A stored staff id back as the validated type.
pub(crate) fn staff_id(raw: String) -> Result<StaffId, sqlx::Error> {
    StaffId::parse(&raw).map_err(|e| sqlx::Error::ColumnDecode {
        index: "staff_id".into(),
        source: Box::new(e),
    })
}

/// `appointments.status` as the sync's target (the domain's derivation; an unknown text
/// reads as booked, as before).
pub(crate) fn desired_state(status: &str) -> DesiredState {
    AppointmentStatus::parse(status).map_or(DesiredState::Booked, AppointmentStatus::desired_state)
}

/// `last_error` as stored (JSON text).
pub(crate) fn encode_error(error: &Option<SegmentError>) -> Option<String> {
    error.as_ref().and_then(|e| serde_json::to_string(e).ok())
}

pub(crate) fn decode_error(raw: Option<String>) -> Option<SegmentError> {
    raw.and_then(|r| serde_json::from_str(&r).ok())
}

pub(crate) fn parse_segment_status(raw: &str) -> SegmentSyncStatus {
    SegmentSyncStatus::parse(raw).unwrap_or(SegmentSyncStatus::Pending)
}

pub(crate) fn parse_appointment_status(raw: &str) -> AppointmentSyncStatus {
    AppointmentSyncStatus::parse(raw).unwrap_or(AppointmentSyncStatus::Pending)
}

pub(crate) fn every_status_counted(
    counts: Vec<(String, i64)>,
) -> std::collections::BTreeMap<String, i64> {
    let mut out: std::collections::BTreeMap<String, i64> = AppointmentSyncStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), 0))
        .collect();
    for (status, n) in counts {
        *out.entry(status).or_insert(0) += n;
    }
    out
}

/// The due jobs a claim picks, fair across tenants (see `claim_jobs_fairly`): interactive
/// jobs first within each tenant, then tenants take turns. `interactive` is the backend's
/// expression for a job someone waits on. `$1` now, `$2` the owner, `$4` how many, `$5` the
/// per-tenant cap (a new appointment whose creator waits may go a third over it, into the
/// slots a worker keeps for such jobs; a job the engine made due again may not, or a tenant
/// whose Cal.com hangs would take those slots too), `$6` true to pick interactive jobs only.
pub(crate) fn fair_due_jobs(interactive: &str) -> String {
    format!(
        "select r.sync_job_id from ( \
           select sync_job_id, tenant_id, run_at, {interactive} as interactive, \
             (state = 'pending' and runs = 0 and awaited) as awaited, \
             row_number() over (partition by tenant_id \
               order by {interactive} desc, run_at) as turn \
           from sync_jobs \
           where (state = 'pending' and run_at <= $1) \
              or (state = 'leased' and lease_expires_at <= $1)) r \
         left join ( \
           select tenant_id, count(*) as running from sync_jobs \
           where state = 'leased' and lease_owner = $2 and lease_expires_at > $1 \
           group by tenant_id) b on b.tenant_id = r.tenant_id \
         where r.turn + coalesce(b.running, 0) <= \
             case when r.awaited then $5 + ($5 + 2) / 3 else $5 end \
           and (r.interactive or not $6) \
         order by r.interactive desc, r.turn, r.run_at limit $4"
    )
}

/// Resets the segments a resync starts over ([`SegmentBooking::RESET_ON_RESYNC`], the
/// domain's rule): to cancelling when the parameter `cancelled` is true, else to pending.
/// `updated_at` is the dialect's expression for the change's instant.
pub(crate) fn reset_on_resync_sql(cancelled: &str, updated_at: &str) -> String {
    let statuses = SegmentBooking::RESET_ON_RESYNC
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "update appointment_segments set \
         sync_status = case when {cancelled} then 'cancelling' else 'pending' end, \
         attempts = 0, next_attempt_at = null, review_reason = null, updated_at = {updated_at} \
         where appointment_id = $1 and sync_status in ({statuses})"
    )
}

pub(crate) const RENEW_LEASE: &str = "update sync_jobs set lease_expires_at = $4 \
     where appointment_id = $1 and state = 'leased' and lease_owner = $2 and runs = $3";

pub(crate) const LOAD_APPOINTMENT: &str = "select a.service_id, a.status, a.time_zone, \
     a.customer_name, a.customer_email, a.customer_phone, a.notes, a.cancellation_reason, \
     a.revision, t.calcom_api_key, t.calcom_base_url, t.calcom_team_id \
     from appointments a join tenants t on t.tenant_id = a.tenant_id \
     where a.appointment_id = $1 and a.tenant_id = $2";

pub(crate) const APPOINTMENT_SYNC: &str = "select sync_status, requires_manual_review, \
     review_reason from appointments where appointment_id = $1 and tenant_id = $2";

pub(crate) const JOB_STATE: &str = "select state, run_at from sync_jobs where appointment_id = $1";

pub(crate) const SEGMENT_VIEWS: &str = "select segment_key, staff_id, starts_at, ends_at, \
     sync_status, event_type_id, calcom_booking_uid, calcom_booking_id, attempts, last_error, \
     next_attempt_at, review_reason, moving_from from appointment_segments \
     where appointment_id = $1 order by position";

pub(crate) const ATTEMPT_RECORDS: &str = "select segment_key, operation, event_type_id, \
     started_at, finished_at, outcome, error_kind, http_status, calcom_message, \
     calcom_booking_uid, moved_from_uid, worker \
     from sync_attempts where appointment_id = $1 and tenant_id = $2 \
     order by started_at, sync_attempt_id";

pub(crate) const CANCELLATION_REASON: &str =
    "select cancellation_reason from appointments where appointment_id = $1";

pub(crate) const WEBHOOK_SECRET: &str = "select webhook_secret from tenants where tenant_id = $1";

/// `$2` a booking uid, `$3` a booking id, either may be null; the uid wins.
pub(crate) const FIND_BOOKED_SEGMENT: &str = "select s.appointment_id, s.segment_key, \
     s.sync_status, s.calcom_booking_uid, s.starts_at, s.staff_id, a.status, a.service_id, \
     a.time_zone, s.moving_from, st.calcom_user_id, st.calcom_username \
     from appointment_segments s \
     join appointments a on a.appointment_id = s.appointment_id \
     left join staff st on st.tenant_id = s.tenant_id and st.staff_id = s.staff_id \
     where s.tenant_id = $1 and ((s.calcom_booking_uid = $2) \
       or (cast($3 as bigint) is not null and s.calcom_booking_id = $3)) \
     order by case when s.calcom_booking_uid = $2 then 0 else 1 end limit 1";

pub(crate) const NEXT_RUN_AT: &str = "select min(case when state = 'pending' then run_at \
     else lease_expires_at end) as next_run_at from sync_jobs where state <> 'done'";

/// The parts of [`SyncStore`] written once for both backends, as free functions the
/// backend's implementation calls. The invoking module provides the codec of `shared.rs`
/// (`db_id`, `db_at`, `get_id`, `get_at`, `get_opt_at`) and, for the two columns whose
/// representation differs beyond it, `last_error(row)` (the error as JSON text) and
/// `flag(row, column)` (a boolean).
macro_rules! sync_shared {
    (pool = $pool:ty, row = $row:ty) => {
        fn segment_key(raw: String) -> Result<SegmentKey, sqlx::Error> {
            SegmentKey::parse(&raw).map_err(|e| sqlx::Error::ColumnDecode {
                index: "segment_key".into(),
                source: Box::new(e),
            })
        }

        fn segment_from_row(row: &$row) -> StoreResult<SegmentWork> {
            let user_id: Option<i64> = row.try_get("calcom_user_id")?;
            let username: Option<String> = row.try_get("calcom_username")?;
            let staff_zone: Option<String> = row.try_get("staff_time_zone")?;
            let staff = match (user_id, username) {
                (Some(user_id), Some(username)) => Some(StaffCalcom {
                    user_id: CalcomUserId(user_id),
                    username,
                    time_zone: staff_zone.unwrap_or_default(),
                }),
                _ => None,
            };
            let map_configured: Option<i64> = row.try_get("map_event_type_id")?;
            let map_bookable: Option<i64> = row.try_get("bookable_event_type_id")?;
            let map = match (map_configured, map_bookable) {
                (Some(configured), Some(bookable)) => Some(MappedEventType {
                    event_type_id: EventTypeId(configured),
                    bookable_event_type_id: EventTypeId(bookable),
                    resolution: row
                        .try_get::<Option<String>, _>("resolution")?
                        .unwrap_or_default(),
                }),
                _ => None,
            };
            Ok(SegmentWork {
                key: segment_key(row.try_get("segment_key")?)?,
                position: row.try_get("position")?,
                staff_id: staff_id(row.try_get("staff_id")?)?,
                starts_at: get_at(row, "starts_at")?,
                ends_at: get_at(row, "ends_at")?,
                booking: SegmentBooking {
                    status: parse_segment_status(row.try_get("sync_status")?),
                    event_type_id: row.try_get("event_type_id")?,
                    calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                    calcom_booking_id: row.try_get("calcom_booking_id")?,
                    attempts: row.try_get("attempts")?,
                    last_error: decode_error(last_error(row)?),
                    next_attempt_at: get_opt_at(row, "next_attempt_at")?,
                    review_reason: row.try_get("review_reason")?,
                    earlier_outcome_unknown: flag(row, "create_outcome_unknown")?,
                },
                staff,
                map,
                moving_from: get_opt_at(row, "moving_from")?,
                moving_from_event_type_id: row.try_get("moving_from_event_type_id")?,
            })
        }

        fn tenant_connection_from_row(
            row: &$row,
            tenant_id: Uuid,
        ) -> StoreResult<TenantConnection> {
            Ok(TenantConnection {
                tenant_id,
                api_key: crate::secrets::open_column(
                    tenant_id,
                    crate::secrets::SecretField::CalcomApiKey,
                    row.try_get("calcom_api_key")?,
                )?,
                base_url: row.try_get("calcom_base_url")?,
                team_id: row.try_get("calcom_team_id")?,
            })
        }

        async fn renew_lease(
            pool: &$pool,
            fence: &Fence,
            lease_until: DateTime<Utc>,
        ) -> StoreResult<bool> {
            let done = sqlx::query(super::sync::RENEW_LEASE)
                .bind(db_id(fence.appointment_id))
                .bind(&fence.owner)
                .bind(fence.run)
                .bind(db_at(lease_until))
                .execute(pool)
                .await?;
            Ok(done.rows_affected() == 1)
        }

        async fn load_work(pool: &$pool, job: &ClaimedJob) -> StoreResult<Option<AppointmentWork>> {
            let Some(row) = sqlx::query(super::sync::LOAD_APPOINTMENT)
                .bind(db_id(job.appointment_id()))
                .bind(db_id(job.tenant_id))
                .fetch_optional(pool)
                .await?
            else {
                return Ok(None);
            };
            let service_id: String = row.try_get("service_id")?;
            let segments = sqlx::query(super::LOAD_SEGMENTS)
                .bind(db_id(job.appointment_id()))
                .bind(db_id(job.tenant_id))
                .bind(&service_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(segment_from_row)
                .collect::<StoreResult<Vec<_>>>()?;
            let status: String = row.try_get("status")?;
            Ok(Some(AppointmentWork {
                appointment_id: job.appointment_id(),
                tenant: tenant_connection_from_row(&row, job.tenant_id)?,
                service_id,
                desired: desired_state(&status),
                time_zone: row.try_get("time_zone")?,
                customer_name: row.try_get("customer_name")?,
                customer_email: row.try_get("customer_email")?,
                customer_phone: row.try_get("customer_phone")?,
                notes: row.try_get("notes")?,
                cancellation_reason: row.try_get("cancellation_reason")?,
                revision: row.try_get("revision")?,
                segments,
            }))
        }

        async fn appointment_sync(
            pool: &$pool,
            tenant_id: Uuid,
            appointment_id: Uuid,
        ) -> StoreResult<Option<AppointmentSync>> {
            let row: Option<(String, bool, Option<String>)> =
                sqlx::query_as(super::sync::APPOINTMENT_SYNC)
                    .bind(db_id(appointment_id))
                    .bind(db_id(tenant_id))
                    .fetch_optional(pool)
                    .await?;
            Ok(row.map(|(status, review, reason)| AppointmentSync {
                status: parse_appointment_status(&status),
                requires_manual_review: review,
                review_reason: reason,
            }))
        }

        async fn sync_view(
            pool: &$pool,
            tenant_id: Uuid,
            appointment_id: Uuid,
        ) -> StoreResult<Option<SyncView>> {
            let Some(sync) = appointment_sync(pool, tenant_id, appointment_id).await? else {
                return Ok(None);
            };
            let job = sqlx::query(super::sync::JOB_STATE)
                .bind(db_id(appointment_id))
                .fetch_optional(pool)
                .await?
                .map(|row| -> StoreResult<(String, DateTime<Utc>)> {
                    Ok((row.try_get("state")?, get_at(&row, "run_at")?))
                })
                .transpose()?;
            let segments = sqlx::query(super::sync::SEGMENT_VIEWS)
                .bind(db_id(appointment_id))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(SegmentSyncView {
                        key: row.try_get("segment_key")?,
                        staff_id: row.try_get("staff_id")?,
                        starts_at: get_at(row, "starts_at")?,
                        ends_at: get_at(row, "ends_at")?,
                        status: parse_segment_status(row.try_get("sync_status")?),
                        event_type_id: row.try_get("event_type_id")?,
                        calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                        calcom_booking_id: row.try_get("calcom_booking_id")?,
                        attempts: row.try_get("attempts")?,
                        last_error: decode_error(last_error(row)?),
                        next_attempt_at: get_opt_at(row, "next_attempt_at")?,
                        review_reason: row.try_get("review_reason")?,
                        moving_from: get_opt_at(row, "moving_from")?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let attempts = sqlx::query(super::sync::ATTEMPT_RECORDS)
                .bind(db_id(appointment_id))
                .bind(db_id(tenant_id))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(AttemptRecord {
                        segment_key: row.try_get("segment_key")?,
                        operation: row.try_get("operation")?,
                        event_type_id: row.try_get("event_type_id")?,
                        started_at: get_at(row, "started_at")?,
                        finished_at: get_opt_at(row, "finished_at")?,
                        outcome: row.try_get("outcome")?,
                        error_kind: row.try_get("error_kind")?,
                        http_status: row.try_get("http_status")?,
                        calcom_message: row.try_get("calcom_message")?,
                        calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                        moved_from_uid: row.try_get("moved_from_uid")?,
                        worker: row.try_get("worker")?,
                    })
                })
                .collect::<StoreResult<Vec<_>>>()?;
            let cancellation_reason: Option<String> =
                sqlx::query_scalar(super::sync::CANCELLATION_REASON)
                    .bind(db_id(appointment_id))
                    .fetch_optional(pool)
                    .await?
                    .flatten();
            Ok(Some(SyncView {
                appointment_id,
                status: sync.status,
                requires_manual_review: sync.requires_manual_review,
                review_reason: sync.review_reason,
                cancellation_reason,
                job_state: job.as_ref().map(|(state, _)| state.clone()),
                next_run_at: job.and_then(|(state, at)| (state == "pending").then_some(at)),
                segments,
                attempts,
            }))
        }

        async fn claim_verification(
            pool: &$pool,
            since: DateTime<Utc>,
            now: DateTime<Utc>,
        ) -> StoreResult<Vec<TenantConnection>> {
            sqlx::query(super::sync::CLAIM_VERIFICATION)
                .bind(db_at(since))
                .bind(db_at(now))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| tenant_connection_from_row(row, get_id(row, "tenant_id")?))
                .collect()
        }

        async fn synced_bookings_between(
            pool: &$pool,
            tenant_id: Uuid,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> StoreResult<Vec<StoredBooking>> {
            sqlx::query(super::sync::SYNCED_BOOKINGS_BETWEEN)
                .bind(db_id(tenant_id))
                .bind(db_at(from))
                .bind(db_at(to))
                .fetch_all(pool)
                .await?
                .iter()
                .map(|row| {
                    Ok(StoredBooking {
                        appointment_id: get_id(row, "appointment_id")?,
                        segment_key: segment_key(row.try_get("segment_key")?)?,
                        calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                        starts_at: get_at(row, "starts_at")?,
                        ends_at: get_at(row, "ends_at")?,
                    })
                })
                .collect()
        }

        async fn webhook_secret(pool: &$pool, tenant_id: Uuid) -> StoreResult<Option<String>> {
            let stored: Option<String> = sqlx::query_scalar(super::sync::WEBHOOK_SECRET)
                .bind(db_id(tenant_id))
                .fetch_optional(pool)
                .await?;
            stored
                .map(|stored| {
                    use secrecy::ExposeSecret;
                    crate::secrets::open_column(
                        tenant_id,
                        crate::secrets::SecretField::WebhookSecret,
                        &stored,
                    )
                    .map(|secret| secret.expose_secret().to_string())
                })
                .transpose()
                .map_err(StoreError::from)
        }

        async fn find_booked_segment(
            pool: &$pool,
            tenant_id: Uuid,
            booking_uid: Option<&str>,
            booking_id: Option<i64>,
        ) -> StoreResult<Option<BookedSegment>> {
            let row = sqlx::query(super::sync::FIND_BOOKED_SEGMENT)
                .bind(db_id(tenant_id))
                .bind(booking_uid)
                .bind(booking_id)
                .fetch_optional(pool)
                .await?;
            row.map(|row| {
                Ok(BookedSegment {
                    appointment_id: get_id(&row, "appointment_id")?,
                    segment_key: segment_key(row.try_get("segment_key")?)?,
                    status: parse_segment_status(row.try_get("sync_status")?),
                    desired: desired_state(row.try_get("status")?),
                    calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                    starts_at: get_at(&row, "starts_at")?,
                    service_id: row.try_get("service_id")?,
                    staff_id: staff_id(row.try_get("staff_id")?)?,
                    calcom_user_id: row.try_get("calcom_user_id")?,
                    calcom_username: row.try_get("calcom_username")?,
                    time_zone: row.try_get("time_zone")?,
                    moving_from: get_opt_at(&row, "moving_from")?,
                })
            })
            .transpose()
        }

        async fn next_run_at(pool: &$pool) -> StoreResult<Option<DateTime<Utc>>> {
            let row = sqlx::query(super::sync::NEXT_RUN_AT)
                .fetch_one(pool)
                .await?;
            get_opt_at(&row, "next_run_at")
        }
    };
}

pub(crate) use sync_shared;
