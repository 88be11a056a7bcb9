//! One run of one appointment's sync job: bring every segment's Cal.com booking to what
//! the appointment asks for (booked or cancelled), segments in parallel (bounded).
//!
//! The order of every Cal.com call is: write the attempt down (fenced by the job's lease),
//! make the call outside any database transaction, then record the outcome together with
//! the segment's new state. When an earlier create's outcome is unknown, the bookings of
//! that event type and time are listed and ours adopted before anything is created.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use calcom_client::{
    Attendee, Booking, BookingMetadata, BookingStatus, CalcomClient, CalcomError, CreateBooking,
    ListBookings, MAX_BOOKINGS_PAGE,
};
use chrono::{DateTime, TimeDelta, Utc};
use futures::StreamExt;
use phasebook_domain::EventTypeId;
use phasebook_domain::resolution::{HostIdentity, Refusal};
use phasebook_domain::sync::{
    AppointmentSync, BookingIdentity, CalcomFailure, Decision, DesiredState,
    EVENT_TYPE_CHECK_TTL_SECS, FailureClass, MAX_RESCHEDULE_HOPS, ObservedBooking, Operation,
    Outcome, OwnBookingInTheWay, RetryPolicy, ReviewSubject, RunAsk, SegmentError,
    SegmentSyncStatus, Step, cannot_sync_reason, converge, drift_refusal, event_map_refused_reason,
    managed_parent_without_child_reason, missing_event_map_reason, own_booking_in_the_way,
    successor,
};
use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

mod moves;

use super::clients::{ClientCache, key_fingerprint};
use super::failure::classify;
use super::shared_checks::{CheckKey as SharedCheckKey, SharedChecks};
use crate::event_maps::calcom::{ReadRoute, read_event_type_via};
use crate::store::sync::{
    AppointmentWork, AttemptFinish, AttemptStart, BookableUpdate, ClaimedJob, JobNext, SegmentWork,
    StoreError, StoreResult, SyncStore,
};
use phasebook_domain::sync::breaker::{
    Admission, Breaker, BreakerPolicy, Change, signals_unavailable,
};

/// The lease was lost mid-run: another worker owns the job now; stop touching it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("lease lost")]
    LeaseLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many result pages a reconcile reads at most (250 bookings each, one event type, two
/// days): more would mean something else is badly wrong, and the segment is retried later.
const MAX_RECONCILE_PAGES: u32 = 8;

/// The part of the engine that does not change between runs.
pub struct Engine {
    pub store: Arc<dyn SyncStore>,
    pub clients: Arc<ClientCache>,
    pub policy: RetryPolicy,
    /// Segments of one appointment booked at the same time.
    pub segment_parallelism: usize,
    /// Picks the jitter fraction for backoff; tests may fix it.
    pub jitter: fn() -> f64,
    /// Stamped on attempts and leases.
    pub worker_id: String,
    /// Bookable event types checked for drift lately (see [`Run::drifted`]).
    checked: std::sync::Mutex<HashMap<CheckKey, Arc<CheckSlot>>>,
    /// Which Cal.com read last showed each (tenant, event type), asked first next time.
    read_routes: std::sync::Mutex<HashMap<(Uuid, i64), ReadRoute>>,
    /// The Cal.com user each tenant's key acts as (`GET /v2/me`, once per process): a type
    /// of that user is read by id, another user's in their listing — one round trip.
    key_owners: std::sync::Mutex<HashMap<Uuid, Arc<tokio::sync::OnceCell<Option<i64>>>>>,
    /// When set, a tenant whose Cal.com stopped answering waits for a probe instead of
    /// calling (see [`phasebook_domain::sync::breaker`]).
    pub breaker_policy: Option<BreakerPolicy>,
    breakers: std::sync::Mutex<HashMap<Uuid, Breaker>>,
    /// Fits found by any process on this database (see [`super::shared_checks`]).
    pub shared_checks: Option<SharedChecks>,
}

/// One drift check, shared by every segment that asks while it is fresh.
struct CheckSlot {
    at: Instant,
    answer: tokio::sync::OnceCell<Option<Refusal>>,
}

/// (tenant, bookable event type, Cal.com user, segment minutes).
type CheckKey = (Uuid, i64, i64, u32);

/// Bookings per page when looking for our own booking in the way of a create.
const IN_THE_WAY_PAGE: u32 = 100;
/// At most this many pages: past them the "busy" answer stands as Cal.com gave it.
const IN_THE_WAY_PAGES: u32 = 5;

/// The shared state of one run.
struct Run<'a> {
    engine: &'a Engine,
    job: &'a ClaimedJob,
    work: &'a AppointmentWork,
    client: Option<Arc<CalcomClient>>,
    client_error: Option<CalcomFailure>,
    zone: Option<chrono_tz::Tz>,
}

fn random_jitter() -> f64 {
    rand::random::<f64>()
}

impl Engine {
    pub fn new(store: Arc<dyn SyncStore>, clients: Arc<ClientCache>, worker_id: String) -> Self {
        Self {
            store,
            clients,
            policy: RetryPolicy::default(),
            segment_parallelism: 4,
            jitter: random_jitter,
            worker_id,
            checked: std::sync::Mutex::new(HashMap::new()),
            read_routes: std::sync::Mutex::new(HashMap::new()),
            key_owners: std::sync::Mutex::new(HashMap::new()),
            breaker_policy: Some(BreakerPolicy::default()),
            breakers: std::sync::Mutex::new(HashMap::new()),
            shared_checks: None,
        }
    }

