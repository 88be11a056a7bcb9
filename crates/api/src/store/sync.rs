//! Storage for the sync engine: leasing outbox jobs, the write-ahead attempt log, segment
//! booking state, the derived appointment sync status, and the read models behind
//! `GET /appointments/{appointment_id}/sync` and `GET /sync/health`. [`SyncStore`] is
//! written once here (`sync_shared!`); `sync_pg.rs` and `sync_sqlite.rs` add only job
//! leasing and row locks. Every instant a statement writes is bound, taken once per call in
//! Rust, never the database's clock.
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
/// jobs first within each tenant, then tenants take turns. `candidates` yields the due rows
/// a turn is counted over, as `(sync_job_id, tenant_id, run_at, interactive, awaited)`
/// (see [`due_jobs`] and the PostgreSQL store's per-tenant read). `$1` now, `$2` the owner,
/// `$4` how many, `$5` the per-tenant cap (a new appointment whose creator waits may go a
/// third over it, into the slots a worker keeps for such jobs; a job the engine made due
/// again may not, or a tenant whose Cal.com hangs would take those slots too), `$6` true
/// to pick interactive jobs only.
pub(crate) fn fair_due_jobs(candidates: &str) -> String {
    format!(
        "select r.sync_job_id from ( \
           select c.*, row_number() over (partition by c.tenant_id \
             order by c.interactive desc, c.run_at) as turn \
           from ({candidates}) c) r \
         left join ( \
           select tenant_id, count(*) as running from sync_jobs \
           where state = 'leased' and lease_owner = $2 and lease_expires_at > $1 \
           group by tenant_id) b on b.tenant_id = r.tenant_id \
         where r.turn + coalesce(b.running, 0) <= \
             case when r.awaited then {TENANT_REACH} else $5 end \
           and (r.interactive or not $6) \
         order by r.interactive desc, r.turn, r.run_at limit $4"
    )
}

/// The most turns of one tenant a claim can reach: the cap (`$5`), or a third over it for a
/// new appointment whose creator waits.
pub(crate) const TENANT_REACH: &str = "($5 + ($5 + 2) / 3)";

/// Every due row as a claim's candidate (the ranking reads them all); `{interactive}` is
/// the backend's expression for a job someone waits on.
pub(crate) fn due_jobs(interactive: &str) -> String {
    format!(
        "select sync_job_id, tenant_id, run_at, {interactive} as interactive, \
           (state = 'pending' and runs = 0 and awaited) as awaited \
         from sync_jobs \
         where (state = 'pending' and run_at <= $1) \
            or (state = 'leased' and lease_expires_at <= $1)"
    )
}

/// Resets the segments a resync starts over ([`SegmentBooking::RESET_ON_RESYNC`], the
/// domain's rule): `$1` the appointment, `$2` now, `$3` true to reset to cancelling, else
/// to pending.
pub(crate) fn reset_on_resync_sql() -> String {
    let statuses = SegmentBooking::RESET_ON_RESYNC
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "update appointment_segments set \
         sync_status = case when $3 then 'cancelling' else 'pending' end, \
         attempts = 0, next_attempt_at = null, review_reason = null, updated_at = $2 \
         where appointment_id = $1 and sync_status in ({statuses})"
    )
}

/// How a write on behalf of a job locks its appointment's row, where the dialect locks rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppointmentLock {
    /// Every transaction that changes an appointment (cancel, resync, the worker's writes)
    /// takes this lock before any other, so they queue instead of deadlocking.
    Update,
    /// Enough to begin an attempt: the segments' attempts may begin side by side.
    KeyShare,
}

pub(crate) const RENEW_LEASE: &str = "update sync_jobs set lease_expires_at = $4 \
     where appointment_id = $1 and state = 'leased' and lease_owner = $2 and runs = $3";

/// `$4` now: pending again and due at once.
pub(crate) const RELEASE_JOB: &str = "update sync_jobs set state = 'pending', run_at = $4, \
     lease_owner = null, lease_expires_at = null, updated_at = $4 where appointment_id = $1 \
     and state = 'leased' and lease_owner = $2 and runs = $3";

/// The write-ahead row, written only while the fence (`$1` appointment, `$2` owner, `$3`
/// run) holds.
pub(crate) const INSERT_ATTEMPT: &str = "insert into sync_attempts (sync_attempt_id, \
     tenant_id, appointment_id, segment_key, operation, event_type_id, started_at, worker, \
     calcom_booking_uid, moved_from_uid) \
     select $4, $5, $1, $6, $7, $8, $9, $2, $10, $11 where exists (select 1 from sync_jobs j \
       where j.appointment_id = $1 and j.state = 'leased' and j.lease_owner = $2 \
       and j.runs = $3)";