    /// Runs one claimed job to the end of what can be done now, and releases it (done, or
    /// pending until its earliest retry). Returns the appointment's new sync status.
    pub async fn run_job(&self, job: &ClaimedJob) -> Result<Option<AppointmentSync>, RunError> {
        let fence = &job.fence;
        let Some(work) = self.store.load_work(job).await? else {
            return Ok(self
                .store
                .finish_job(fence, Utc::now(), JobNext::Done)
                .await?);
        };
        let (client, client_error) = match self.clients.get(&work.tenant) {
            Ok(client) => (Some(client), None),
            Err(err) => (None, Some(classify(&err))),
        };
        if let Some(client) = &client
            && let Some(until) = self.wait_for_calcom(client, &work).await?
        {
            tracing::info!(appointment_id = %work.appointment_id, until = %until, "Cal.com is not answering for this tenant; the job waits for the next probe");
            return Ok(self
                .store
                .finish_job(fence, Utc::now(), JobNext::At(until))
                .await?);
        }
        let run = Run {
            engine: self,
            job,
            work: &work,
            client,
            client_error,
            zone: work.time_zone.parse().ok(),
        };
        let results: Vec<Result<SegmentWork, RunError>> =
            futures::stream::iter(work.segments.iter().cloned())
                .map(|segment| run.segment(segment))
                .buffer_unordered(self.segment_parallelism.max(1))
                .collect()
                .await;
        let mut next: Option<DateTime<Utc>> = None;
        for result in results {
            if let Some(at) = result?.booking.due_again(Utc::now()) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        let next = next.map_or(JobNext::Done, JobNext::At);
        let derived = self.store.finish_job(fence, Utc::now(), next).await?;
        if derived.is_none() {
            return Err(RunError::LeaseLost);
        }
        Ok(derived)
    }
}

impl Engine {
    fn breaker<T>(&self, tenant_id: Uuid, f: impl FnOnce(&mut Breaker) -> T) -> T {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        f(breakers.entry(tenant_id).or_default())
    }

    /// Records one finished Cal.com call of the tenant on its circuit.
    fn observe_call(&self, tenant_id: Uuid, error_kind: Option<&str>) {
        let Some(policy) = self.breaker_policy else {
            return;
        };
        let unavailable = error_kind.is_some_and(signals_unavailable);
        if self.breaker(tenant_id, |b| b.record(unavailable, Utc::now(), &policy)) == Change::Opened
        {
            tracing::warn!(tenant_id = %tenant_id, "Cal.com stopped answering for this tenant; its jobs wait for a probe instead of calling");
        }
    }

    /// `Some(time)`: the tenant's circuit is open and the job comes back then. A due probe
    /// is made here (`GET /v2/me`); when Cal.com answers, the circuit closes and the
    /// appointments that went to review only because Cal.com was unreachable are queued.
    async fn wait_for_calcom(
        &self,
        client: &CalcomClient,
        work: &AppointmentWork,
    ) -> Result<Option<DateTime<Utc>>, RunError> {
        let Some(policy) = self.breaker_policy else {
            return Ok(None);
        };
        let tenant_id = work.tenant.tenant_id;
        match self.breaker(tenant_id, |b| b.admit(Utc::now(), &policy)) {
            Admission::Call => Ok(None),
            Admission::Wait(until) => Ok(Some(until)),
            Admission::Probe => {
                let answered = match client.me().await {
                    Ok(_) => true,
                    Err(err) => !signals_unavailable(err.kind()),
                };
                let change = self.breaker(tenant_id, |b| b.probed(answered, Utc::now(), &policy));
                if change != Change::Closed {
                    let until = Utc::now() + policy.probe_every;
                    return Ok(Some(until));
                }
                let requeued = self.requeue_after_outage(tenant_id, Utc::now()).await?;
                tracing::info!(tenant_id = %tenant_id, requeued, "Cal.com answers again for this tenant");
                Ok(None)
            }
        }
    }

    /// Queues every appointment of the tenant in review only because Cal.com was
    /// unreachable; returns how many.
    pub(crate) async fn requeue_after_outage(
        &self,
        tenant_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<usize> {
        let waiting = self.store.reviews_waiting_for_calcom(tenant_id).await?;
        for &appointment_id in &waiting {
            tracing::info!(appointment_id = %appointment_id, "Cal.com answers again; retrying an appointment that was in review only for its outage");
            self.store
                .request_sync(tenant_id, appointment_id, now, true)
                .await?;
        }
        Ok(waiting.len())
    }
}

impl Run<'_> {
    fn subject(&self, segment: &SegmentWork, event_type: Option<EventTypeId>) -> ReviewSubject {
        let staff = segment.staff.as_ref();
        ReviewSubject {
            appointment_id: self.work.appointment_id,
            service_id: self.work.service_id.clone(),
            segment_key: segment.key.clone(),
            staff_id: segment.staff_id.clone(),
            calcom_username: staff.map(|s| s.username.clone()).unwrap_or_default(),
            calcom_user_id: staff
                .map(|s| s.user_id)
                .unwrap_or(phasebook_domain::CalcomUserId(0)),
            event_type_id: event_type
                .or_else(|| segment.map.as_ref().map(|m| m.bookable_event_type_id)),
            starts_at: segment.starts_at,
            time_zone: self.zone,
        }
    }

    fn identity(&self, segment: &SegmentWork) -> BookingIdentity {
        BookingIdentity {
            tenant_id: self.work.tenant.tenant_id,
            appointment_id: self.work.appointment_id,
            segment_key: segment.key.clone(),
        }
    }

    async fn segment(&self, segment: SegmentWork) -> Result<SegmentWork, RunError> {
        let span = tracing::info_span!(
            "segment",
            appointment_id = %self.work.appointment_id,
            segment = %segment.key
        );
        match self.work.desired {
            DesiredState::Booked => self.bring_booked(segment).instrument(span).await,
            DesiredState::Cancelled => self.bring_cancelled(segment).instrument(span).await,
        }
    }

    fn booked(booking: &Booking, event_type: EventTypeId) -> Outcome {
        Outcome::Booked {
            uid: booking.uid.clone(),
            id: booking.id,
            event_type,
        }
    }

    fn ask(&self, segment: &SegmentWork) -> RunAsk {
        RunAsk {
            desired: self.work.desired,
            verify_bookings: self.job.verify_bookings,
            moving: segment.moving_from.is_some(),
        }
    }

    /// The segment's booking after `outcome`, as the domain decides.
    fn settle(&self, segment: &mut SegmentWork, outcome: Outcome) {
        segment.booking = segment.booking.clone().apply(outcome, Utc::now()).booking;
    }

    async fn bring_booked(&self, mut segment: SegmentWork) -> Result<SegmentWork, RunError> {
        let ask = self.ask(&segment);
        match segment.booking.next_step(ask, Utc::now()) {
            Step::Skip | Step::Cancel => Ok(segment),
            Step::Move => self.bring_moved(segment).await,
            Step::Verify => {
                if self.verify(&mut segment).await? {
                    return Ok(segment);
                }
                self.book_now(segment).await
            }
            Step::Book {
                revalidate,
                reconcile,
            } => self.book(segment, revalidate, reconcile).await,
        }
    }

    /// Checks a booked segment against Cal.com: every booking carrying its identity (the
    /// stored one, where Cal.com moved it, and the event type's listing around the planned
    /// time) is converged on one at the planned time. `false`: none stands there any more;
    /// the segment was reset and must be booked again.
    async fn verify(&self, segment: &mut SegmentWork) -> Result<bool, RunError> {
        let (Some(client), Some(event_type)) = (
            self.client.clone(),
            segment.booking.event_type_id.map(EventTypeId),
        ) else {
            return Ok(true);
        };
        match self
            .reconcile(
                &client,
                segment,
                event_type,
                "verify",
                SegmentSyncStatus::Synced,
            )
            .await?
        {
            // Cannot tell now: keep it booked, the next resync checks again.
            Reconciled::Adopted | Reconciled::Failed(_) => Ok(true),
            Reconciled::Missing => {
                tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, "no booking stands at the segment's planned time in Cal.com; booking it again");
                self.settle(segment, Outcome::Gone);
                Ok(false)
            }
        }
    }

    /// Books one segment: reconcile if needed, create, and decide on failure.
    /// Books the segment as its state asks (see
    /// [`phasebook_domain::sync::SegmentBooking::book_step`]).
    async fn book_now(&self, segment: SegmentWork) -> Result<SegmentWork, RunError> {
        match segment.booking.book_step(self.ask(&segment)) {
            Step::Book {
                revalidate,
                reconcile,
            } => self.book(segment, revalidate, reconcile).await,
            _ => Ok(segment),
        }
    }