/// `$3` the segment's new status, `$4` now.
pub(crate) const MARK_SEGMENT_STATUS: &str = "update appointment_segments \
     set sync_status = $3, updated_at = $4 where appointment_id = $1 and segment_key = $2";

pub(crate) const FINISH_ATTEMPT: &str = "update sync_attempts set finished_at = $2, \
     outcome = $3, error_kind = $4, http_status = $5, calcom_message = $6, \
     calcom_booking_uid = $7, moved_from_uid = $8 where sync_attempt_id = $1";

/// A segment's booking state, `$11` now.
pub(crate) const WRITE_SEGMENT: &str = "update appointment_segments set sync_status = $3, \
     event_type_id = $4, calcom_booking_uid = $5, calcom_booking_id = $6, attempts = $7, \
     last_error = $8, next_attempt_at = $9, review_reason = $10, updated_at = $11, \
     moving_from = $12, moving_from_event_type_id = $13 \
     where appointment_id = $1 and segment_key = $2";

/// `$7` when the map was checked, which is also when it changed.
pub(crate) const UPDATE_BOOKABLE: &str = "update event_maps set bookable_event_type_id = $5, \
     resolution = $6, checked_at = $7, unverified_reason = null, updated_at = $7 \
     where tenant_id = $1 and service_id = $2 and segment_key = $3 and staff_id = $4";

/// Ends a run: `$2` the job's state, `$3` when it runs again (null: keep), `$4` now. A
/// request that arrived during the run (`rerun`) makes the job due again now.
pub(crate) const FINISH_JOB: &str = "update sync_jobs set \
     state = case when rerun then 'pending' else $2 end, \
     run_at = case when not rerun then coalesce($3, run_at) \
       when run_at < $4 then run_at else $4 end, \
     lease_owner = null, lease_expires_at = null, \
     verify_bookings = verify_bookings and rerun, rerun = false, \
     updated_at = $4 where appointment_id = $1";

/// Makes the appointment's job due at `$4` (now), asking it to verify its bookings when
/// `$5`. A job already leased keeps its lease: the holder finishes, and the flag or state it
/// leaves behind is re-read on the next run.
pub(crate) const QUEUE_JOB: &str = "insert into sync_jobs (sync_job_id, tenant_id, \
     appointment_id, state, run_at, verify_bookings, created_at, updated_at) \
     values ($1, $2, $3, 'pending', $4, $5, $4, $4) \
     on conflict (appointment_id) do update set \
       state = case when sync_jobs.state = 'leased' then 'leased' else 'pending' end, \
       rerun = sync_jobs.state = 'leased', \
       run_at = $4, verify_bookings = sync_jobs.verify_bookings or $5, \
       updated_at = $4";

pub(crate) const SEGMENT_SYNC_ROWS: &str = "select segment_key, sync_status, review_reason, \
     last_error is not null from appointment_segments where appointment_id = $1 \
     order by position";

pub(crate) const WRITE_APPOINTMENT_SYNC: &str = "update appointments set sync_status = $2, \
     requires_manual_review = $3, review_reason = $4, updated_at = $5 \
     where appointment_id = $1";

/// A change seen in Cal.com: `$4` why, `$5` and `$6` the booking that replaced the
/// segment's own (both null when none did), `$7` now.
pub(crate) const REVIEW_SEGMENT: &str = "update appointment_segments \
     set sync_status = 'needs_review', review_reason = $4, \
     calcom_booking_uid = coalesce($5, calcom_booking_uid), \
     calcom_booking_id = case when cast($5 as text) is null then calcom_booking_id else $6 end, \
     next_attempt_at = null, updated_at = $7 \
     where tenant_id = $1 and appointment_id = $2 and segment_key = $3";

pub(crate) const MARK_SEGMENT_CANCELLED: &str = "update appointment_segments \
     set sync_status = 'cancelled', next_attempt_at = null, updated_at = $4 \
     where tenant_id = $1 and appointment_id = $2 and segment_key = $3";

pub(crate) const APPOINTMENTS_BY_SYNC_STATUS: &str = "select sync_status, count(*) \
     from appointments where tenant_id = $1 group by sync_status";