    async fn book(
        &self,
        mut segment: SegmentWork,
        revalidate: bool,
        reconcile: bool,
    ) -> Result<SegmentWork, RunError> {
        let Some(client) = self.client.clone() else {
            let failure = self.client_error.clone().unwrap_or_else(|| CalcomFailure {
                class: FailureClass::InvalidRequest,
                kind: "invalid_request".into(),
                http_status: None,
                message: "no Cal.com client".into(),
            });
            let reason = self.review_for(&segment, &failure);
            return self.review(segment, reason, Some(&failure)).await;
        };
        let Some(map) = segment.map.clone() else {
            let reason = missing_event_map_reason(&self.subject(&segment, None));
            return self.review(segment, reason, None).await;
        };
        let mut event_type = map.bookable_event_type_id;

        // A resync re-validates the map first: a child may have appeared, or the map gone bad.
        if revalidate {
            match self.resolve(&client, &segment, &map.event_type_id).await? {
                Resolved::Bookable(id) => event_type = id,
                Resolved::Refused(reason) => return self.review(segment, reason, None).await,
                Resolved::Unknown => {}
            }
        }

        let mut re_resolved = false;
        let mut reconcile = reconcile;
        loop {
            if reconcile {
                match self
                    .reconcile(
                        &client,
                        &mut segment,
                        event_type,
                        "reconcile",
                        SegmentSyncStatus::Syncing,
                    )
                    .await?
                {
                    Reconciled::Adopted => return Ok(segment),
                    Reconciled::Missing => {}
                    Reconciled::Failed(failure) => {
                        return self
                            .after_failure(segment, &failure, re_resolved, Operation::Create)
                            .await;
                    }
                }
            }
            if let Some(refusal) = self.drifted(&client, &segment, event_type).await {
                let reason =
                    event_map_refused_reason(&self.subject(&segment, Some(event_type)), &refusal);
                let failure = CalcomFailure {
                    class: FailureClass::Validation,
                    kind: refusal.code().to_string(),
                    http_status: None,
                    message: refusal.detail(),
                };
                return self.review(segment, reason, Some(&failure)).await;
            }
            match self.create(&client, &mut segment, event_type).await? {
                Created::Booked => return Ok(segment),
                Created::OtherLength(minutes) => {
                    let refusal = Refusal::LengthMismatch {
                        event_type_id: event_type,
                        length_minutes: minutes,
                        segment_minutes: u32::try_from(
                            (segment.ends_at - segment.starts_at).num_minutes(),
                        )
                        .unwrap_or(0),
                    };
                    let reason = event_map_refused_reason(
                        &self.subject(&segment, Some(event_type)),
                        &refusal,
                    );
                    let failure = CalcomFailure {
                        class: FailureClass::Validation,
                        kind: refusal.code().to_string(),
                        http_status: None,
                        message: refusal.detail(),
                    };
                    return self.review(segment, reason, Some(&failure)).await;
                }
                Created::Failed(failure) => {
                    // "Busy" may be the event type grown since the last check, colliding
                    // with our own next segment: ask Cal.com now, so the reason names it.
                    if failure.class == FailureClass::SlotUnavailable {
                        self.forget_check(event_type).await;
                        if let Some(refusal) = self.drifted(&client, &segment, event_type).await {
                            let reason = event_map_refused_reason(
                                &self.subject(&segment, Some(event_type)),
                                &refusal,
                            );
                            return self.review(segment, reason, Some(&failure)).await;
                        }
                    }
                    let in_the_way = if failure.class == FailureClass::SlotUnavailable {
                        self.own_booking_in_the_way(&client, &segment).await
                    } else {
                        None
                    };
                    let decision = self.decision(
                        &segment,
                        &failure,
                        (re_resolved, true),
                        Operation::Create,
                        event_type,
                        in_the_way.as_ref(),
                    );
                    if decision != Decision::ReResolveEventType {
                        return self
                            .apply(segment, decision, &failure, Operation::Create)
                            .await;
                    }
                    re_resolved = true;
                    match self.resolve(&client, &segment, &map.event_type_id).await? {
                        Resolved::Bookable(id) if id != event_type => {
                            tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, event_type = %id, "re-resolved the host's child; retrying with it");
                            event_type = id;
                            // Nothing was created on the parent, so no reconcile is owed.
                            reconcile = segment.booking.earlier_outcome_unknown;
                        }
                        _ => {
                            let parent = match failure.class {
                                FailureClass::ManagedParent { event_type_id } => event_type_id,
                                _ => event_type,
                            };
                            let reason = managed_parent_without_child_reason(
                                &self.subject(&segment, Some(parent)),
                                parent,
                            );
                            return self.review(segment, reason, Some(&failure)).await;
                        }
                    }
                }
            }
        }
    }

    /// Reads the bookable event type (at most once a minute per type, host and length) and
    /// asks the domain whether it still fits the segment and its staff member. Cal.com not
    /// answering is not drift: the create then decides.
    async fn drifted(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        bookable: EventTypeId,
    ) -> Option<Refusal> {
        let staff = segment.staff.as_ref()?;
        let minutes = u32::try_from((segment.ends_at - segment.starts_at).num_minutes()).ok()?;
        let key = (
            self.work.tenant.tenant_id,
            bookable.0,
            staff.user_id.0,
            minutes,
        );
        let ttl = Duration::from_secs(EVENT_TYPE_CHECK_TTL_SECS);
        // One read per key, however many segments ask at once: they share the slot's answer.
        // A resync asks for Cal.com's word now (ops may just have fixed the type).
        let slot = {
            let mut checked = self
                .engine
                .checked
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            checked.retain(|_, slot| slot.at.elapsed() < ttl);
            if self.job.verify_bookings {
                checked.remove(&key);
            }
            checked
                .entry(key)
                .or_insert_with(|| {
                    Arc::new(CheckSlot {
                        at: Instant::now(),
                        answer: tokio::sync::OnceCell::new(),
                    })
                })
                .clone()
        };
        let host = HostIdentity {
            user_id: staff.user_id,
            username: staff.username.clone(),
        };
        let team_id = self.work.tenant.team_id;
        let shared_key = SharedCheckKey {
            key_fingerprint: key_fingerprint(&self.work.tenant.base_url, &self.work.tenant.api_key),
            event_type_id: bookable.0,
            host_user_id: staff.user_id.0,
            length_minutes: minutes,
        };
        let refusal = slot
            .answer
            .get_or_init(|| async {
                let shared = self.engine.shared_checks.as_ref();
                if let Some(shared) = shared
                    && !self.job.verify_bookings
                    && shared.fitted_recently(&shared_key, Utc::now(), ttl).await
                {
                    return None;
                }
                let route_key = (self.work.tenant.tenant_id, bookable.0);
                let remembered = self
                    .engine
                    .read_routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&route_key)
                    .copied();
                let first = match remembered {
                    Some(route) => Some(route),
                    None => self.key_owner(client).await.map(|owner| {
                        if owner == host.user_id.0 {
                            ReadRoute::Own
                        } else {
                            ReadRoute::Listing
                        }
                    }),
                };
                let read = read_event_type_via(client, team_id, bookable, &host, first).await;
                // A read that failed is remembered too: at most one extra read a minute,
                // whatever Cal.com's state.
                match read {
                    Ok(read) => {
                        if let Some((_, route)) = &read {
                            self.engine
                                .read_routes
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert(route_key, *route);
                        }
                        let facts = read
                            .as_ref()
                            .map(|(et, _)| crate::event_maps::calcom::facts(et));
                        let refusal = drift_refusal(bookable, facts.as_ref(), &host, minutes);
                        if let Some(shared) = shared
                            && refusal.is_none()
                            && facts.is_some()
                        {
                            shared.record_fit(&shared_key, Utc::now()).await;
                        }
                        refusal
                    }
                    Err(_) => None,
                }
            })
            .await
            .clone();
        if refusal.is_some() {
            tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, event_type = %bookable, "the bookable event type no longer fits the segment");
        }
        refusal
    }

    /// After a "busy" answer: lists the host's bookings around the segment's time and names
    /// one of ours standing in it. A listing that fails names none (the answer stays
    /// "busy").
    async fn own_booking_in_the_way(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
    ) -> Option<OwnBookingInTheWay> {
        let host = segment.staff.as_ref()?.user_id.0;
        let mut found: Vec<ObservedBooking> = Vec::new();
        // A busy salon day holds more bookings than one page: read on until the page that
        // is not full, so our own booking is found wherever it sorts.
        for page in 0..IN_THE_WAY_PAGES {
            let query = ListBookings {
                after_start: Some(segment.starts_at - TimeDelta::hours(12)),
                before_end: Some(segment.ends_at + TimeDelta::hours(12)),
                take: Some(IN_THE_WAY_PAGE),
                skip: Some(page * IN_THE_WAY_PAGE),
                ..ListBookings::default()
            };
            let listed = client.list_bookings(&query).await.ok()?;
            let full = listed.bookings.len() >= IN_THE_WAY_PAGE as usize;
            found.extend(
                listed
                    .bookings
                    .iter()
                    .filter(|b| b.hosts.iter().any(|h| h.id == host))
                    .map(observe),
            );
            if !full {
                break;
            }
        }
        own_booking_in_the_way(
            self.work.tenant.tenant_id,
            segment.starts_at,
            segment.ends_at,
            &found,
        )
    }

    /// The Cal.com user the tenant's key acts as, asked once per process; `None` when
    /// Cal.com did not say (the reads then go in their usual order).
    async fn key_owner(&self, client: &CalcomClient) -> Option<i64> {
        let cell = self
            .engine
            .key_owners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(self.work.tenant.tenant_id)
            .or_default()
            .clone();
        let owner = cell
            .get_or_init(|| async { client.me().await.ok().map(|me| me.id) })
            .await;
        if owner.is_none() {
            // Not remembered: the next check asks again.
            self.engine
                .key_owners
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.work.tenant.tenant_id);
        }
        *owner
    }

    /// Drops the remembered drift checks of `event_type`: the next create reads it again.
    async fn forget_check(&self, event_type: EventTypeId) {
        let tenant_id = self.work.tenant.tenant_id;
        self.engine
            .checked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|(tenant, id, _, _), _| !(*tenant == tenant_id && *id == event_type.0));
        if let Some(shared) = &self.engine.shared_checks {
            let tenant = &self.work.tenant;
            shared
                .forget(
                    &key_fingerprint(&tenant.base_url, &tenant.api_key),
                    event_type.0,
                )
                .await;
        }
    }

    /// Asks the event-map resolution (the event-map issue's code) what is bookable now for
    /// this segment's host, and stores a changed answer.
    async fn resolve(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        configured: &EventTypeId,
    ) -> Result<Resolved, RunError> {
        let Some(staff) = segment.staff.as_ref() else {
            return Ok(Resolved::Unknown);
        };
        let host = HostIdentity {
            user_id: staff.user_id,
            username: staff.username.clone(),
        };
        let minutes =
            u32::try_from((segment.ends_at - segment.starts_at).num_minutes()).unwrap_or(0);
        let attempt = self
            .begin(
                segment,
                "resolve",
                Some(configured.0),
                segment.booking.status,
            )
            .await?;
        let answer = super::resolve::resolve(
            client,
            self.work.tenant.team_id,
            *configured,
            &host,
            minutes,
        )
        .await;
        let (resolved, outcome, error) = match answer {
            Ok(Ok(resolution)) => {
                let bookable = resolution.bookable_event_type_id;
                let current = segment.map.as_ref().map(|m| m.bookable_event_type_id);
                if current != Some(bookable) {
                    self.engine
                        .store
                        .update_bookable_event_type(
                            self.work.tenant.tenant_id,
                            &BookableUpdate {
                                service_id: self.work.service_id.clone(),
                                segment_key: segment.key.clone(),
                                staff_id: segment.staff_id.clone(),
                                bookable,
                                resolution: resolution.kind.as_str().to_string(),
                                checked_at: Utc::now(),
                            },
                        )
                        .await?;
                }
                (Resolved::Bookable(bookable), "resolved", None)
            }
            Ok(Err(refusal)) => {
                let reason = event_map_refused_reason(&self.subject(segment, None), &refusal);
                let error = SegmentError {
                    kind: refusal.code().to_string(),
                    http_status: None,
                    message: refusal.detail(),
                };
                (Resolved::Refused(reason), "failed", Some(error))
            }
            Err(err) => (
                Resolved::Unknown,
                "failed",
                Some(SegmentError::from(&classify(&err))),
            ),
        };
        let mut unchanged = segment.clone();
        self.finish(attempt, outcome, error, None, &mut unchanged)
            .await?;
        Ok(resolved)
    }

    /// Finds every booking carrying the segment's identity (by its stored uid and Cal.com's
    /// reschedule links, and by listing `event_type` around the planned time) and converges:
    /// the one at the planned time is adopted, every other active one of ours is cancelled.
    /// `Missing`: none stands at the planned time (strays are already cancelled, so a create
    /// does not collide with our own moved booking).
    async fn reconcile(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        event_type: EventTypeId,
        operation: &'static str,
        status: SegmentSyncStatus,
    ) -> Result<Reconciled, RunError> {
        let attempt = self
            .begin(segment, operation, Some(event_type.0), status)
            .await?;
        let found = find_bookings(
            client,
            segment.booking.calcom_booking_uid.as_deref(),
            event_type,
            segment.starts_at,
        )
        .await;
        let bookings = match found {
            Ok(bookings) => bookings,
            Err(err) => {
                let failure = classify(&err);
                // A failed look-up says nothing about what Cal.com holds: still unknown.
                segment.booking.last_error = Some(SegmentError::from(&failure));
                self.finish(
                    attempt,
                    "failed",
                    Some(SegmentError::from(&failure)),
                    None,
                    segment,
                )
                .await?;
                return Ok(Reconciled::Failed(failure));
            }
        };
        let observed: Vec<ObservedBooking> = bookings.iter().map(observe).collect();
        let plan = converge(
            &self.identity(segment),
            event_type,
            segment.starts_at,
            segment.ends_at,
            &observed,
        );
        let kept = match plan.keep {
            Some(index) => {
                let booking = &bookings[index];
                if segment.booking.calcom_booking_uid.as_deref() != Some(booking.uid.as_str()) {
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "adopted the booking that stands at the planned time");
                }
                self.settle(segment, Self::booked(booking, event_type));
                let outcome = if operation == "verify" {
                    "exists"
                } else {
                    "adopted"
                };
                self.finish(attempt, outcome, None, Some(booking.uid.clone()), segment)
                    .await?;
                Reconciled::Adopted
            }
            None => {
                let mut unchanged = segment.clone();
                self.finish(attempt, "missing", None, None, &mut unchanged)
                    .await?;
                Reconciled::Missing
            }
        };
        // A stray Cal.com did not cancel must not be left active: the segment is tried
        // again (a move can leave one far from the planned time, where only this finds it).
        for stray in plan.strays {
            if let Some(failure) = self.cancel_stray(client, segment, &bookings[stray]).await? {
                return Ok(Reconciled::Failed(failure));
            }
        }
        Ok(kept)
    }

    /// A booking of ours that does not stand at the planned time (moved in Cal.com, or a
    /// duplicate) is cancelled: the appointment's plan is the truth. `Some`: Cal.com did not.
    async fn cancel_stray(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        booking: &Booking,
    ) -> Result<Option<CalcomFailure>, RunError> {
        tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "cancelling a booking of ours that is not at the planned time");
        let attempt = self
            .begin_on(
                segment,
                "cancel_stray",
                booking.event_type_id,
                segment.booking.status,
                Some(&booking.uid),
                None,
            )
            .await?;
        let result = client
            .cancel_booking(
                &booking.uid,
                "phasebook keeps exactly one booking per segment, at the appointment's planned time.",
            )
            .await;
        let (outcome, failure) = match result {
            Ok(_) => ("cancelled", None),
            Err(err) if err.is_already_cancelled() => ("already_cancelled", None),
            Err(err) => ("failed", Some(classify(&err))),
        };
        let error = failure.as_ref().map(SegmentError::from);
        self.finish(attempt, outcome, error, Some(booking.uid.clone()), segment)
            .await?;
        Ok(failure)
    }

    async fn create(
        &self,
        client: &CalcomClient,
        segment: &mut SegmentWork,
        event_type: EventTypeId,
    ) -> Result<Created, RunError> {
        let request = match self.create_request(segment, event_type) {
            Ok(request) => request,
            Err(err) => return Ok(Created::Failed(classify(&err))),
        };
        let attempt = self
            .begin(
                segment,
                "create",
                Some(event_type.0),
                SegmentSyncStatus::Syncing,
            )
            .await?;
        match client.create_booking(&request).await {
            Ok(booking) if booking.end - booking.start != segment.ends_at - segment.starts_at => {
                // The event type's length changed after the last drift check (a minute may
                // pass between checks): the booking blocks another span than the segment.
                // Its uid is kept on the segment so that, whatever happens next, a
                // reconcile finds it; it is cancelled at once and the segment reviewed.
                let minutes = (booking.end - booking.start).num_minutes();
                tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, minutes, "Cal.com booked another length than the segment's; cancelling it");
                segment.booking.event_type_id = Some(event_type.0);
                segment.booking.calcom_booking_uid = Some(booking.uid.clone());
                segment.booking.calcom_booking_id = Some(booking.id);
                self.finish(attempt, "created", None, Some(booking.uid.clone()), segment)
                    .await?;
                self.forget_check(event_type).await;
                self.cancel_stray(client, segment, &booking).await?;
                Ok(Created::OtherLength(minutes))
            }
            Ok(booking) => {
                tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "segment booked");
                self.settle(segment, Self::booked(&booking, event_type));
                self.finish(attempt, "created", None, Some(booking.uid.clone()), segment)
                    .await?;
                Ok(Created::Booked)
            }
            Err(err) => {
                let failure = classify(&err);
                let outcome = if failure.class.may_have_created() {
                    "unknown"
                } else {
                    "failed"
                };
                if failure.class.may_have_created() {
                    segment.booking.earlier_outcome_unknown = true;
                }
                segment.booking.event_type_id = Some(event_type.0);
                segment.booking.last_error = Some(SegmentError::from(&failure));
                // The segment's new state is written with the decision; the attempt's
                // outcome is recorded now so that a crash in between still leaves it known.
                let mut snapshot = segment.clone();
                snapshot.booking.status = SegmentSyncStatus::Syncing;
                self.finish(
                    attempt,
                    outcome,
                    Some(SegmentError::from(&failure)),
                    None,
                    &mut snapshot,
                )
                .await?;
                Ok(Created::Failed(failure))
            }
        }
    }

    fn create_request(
        &self,
        segment: &SegmentWork,
        event_type: EventTypeId,
    ) -> Result<CreateBooking, CalcomError> {
        // A booking made after a move names the revision it was made for.
        let revision = (self.work.revision > 0).then(|| {
            (
                phasebook_domain::sync::reschedule::METADATA_REVISION,
                self.work.revision.to_string(),
            )
        });
        let metadata = BookingMetadata::new(
            self.identity(segment)
                .metadata()
                .into_iter()
                .chain(revision)
                .map(|(k, v)| (k, Value::String(v))),
        )?;
        Ok(CreateBooking {
            start: segment.starts_at,
            event_type_id: event_type.0,
            attendee: Attendee {
                name: self.work.customer_name.clone(),
                email: self.work.customer_email.clone(),
                time_zone: self.work.time_zone.clone(),
                phone_number: self.work.customer_phone.clone(),
                language: None,
            },
            metadata,
            notes: self.work.notes.clone(),
        })
    }

    /// Cancels the segment's booking (or finds that there is none).
    async fn bring_cancelled(&self, mut segment: SegmentWork) -> Result<SegmentWork, RunError> {
        if segment.booking.next_step(self.ask(&segment), Utc::now()) != Step::Cancel {
            return Ok(segment);
        }
        let Some(client) = self.client.clone() else {
            let failure = self.client_error.clone().unwrap_or_else(|| CalcomFailure {
                class: FailureClass::InvalidRequest,
                kind: "invalid_request".into(),
                http_status: None,
                message: "no Cal.com client".into(),
            });
            return self
                .after_failure(segment, &failure, true, Operation::Cancel)
                .await;
        };
        // Cancelled while its booking was being moved: whatever stands at the old time goes.
        if let Some(failure) = self.cancel_left_behind(&client, &mut segment).await? {
            return self
                .after_failure(segment, &failure, true, Operation::Cancel)
                .await;
        }
        // A create whose outcome is unknown may have left a booking we have no uid for.
        if segment.booking.calcom_booking_uid.is_none() && segment.booking.earlier_outcome_unknown {
            let event_type = segment
                .booking
                .event_type_id
                .map(EventTypeId)
                .or_else(|| segment.map.as_ref().map(|m| m.bookable_event_type_id));
            if let Some(event_type) = event_type {
                segment.booking.status = SegmentSyncStatus::Cancelling;
                if let Reconciled::Failed(failure) = self
                    .reconcile(
                        &client,
                        &mut segment,
                        event_type,
                        "reconcile",
                        SegmentSyncStatus::Syncing,
                    )
                    .await?
                {
                    return self
                        .after_failure(segment, &failure, true, Operation::Cancel)
                        .await;
                }
            }
        }
        let Some(uid) = segment.booking.calcom_booking_uid.clone() else {
            self.settle(&mut segment, Outcome::Cancelled);
            let saved = self
                .engine
                .store
                .save_segment(&self.job.fence, None, &segment)
                .await?;
            return if saved {
                Ok(segment)
            } else {
                Err(RunError::LeaseLost)
            };
        };
        // Cal.com requires a reason from a host; the caller's own words when they gave any.
        let reason = self.work.cancellation_reason.clone().unwrap_or_else(|| {
            format!(
                "Appointment {} was cancelled in phasebook.",
                self.work.appointment_id
            )
        });
        let mut uid = uid;
        let mut hops = 0;
        loop {
            let attempt = self
                .begin(
                    &segment,
                    "cancel",
                    segment.booking.event_type_id,
                    SegmentSyncStatus::Cancelling,
                )
                .await?;
            let error = match client.cancel_booking(&uid, &reason).await {
                Ok(_) => return self.cancelled(segment, attempt, "cancelled", uid).await,
                Err(CalcomError::NotFound { .. }) => {
                    return self.cancelled(segment, attempt, "not_found", uid).await;
                }
                // Cal.com cancels the old booking of a reschedule: what holds the stylist's
                // time now is the booking it was moved to, so that is the one to cancel.
                Err(err) if err.is_already_cancelled() => match client.get_booking(&uid).await {
                    Ok(old) => match successor(&observe(&old)) {
                        Some(next) if hops < MAX_RESCHEDULE_HOPS => {
                            hops += 1;
                            let next = next.to_owned();
                            tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %next, "the booking was moved in Cal.com; cancelling where it went");
                            segment.booking.calcom_booking_uid = Some(next.clone());
                            segment.booking.calcom_booking_id = None;
                            let mut snapshot = segment.clone();
                            snapshot.booking.status = SegmentSyncStatus::Cancelling;
                            self.finish(attempt, "moved", None, Some(uid), &mut snapshot)
                                .await?;
                            uid = next;
                            continue;
                        }
                        _ => {
                            return self
                                .cancelled(segment, attempt, "already_cancelled", uid)
                                .await;
                        }
                    },
                    Err(CalcomError::NotFound { .. }) => {
                        return self
                            .cancelled(segment, attempt, "already_cancelled", uid)
                            .await;
                    }
                    Err(err) => err,
                },
                Err(err) => err,
            };
            let failure = classify(&error);
            let mut snapshot = segment.clone();
            snapshot.booking.status = SegmentSyncStatus::Cancelling;
            self.finish(
                attempt,
                "failed",
                Some(SegmentError::from(&failure)),
                Some(uid),
                &mut snapshot,
            )
            .await?;
            return self
                .after_failure(segment, &failure, true, Operation::Cancel)
                .await;
        }
    }

    async fn cancelled(
        &self,
        mut segment: SegmentWork,
        attempt: Uuid,
        outcome: &'static str,
        uid: String,
    ) -> Result<SegmentWork, RunError> {
        tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, outcome, "segment booking cancelled");
        self.settle(&mut segment, Outcome::Cancelled);
        self.finish(attempt, outcome, None, Some(uid), &mut segment)
            .await?;
        Ok(segment)
    }

    /// The policy's decision on a failed call. `allow_re_resolve`: the caller looks for the
    /// host's child of a managed parent when told to.
    fn decision(
        &self,
        segment: &SegmentWork,
        failure: &CalcomFailure,
        (re_resolved, allow_re_resolve): (bool, bool),
        operation: Operation,
        event_type: EventTypeId,
        in_the_way: Option<&OwnBookingInTheWay>,
    ) -> Decision {
        segment.booking.decide(
            failure,
            operation,
            re_resolved,
            allow_re_resolve,
            &self.subject(segment, Some(event_type)),
            in_the_way,
            &self.engine.policy,
            Utc::now(),
            (self.engine.jitter)(),
        )
    }

    async fn after_failure(
        &self,
        segment: SegmentWork,
        failure: &CalcomFailure,
        re_resolved: bool,
        operation: Operation,
    ) -> Result<SegmentWork, RunError> {
        let event_type = segment
            .booking
            .event_type_id
            .map(EventTypeId)
            .or_else(|| segment.map.as_ref().map(|m| m.bookable_event_type_id))
            .unwrap_or(EventTypeId(0));
        let decision = self.decision(
            &segment,
            failure,
            (re_resolved, false),
            operation,
            event_type,
            None,
        );
        self.apply(segment, decision, failure, operation).await
    }

    /// Stores the segment's state after a failed call, as the policy decided.
    async fn apply(
        &self,
        segment: SegmentWork,
        decision: Decision,
        failure: &CalcomFailure,
        operation: Operation,
    ) -> Result<SegmentWork, RunError> {
        match &decision {
            Decision::Retry { at } | Decision::ReconcileFirst { at } => {
                tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, kind = %failure.kind, retry_at = %at, "Cal.com call failed; retry scheduled");
            }
            Decision::NeedsReview { .. } => {
                tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, kind = %failure.kind, "segment needs review");
            }
            Decision::ReResolveEventType => {}
        }
        self.save_outcome(
            segment,
            Outcome::Failed {
                failure: failure.clone(),
                operation,
                decision,
            },
        )
        .await
    }

    fn review_for(&self, segment: &SegmentWork, failure: &CalcomFailure) -> String {
        match self.decision(
            segment,
            failure,
            (true, false),
            Operation::Create,
            EventTypeId(0),
            None,
        ) {
            Decision::NeedsReview { reason } => reason,
            _ => cannot_sync_reason(&self.subject(segment, None), failure),
        }
    }

    async fn review(
        &self,
        segment: SegmentWork,
        reason: String,
        failure: Option<&CalcomFailure>,
    ) -> Result<SegmentWork, RunError> {
        tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, "segment needs review");
        self.save_outcome(
            segment,
            Outcome::Review {
                reason,
                failure: failure.cloned(),
            },
        )
        .await
    }

    /// Applies `outcome` to the segment and saves its new state (fenced).
    async fn save_outcome(
        &self,
        mut segment: SegmentWork,
        outcome: Outcome,
    ) -> Result<SegmentWork, RunError> {
        self.settle(&mut segment, outcome);
        let saved = self
            .engine
            .store
            .save_segment(&self.job.fence, None, &segment)
            .await?;
        if saved {
            Ok(segment)
        } else {
            Err(RunError::LeaseLost)
        }
    }

    async fn begin(
        &self,
        segment: &SegmentWork,
        operation: &'static str,
        event_type_id: Option<i64>,
        status: SegmentSyncStatus,
    ) -> Result<Uuid, RunError> {
        self.begin_on(segment, operation, event_type_id, status, None, None)
            .await
    }

    /// [`Self::begin`] for a call that ends a known booking (`uid`, or `moved_from` for a
    /// reschedule): the write-ahead row names it, so a kill before the answer still shows
    /// that phasebook asked for exactly this booking to go.
    async fn begin_on(
        &self,
        segment: &SegmentWork,
        operation: &'static str,
        event_type_id: Option<i64>,
        status: SegmentSyncStatus,
        uid: Option<&str>,
        moved_from: Option<&str>,
    ) -> Result<Uuid, RunError> {
        let attempt = AttemptStart {
            sync_attempt_id: Uuid::now_v7(),
            tenant_id: self.work.tenant.tenant_id,
            appointment_id: self.work.appointment_id,
            segment_key: segment.key.clone(),
            operation,
            event_type_id,
            started_at: Utc::now(),
            calcom_booking_uid: uid.map(str::to_owned),
            moved_from_uid: moved_from.map(str::to_owned),
        };
        if self
            .engine
            .store
            .begin_attempt(&self.job.fence, &attempt, status)
            .await?
        {
            Ok(attempt.sync_attempt_id)
        } else {
            Err(RunError::LeaseLost)
        }
    }

    async fn finish(
        &self,
        attempt: Uuid,
        outcome: &'static str,
        error: Option<SegmentError>,
        uid: Option<String>,
        segment: &mut SegmentWork,
    ) -> Result<(), RunError> {
        self.engine.observe_call(
            self.work.tenant.tenant_id,
            error.as_ref().map(|e| e.kind.as_str()),
        );
        let finish = AttemptFinish {
            sync_attempt_id: attempt,
            finished_at: Utc::now(),
            outcome,
            error,
            calcom_booking_uid: uid,
            moved_from_uid: None,
        };
        if self
            .engine
            .store
            .save_segment(&self.job.fence, Some(&finish), segment)
            .await?
        {
            Ok(())
        } else {
            Err(RunError::LeaseLost)
        }
    }
}