/// Finished calls since `$2`, and how many of them failed.
pub(crate) const ATTEMPTS_SINCE: &str = "select count(*) as total, \
     count(*) filter (where outcome in ('failed', 'unknown')) as failed \
     from sync_attempts where tenant_id = $1 and started_at >= $2 and finished_at is not null";

/// `$2` now.
pub(crate) const JOB_COUNTS: &str = "select count(*) filter (where state = 'pending') as pending, \
     count(*) filter (where state = 'leased') as leased, \
     min(run_at) filter (where state <> 'done' and run_at <= $2) as oldest \
     from sync_jobs where tenant_id = $1";

pub(crate) const APPOINTMENTS_IN_REVIEW: &str = "select count(*) from appointments \
     where tenant_id = $1 and requires_manual_review";

pub(crate) const VERIFIED_AT: &str = "select verified_at from tenants where tenant_id = $1";

pub(crate) const REVIEW_ERROR_KINDS: &str = "select s.appointment_id, \
     s.last_error->>'kind' as kind from appointment_segments s \
     join appointments a on a.appointment_id = s.appointment_id \
     where s.tenant_id = $1 and a.status = 'booked' and s.sync_status = 'needs_review'";

/// `$1` now.
pub(crate) const OUTSTANDING_JOBS: &str = "select count(*), \
     count(*) filter (where (state = 'pending' and run_at <= $1) \
       or (state = 'leased' and lease_expires_at <= $1)) \
     from sync_jobs where state <> 'done'";

pub(crate) const LOAD_APPOINTMENT: &str = "select a.service_id, a.status, a.time_zone, \
     a.customer_name, a.customer_email, a.customer_phone, a.notes, a.cancellation_reason, \
     a.revision, t.calcom_api_key, t.calcom_base_url, t.calcom_team_id \
     from appointments a join tenants t on t.tenant_id = a.tenant_id \
     where a.appointment_id = $1 and a.tenant_id = $2";

pub(crate) const APPOINTMENT_SYNC: &str = "select sync_status, requires_manual_review, \
     review_reason from appointments where appointment_id = $1 and tenant_id = $2";

pub(crate) const JOB_STATE: &str = "select state, run_at from sync_jobs where appointment_id = $1";

pub(crate) const SEGMENT_VIEWS: &str = concat!(
    "select s.segment_key, s.staff_id, s.starts_at, s.ends_at, s.sync_status, \
     s.event_type_id, s.calcom_booking_uid, s.calcom_booking_id, s.attempts, s.last_error, \
     s.next_attempt_at, s.review_reason, s.moving_from, ",
    super::create_outcome_unknown_column!(),
    " from appointment_segments s where s.appointment_id = $1 order by s.position"
);

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