enum Resolved {
    Bookable(EventTypeId),
    Refused(String),
    Unknown,
}

enum Reconciled {
    Adopted,
    Missing,
    Failed(CalcomFailure),
}

enum Created {
    Booked,
    /// Cal.com booked this many minutes, not the segment's length; that booking is cancelled.
    OtherLength(i64),
    Failed(CalcomFailure),
}

/// Every booking that may be the segment's: the stored one and each booking Cal.com moved
/// it to (following `rescheduledToUid`), then every booking of `event_type` within a day of
/// the planned start (every status).
async fn find_bookings(
    client: &CalcomClient,
    stored_uid: Option<&str>,
    event_type: EventTypeId,
    start: DateTime<Utc>,
) -> Result<Vec<Booking>, CalcomError> {
    let mut out = Vec::new();
    let mut next = stored_uid.map(str::to_owned);
    for _ in 0..=MAX_RESCHEDULE_HOPS {
        let Some(uid) = next.take() else { break };
        match client.get_booking(&uid).await {
            Ok(booking) => {
                next = successor(&observe(&booking)).map(str::to_owned);
                out.push(booking);
            }
            // Deleted in Cal.com: the listing below finds whatever else is ours.
            Err(CalcomError::NotFound { .. }) => break,
            Err(err) => return Err(err),
        }
    }
    for page in 0..MAX_RECONCILE_PAGES {
        let query = ListBookings {
            event_type_id: Some(event_type.0),
            after_start: Some(start - TimeDelta::days(1)),
            // The end Cal.com stores is start + the event type's length, which may differ
            // from ours: bound by a day and match the start exactly instead.
            before_end: Some(start + TimeDelta::days(1)),
            take: Some(MAX_BOOKINGS_PAGE),
            skip: Some(page * MAX_BOOKINGS_PAGE),
            ..ListBookings::default()
        };
        let listed = client.list_bookings(&query).await?;
        let more = listed.has_next_page;
        out.extend(listed.bookings);
        if !more {
            return Ok(out);
        }
    }
    Err(CalcomError::OutcomeUnknown {
        reason: format!(
            "more than {} bookings of event type {event_type} around one day; could not finish the reconcile",
            MAX_RECONCILE_PAGES * MAX_BOOKINGS_PAGE
        ),
    })
}

fn metadata_text(booking: &Booking, key: &str) -> Option<String> {
    match booking.metadata.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Cal.com booking reduced to what the sync rules look at.
pub(crate) fn observe(booking: &Booking) -> ObservedBooking {
    use phasebook_domain::sync::{METADATA_APPOINTMENT, METADATA_SEGMENT, METADATA_TENANT};
    ObservedBooking {
        id: booking.id,
        uid: booking.uid.clone(),
        event_type_id: booking
            .event_type_id
            .or_else(|| booking.event_type.as_ref().map(|e| e.id))
            .map(EventTypeId),
        start: booking.start,
        end: booking.end,
        cancelled: matches!(
            booking.status,
            BookingStatus::Cancelled | BookingStatus::Rejected
        ),
        tenant: metadata_text(booking, METADATA_TENANT),
        appointment: metadata_text(booking, METADATA_APPOINTMENT),
        segment: metadata_text(booking, METADATA_SEGMENT),
        rescheduled_to_uid: booking.rescheduled_to_uid.clone(),
    }
}