/// [`SyncStore`] for one backend, written once; it brings the names of this module it uses
/// into the invoking module. That module provides the codec of `shared.rs` (`db_id`,
/// `db_at`, `get_id`, `get_at`, `get_opt_at`, `get_json`) and what really differs between
/// the dialects:
///
/// - `begin_write(pool)`: a transaction that may write;
/// - `lock_appointment(tx, appointment_id, AppointmentLock)`: the appointment's row lock,
///   where the dialect has row locks (`for_update` is the suffix that locks a selected row);
/// - `claim_due_jobs(pool, owner, now, lease_until, limit, per_tenant, interactive_only)`:
///   job leasing (see [`SyncStore::claim_jobs_fairly`]), mapping rows with `claimed_job`.
macro_rules! sync_shared {
    (pool = $pool:ty, row = $row:ty, db = $db:ty, for_update = $for_update:literal) => {
        use chrono::{DateTime, Utc};
        use phasebook_domain::sync::{
            AppointmentSync, SegmentBooking, SegmentSyncStatus, StoredBooking,
        };
        use phasebook_domain::{CalcomUserId, EventTypeId, SegmentKey};
        use sqlx::Row;
        use uuid::Uuid;

        use super::StoreError;
        use super::sync::{
            AppointmentLock, AppointmentWork, AttemptFinish, AttemptRecord, AttemptStart,
            BookableUpdate, BookedSegment, ClaimedJob, Fence, JobNext, MappedEventType,
            SegmentSyncView, SegmentWork, StaffCalcom, StoreResult, SyncHealth, SyncStore,
            SyncView, TenantConnection, derive_from_rows, desired_state, every_status_counted,
            parse_appointment_status, parse_segment_status, staff_id,
        };

        type WriteTx = sqlx::Transaction<'static, $db>;

        fn segment_key(raw: String) -> Result<SegmentKey, sqlx::Error> {
            SegmentKey::parse(&raw).map_err(|e| sqlx::Error::ColumnDecode {
                index: "segment_key".into(),
                source: Box::new(e),
            })
        }

        /// The segment's booking state, from the columns of `appointment_segments` and the
        /// `create_outcome_unknown` column.
        fn segment_booking(row: &$row) -> StoreResult<SegmentBooking> {
            Ok(SegmentBooking {
                status: parse_segment_status(row.try_get("sync_status")?),
                event_type_id: row.try_get("event_type_id")?,
                calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                calcom_booking_id: row.try_get("calcom_booking_id")?,
                attempts: row.try_get("attempts")?,
                // Written only from a `SegmentError`: anything else reads as no error.
                last_error: get_json(row, "last_error")?
                    .and_then(|value| serde_json::from_value(value).ok()),
                next_attempt_at: get_opt_at(row, "next_attempt_at")?,
                review_reason: row.try_get("review_reason")?,
                earlier_outcome_unknown: row.try_get("create_outcome_unknown")?,
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
                booking: segment_booking(row)?,
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

        /// A claimed job from the row a claim returned (`sync_job_id`, `tenant_id`,
        /// `appointment_id`, `runs`, `verify_bookings`).
        fn claimed_job(row: &$row, owner: &str, interactive: bool) -> StoreResult<ClaimedJob> {
            Ok(ClaimedJob {
                sync_job_id: get_id(row, "sync_job_id")?,
                tenant_id: get_id(row, "tenant_id")?,
                verify_bookings: row.try_get("verify_bookings")?,
                interactive,
                fence: Fence {
                    appointment_id: get_id(row, "appointment_id")?,
                    owner: owner.to_string(),
                    run: row.try_get("runs")?,
                },
            })
        }

        /// Whether the fence still holds, locking the job row where the dialect can.
        async fn check_fence(tx: &mut WriteTx, fence: &Fence) -> StoreResult<bool> {
            lock_appointment(tx, fence.appointment_id, AppointmentLock::Update).await?;
            let held = sqlx::query(concat!(
                "select 1 from sync_jobs where appointment_id = $1 and state = 'leased' \
                 and lease_owner = $2 and runs = $3",
                $for_update
            ))
            .bind(db_id(fence.appointment_id))
            .bind(&fence.owner)
            .bind(fence.run)
            .fetch_optional(&mut **tx)
            .await?;
            Ok(held.is_some())
        }

        /// Re-derives and stores the appointment's sync status from its segments.
        async fn refresh_appointment(
            tx: &mut WriteTx,
            appointment_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<Option<AppointmentSync>> {
            let Some(status) = sqlx::query_scalar::<_, String>(concat!(
                "select status from appointments where appointment_id = $1",
                $for_update
            ))
            .bind(db_id(appointment_id))
            .fetch_optional(&mut **tx)
            .await?
            else {
                return Ok(None);
            };
            let rows: Vec<(String, String, Option<String>, bool)> =
                sqlx::query_as(super::sync::SEGMENT_SYNC_ROWS)
                    .bind(db_id(appointment_id))
                    .fetch_all(&mut **tx)
                    .await?;
            let derived = derive_from_rows(&status, rows);
            sqlx::query(super::sync::WRITE_APPOINTMENT_SYNC)
                .bind(db_id(appointment_id))
                .bind(derived.status.as_str())
                .bind(derived.requires_manual_review)
                .bind(&derived.review_reason)
                .bind(db_at(now))
                .execute(&mut **tx)
                .await?;
            Ok(Some(derived))
        }

        /// Writes the segment's booking state (inside a transaction that checked the fence).
        async fn write_segment(
            tx: &mut WriteTx,
            appointment_id: Uuid,
            segment: &SegmentWork,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let booking = &segment.booking;
            sqlx::query(super::sync::WRITE_SEGMENT)
                .bind(db_id(appointment_id))
                .bind(segment.key.as_str())
                .bind(booking.status.as_str())
                .bind(booking.event_type_id)
                .bind(&booking.calcom_booking_uid)
                .bind(booking.calcom_booking_id)
                .bind(booking.attempts)
                .bind(booking.last_error.as_ref().map(sqlx::types::Json))
                .bind(booking.next_attempt_at.map(db_at))
                .bind(&booking.review_reason)
                .bind(db_at(now))
                .bind(segment.moving_from.map(db_at))
                .bind(segment.moving_from_event_type_id)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        /// [`SyncStore::request_sync`], tried again when it collides with another
        /// transaction: `resync` starts over what failed or waits for a person, `verify`
        /// asks the run to check booked segments in Cal.com.
        async fn request_sync(
            pool: &$pool,
            tenant_id: Uuid,
            appointment_id: Uuid,
            now: DateTime<Utc>,
            resync: bool,
            verify: bool,
        ) -> StoreResult<Option<AppointmentSync>> {
            let mut tries = 0;
            loop {
                match request_sync_once(pool, tenant_id, appointment_id, now, resync, verify)
                    .await
                {
                    Err(err)
                        if tries < super::RETRIES_ON_CONFLICT
                            && matches!(&err, StoreError::Database(e) if super::is_retryable(e)) =>
                    {
                        tries += 1;
                        tracing::warn!(appointment_id = %appointment_id, error = %err, "sync request collided with another transaction; trying again");
                    }
                    other => return other,
                }
            }
        }

        async fn request_sync_once(
            pool: &$pool,
            tenant_id: Uuid,
            appointment_id: Uuid,
            now: DateTime<Utc>,
            resync: bool,
            verify: bool,
        ) -> StoreResult<Option<AppointmentSync>> {
            let mut tx = begin_write(pool).await?;
            let owned = sqlx::query_scalar::<_, String>(concat!(
                "select status from appointments where appointment_id = $1 and tenant_id = $2",
                $for_update
            ))
            .bind(db_id(appointment_id))
            .bind(db_id(tenant_id))
            .fetch_optional(&mut *tx)
            .await?;
            let Some(status) = owned else {
                return Ok(None);
            };
            if resync {
                // A cancelled appointment's segments go back to cancelling, a booked
                // one's to pending.
                sqlx::query(sqlx::AssertSqlSafe(super::sync::reset_on_resync_sql()))
                    .bind(db_id(appointment_id))
                    .bind(db_at(now))
                    .bind(status == "cancelled")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(super::sync::QUEUE_JOB)
                .bind(db_id(Uuid::now_v7()))
                .bind(db_id(tenant_id))
                .bind(db_id(appointment_id))
                .bind(db_at(now))
                .bind(verify)
                .execute(&mut *tx)
                .await?;
            let derived = refresh_appointment(&mut tx, appointment_id, now).await?;
            tx.commit().await?;
            Ok(derived)
        }

        fn segment_view(row: &$row) -> StoreResult<SegmentSyncView> {
            let booking = segment_booking(row)?;
            Ok(SegmentSyncView {
                key: row.try_get("segment_key")?,
                staff_id: row.try_get("staff_id")?,
                starts_at: get_at(row, "starts_at")?,
                ends_at: get_at(row, "ends_at")?,
                status: booking.status,
                event_type_id: booking.event_type_id,
                calcom_booking_uid: booking.calcom_booking_uid,
                calcom_booking_id: booking.calcom_booking_id,
                attempts: booking.attempts,
                last_error: booking.last_error,
                next_attempt_at: booking.next_attempt_at,
                review_reason: booking.review_reason,
                moving_from: get_opt_at(row, "moving_from")?,
            })
        }

        fn attempt_record(row: &$row) -> StoreResult<AttemptRecord> {
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
        }

        fn booked_segment(row: &$row) -> StoreResult<BookedSegment> {
            Ok(BookedSegment {
                appointment_id: get_id(row, "appointment_id")?,
                segment_key: segment_key(row.try_get("segment_key")?)?,
                status: parse_segment_status(row.try_get("sync_status")?),
                desired: desired_state(row.try_get("status")?),
                calcom_booking_uid: row.try_get("calcom_booking_uid")?,
                starts_at: get_at(row, "starts_at")?,
                service_id: row.try_get("service_id")?,
                staff_id: staff_id(row.try_get("staff_id")?)?,
                calcom_user_id: row.try_get("calcom_user_id")?,
                calcom_username: row.try_get("calcom_username")?,
                time_zone: row.try_get("time_zone")?,
                moving_from: get_opt_at(row, "moving_from")?,
            })
        }

        #[async_trait::async_trait]
        impl SyncStore for $pool {
            async fn claim_jobs_fairly(
                &self,
                owner: &str,
                now: DateTime<Utc>,
                lease_until: DateTime<Utc>,
                limit: i64,
                per_tenant: i64,
                interactive_only: bool,
            ) -> StoreResult<Vec<ClaimedJob>> {
                claim_due_jobs(
                    self,
                    owner,
                    now,
                    lease_until,
                    limit,
                    per_tenant.max(1),
                    interactive_only,
                )
                .await
            }

            async fn renew_lease(
                &self,
                fence: &Fence,
                lease_until: DateTime<Utc>,
            ) -> StoreResult<bool> {
                let done = sqlx::query(super::sync::RENEW_LEASE)
                    .bind(db_id(fence.appointment_id))
                    .bind(&fence.owner)
                    .bind(fence.run)
                    .bind(db_at(lease_until))
                    .execute(self)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_job(&self, fence: &Fence, now: DateTime<Utc>) -> StoreResult<bool> {
                let done = sqlx::query(super::sync::RELEASE_JOB)
                    .bind(db_id(fence.appointment_id))
                    .bind(&fence.owner)
                    .bind(fence.run)
                    .bind(db_at(now))
                    .execute(self)
                    .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn load_work(&self, job: &ClaimedJob) -> StoreResult<Option<AppointmentWork>> {
                let Some(row) = sqlx::query(super::sync::LOAD_APPOINTMENT)
                    .bind(db_id(job.appointment_id()))
                    .bind(db_id(job.tenant_id))
                    .fetch_optional(self)
                    .await?
                else {
                    return Ok(None);
                };
                let service_id: String = row.try_get("service_id")?;
                let segments = sqlx::query(super::LOAD_SEGMENTS)
                    .bind(db_id(job.appointment_id()))
                    .bind(db_id(job.tenant_id))
                    .bind(&service_id)
                    .fetch_all(self)
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

            async fn begin_attempt(
                &self,
                fence: &Fence,
                attempt: &AttemptStart,
                segment_status: SegmentSyncStatus,
            ) -> StoreResult<bool> {
                let mut tx = begin_write(self).await?;
                lock_appointment(&mut tx, fence.appointment_id, AppointmentLock::KeyShare)
                    .await?;
                let written = sqlx::query(super::sync::INSERT_ATTEMPT)
                    .bind(db_id(fence.appointment_id))
                    .bind(&fence.owner)
                    .bind(fence.run)
                    .bind(db_id(attempt.sync_attempt_id))
                    .bind(db_id(attempt.tenant_id))
                    .bind(attempt.segment_key.as_str())
                    .bind(attempt.operation)
                    .bind(attempt.event_type_id)
                    .bind(db_at(attempt.started_at))
                    .bind(&attempt.calcom_booking_uid)
                    .bind(&attempt.moved_from_uid)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    == 1;
                if !written {
                    return Ok(false);
                }
                sqlx::query(super::sync::MARK_SEGMENT_STATUS)
                    .bind(db_id(fence.appointment_id))
                    .bind(attempt.segment_key.as_str())
                    .bind(segment_status.as_str())
                    .bind(db_at(attempt.started_at))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn save_segment(
                &self,
                fence: &Fence,
                attempt: Option<&AttemptFinish>,
                segment: &SegmentWork,
            ) -> StoreResult<bool> {
                let mut tx = begin_write(self).await?;
                if !check_fence(&mut tx, fence).await? {
                    return Ok(false);
                }
                if let Some(finish) = attempt {
                    let error = finish.error.as_ref();
                    sqlx::query(super::sync::FINISH_ATTEMPT)
                        .bind(db_id(finish.sync_attempt_id))
                        .bind(db_at(finish.finished_at))
                        .bind(finish.outcome)
                        .bind(error.map(|e| e.kind.clone()))
                        .bind(error.and_then(|e| e.http_status).map(i32::from))
                        .bind(error.map(|e| e.message.clone()))
                        .bind(&finish.calcom_booking_uid)
                        .bind(&finish.moved_from_uid)
                        .execute(&mut *tx)
                        .await?;
                }
                let now = attempt.map_or_else(Utc::now, |finish| finish.finished_at);
                write_segment(&mut tx, fence.appointment_id, segment, now).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn update_bookable_event_type(
                &self,
                tenant_id: Uuid,
                update: &BookableUpdate,
            ) -> StoreResult<()> {
                sqlx::query(super::sync::UPDATE_BOOKABLE)
                    .bind(db_id(tenant_id))
                    .bind(&update.service_id)
                    .bind(update.segment_key.as_str())
                    .bind(update.staff_id.as_str())
                    .bind(update.bookable.0)
                    .bind(&update.resolution)
                    .bind(db_at(update.checked_at))
                    .execute(self)
                    .await?;
                Ok(())
            }

            async fn finish_job(
                &self,
                fence: &Fence,
                now: DateTime<Utc>,
                next: JobNext,
            ) -> StoreResult<Option<AppointmentSync>> {
                let mut tx = begin_write(self).await?;
                if !check_fence(&mut tx, fence).await? {
                    return Ok(None);
                }
                let derived = refresh_appointment(&mut tx, fence.appointment_id, now).await?;
                let (state, run_at) = match next {
                    JobNext::Done => ("done", None),
                    JobNext::At(at) => ("pending", Some(at)),
                };
                sqlx::query(super::sync::FINISH_JOB)
                    .bind(db_id(fence.appointment_id))
                    .bind(state)
                    .bind(run_at.map(db_at))
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(derived)
            }

            async fn request_sync(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                now: DateTime<Utc>,
                resync: bool,
            ) -> StoreResult<Option<AppointmentSync>> {
                request_sync(self, tenant_id, appointment_id, now, resync, resync).await
            }

            async fn appointment_sync(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
            ) -> StoreResult<Option<AppointmentSync>> {
                let row: Option<(String, bool, Option<String>)> =
                    sqlx::query_as(super::sync::APPOINTMENT_SYNC)
                        .bind(db_id(appointment_id))
                        .bind(db_id(tenant_id))
                        .fetch_optional(self)
                        .await?;
                Ok(row.map(|(status, review, reason)| AppointmentSync {
                    status: parse_appointment_status(&status),
                    requires_manual_review: review,
                    review_reason: reason,
                }))
            }

            async fn sync_view(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
            ) -> StoreResult<Option<SyncView>> {
                let Some(sync) = self.appointment_sync(tenant_id, appointment_id).await? else {
                    return Ok(None);
                };
                let job = sqlx::query(super::sync::JOB_STATE)
                    .bind(db_id(appointment_id))
                    .fetch_optional(self)
                    .await?
                    .map(|row| -> StoreResult<(String, DateTime<Utc>)> {
                        Ok((row.try_get("state")?, get_at(&row, "run_at")?))
                    })
                    .transpose()?;
                let segments = sqlx::query(super::sync::SEGMENT_VIEWS)
                    .bind(db_id(appointment_id))
                    .fetch_all(self)
                    .await?
                    .iter()
                    .map(segment_view)
                    .collect::<StoreResult<Vec<_>>>()?;
                let attempts = sqlx::query(super::sync::ATTEMPT_RECORDS)
                    .bind(db_id(appointment_id))
                    .bind(db_id(tenant_id))
                    .fetch_all(self)
                    .await?
                    .iter()
                    .map(attempt_record)
                    .collect::<StoreResult<Vec<_>>>()?;
                let cancellation_reason: Option<String> =
                    sqlx::query_scalar(super::sync::CANCELLATION_REASON)
                        .bind(db_id(appointment_id))
                        .fetch_optional(self)
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

            async fn sync_health(
                &self,
                tenant_id: Uuid,
                now: DateTime<Utc>,
            ) -> StoreResult<SyncHealth> {
                let tenant = db_id(tenant_id);
                let counts: Vec<(String, i64)> =
                    sqlx::query_as(super::sync::APPOINTMENTS_BY_SYNC_STATUS)
                        .bind(&tenant)
                        .fetch_all(self)
                        .await?;
                let since = now - chrono::TimeDelta::hours(24);
                let (total, failed): (i64, i64) = sqlx::query_as(super::sync::ATTEMPTS_SINCE)
                    .bind(&tenant)
                    .bind(db_at(since))
                    .fetch_one(self)
                    .await?;
                let jobs = sqlx::query(super::sync::JOB_COUNTS)
                    .bind(&tenant)
                    .bind(db_at(now))
                    .fetch_one(self)
                    .await?;
                let oldest = get_opt_at(&jobs, "oldest")?;
                let review: i64 = sqlx::query_scalar(super::sync::APPOINTMENTS_IN_REVIEW)
                    .bind(&tenant)
                    .fetch_one(self)
                    .await?;
                let last_verified_at = match sqlx::query(super::sync::VERIFIED_AT)
                    .bind(&tenant)
                    .fetch_optional(self)
                    .await?
                {
                    Some(row) => get_opt_at(&row, "verified_at")?,
                    None => None,
                };
                Ok(SyncHealth {
                    appointments_by_status: every_status_counted(counts),
                    success_rate_24h: (total > 0).then(|| (total - failed) as f64 / total as f64),
                    attempts_24h: total,
                    failed_attempts_24h: failed,
                    oldest_pending_job_age_seconds: oldest
                        .map(|at| (now - at).num_milliseconds().max(0) as f64 / 1000.0),
                    jobs_pending: jobs.try_get("pending")?,
                    jobs_leased: jobs.try_get("leased")?,
                    appointments_needing_review: review,
                    last_verified_at,
                })
            }

            async fn claim_verification(
                &self,
                since: DateTime<Utc>,
                now: DateTime<Utc>,
            ) -> StoreResult<Vec<TenantConnection>> {
                sqlx::query(super::sync::CLAIM_VERIFICATION)
                    .bind(db_at(since))
                    .bind(db_at(now))
                    .fetch_all(self)
                    .await?
                    .iter()
                    .map(|row| tenant_connection_from_row(row, get_id(row, "tenant_id")?))
                    .collect()
            }

            async fn synced_bookings_between(
                &self,
                tenant_id: Uuid,
                from: DateTime<Utc>,
                to: DateTime<Utc>,
            ) -> StoreResult<Vec<StoredBooking>> {
                sqlx::query(super::sync::SYNCED_BOOKINGS_BETWEEN)
                    .bind(db_id(tenant_id))
                    .bind(db_at(from))
                    .bind(db_at(to))
                    .fetch_all(self)
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

            async fn request_verification(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                now: DateTime<Utc>,
            ) -> StoreResult<bool> {
                request_sync(self, tenant_id, appointment_id, now, false, true)
                    .await
                    .map(|found| found.is_some())
            }

            async fn review_error_kinds(
                &self,
                tenant_id: Uuid,
            ) -> StoreResult<Vec<super::sync::ReviewErrorKind>> {
                sqlx::query(super::sync::REVIEW_ERROR_KINDS)
                    .bind(db_id(tenant_id))
                    .fetch_all(self)
                    .await?
                    .iter()
                    .map(|row| Ok((get_id(row, "appointment_id")?, row.try_get("kind")?)))
                    .collect()
            }

            async fn webhook_secret(&self, tenant_id: Uuid) -> StoreResult<Option<String>> {
                let stored: Option<String> = sqlx::query_scalar(super::sync::WEBHOOK_SECRET)
                    .bind(db_id(tenant_id))
                    .fetch_optional(self)
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
                &self,
                tenant_id: Uuid,
                booking_uid: Option<&str>,
                booking_id: Option<i64>,
            ) -> StoreResult<Option<BookedSegment>> {
                sqlx::query(super::sync::FIND_BOOKED_SEGMENT)
                    .bind(db_id(tenant_id))
                    .bind(booking_uid)
                    .bind(booking_id)
                    .fetch_optional(self)
                    .await?
                    .as_ref()
                    .map(booked_segment)
                    .transpose()
            }

            async fn review_segment(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                segment_key: &SegmentKey,
                reason: &str,
                replacement: Option<(&str, Option<i64>)>,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                let (uid, booking_id) = match replacement {
                    Some((uid, booking_id)) => (Some(uid), booking_id),
                    None => (None, None),
                };
                let mut tx = begin_write(self).await?;
                sqlx::query(super::sync::REVIEW_SEGMENT)
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
                    .bind(segment_key.as_str())
                    .bind(reason)
                    .bind(uid)
                    .bind(booking_id)
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                refresh_appointment(&mut tx, appointment_id, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn mark_segment_cancelled(
                &self,
                tenant_id: Uuid,
                appointment_id: Uuid,
                segment_key: &SegmentKey,
                now: DateTime<Utc>,
            ) -> StoreResult<()> {
                let mut tx = begin_write(self).await?;
                sqlx::query(super::sync::MARK_SEGMENT_CANCELLED)
                    .bind(db_id(tenant_id))
                    .bind(db_id(appointment_id))
                    .bind(segment_key.as_str())
                    .bind(db_at(now))
                    .execute(&mut *tx)
                    .await?;
                refresh_appointment(&mut tx, appointment_id, now).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn outstanding_jobs(&self, now: DateTime<Utc>) -> StoreResult<(i64, i64)> {
                sqlx::query_as(super::sync::OUTSTANDING_JOBS)
                    .bind(db_at(now))
                    .fetch_one(self)
                    .await
                    .map_err(StoreError::from)
            }

            async fn next_run_at(&self) -> StoreResult<Option<DateTime<Utc>>> {
                let row = sqlx::query(super::sync::NEXT_RUN_AT)
                    .fetch_one(self)
                    .await?;
                get_opt_at(&row, "next_run_at")
            }
        }
    };
}

pub(crate) use sync_shared;
