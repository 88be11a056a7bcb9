//! One run of one appointment's sync job: bring every segment's Cal.com booking to what
//! the appointment asks for (booked or cancelled), segments in parallel (bounded).
//!
//! The order of every Cal.com call is: write the attempt down (fenced by the job's lease),
//! make the call outside any database transaction, then record the outcome together with
//! the segment's new state. When an earlier create's outcome is unknown, the bookings of
//! that event type and time are listed and ours adopted before anything is created.

use std::collections::HashMap;
use std::sync::Arc;

use calcom_client::{Booking, CalcomClient};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use phasebook_domain::EventTypeId;
use phasebook_domain::resolution::{HostIdentity, Refusal};
use phasebook_domain::sync::{
    AppointmentSync, BookAction, BookEnd, BookPlan, BookResult, BookingIdentity, CalcomFailure,
    CancelAction, CancelAnswer, CancelEnd, CancelPlan, CancelResult, Created, Decision,
    DesiredState, FailureClass, ObservedBooking, Operation, Outcome, OwnBookingInTheWay,
    Reconciled, Resolved, RetryPolicy, ReviewSubject, RunAsk, SegmentError, SegmentSyncStatus,
    Step, cannot_sync_reason, converge, event_map_refused_reason, missing_event_map_reason,
    own_booking_in_the_way,
};
use tracing::Instrument;
use uuid::Uuid;

mod calcom;
mod moves;

pub(crate) use calcom::observe;
use calcom::{Cancel, CreateAnswer};

use super::clients::ClientCache;
use super::drift::{DriftAsk, EventTypeChecks};
use super::failure::classify;
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
    /// The drift checks before a create and what they remember (see [`super::drift`]).
    pub event_type_checks: EventTypeChecks,
    /// When set, a tenant whose Cal.com stopped answering waits for a probe instead of
    /// calling (see [`phasebook_domain::sync::breaker`]).
    pub breaker_policy: Option<BreakerPolicy>,
    breakers: std::sync::Mutex<HashMap<Uuid, Breaker>>,
}

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
            event_type_checks: EventTypeChecks::default(),
            breaker_policy: Some(BreakerPolicy::default()),
            breakers: std::sync::Mutex::new(HashMap::new()),
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
            step @ Step::Book { .. } => self.book(segment, step).await,
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

    /// Books the segment as its state asks (see
    /// [`phasebook_domain::sync::SegmentBooking::book_step`]).
    async fn book_now(&self, segment: SegmentWork) -> Result<SegmentWork, RunError> {
        let step = segment.booking.book_step(self.ask(&segment));
        self.book(segment, step).await
    }

    /// Performs the booking steps [`BookPlan`] names, one at a time, until it ends.
    async fn book(&self, mut segment: SegmentWork, step: Step) -> Result<SegmentWork, RunError> {
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
        let (mut plan, mut action) = BookPlan::new(
            &segment.booking,
            step,
            map.bookable_event_type_id,
            self.subject(&segment, None),
            segment_minutes(&segment).unwrap_or(0),
        );
        loop {
            let result = match action {
                BookAction::Resolve => {
                    let resolved = self.resolve(&client, &segment, &map.event_type_id).await?;
                    if let Resolved::Bookable(id) = resolved
                        && plan.re_resolved()
                        && id != plan.event_type()
                    {
                        tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, event_type = %id, "re-resolved the host's child; retrying with it");
                    }
                    BookResult::Resolved(resolved)
                }
                BookAction::Reconcile { event_type } => BookResult::Reconciled(
                    self.reconcile(
                        &client,
                        &mut segment,
                        event_type,
                        "reconcile",
                        SegmentSyncStatus::Syncing,
                    )
                    .await?,
                ),
                BookAction::CheckDrift {
                    event_type,
                    forget_first,
                } => {
                    if forget_first {
                        self.forget_check(event_type).await;
                    }
                    BookResult::Drift(self.drifted(&client, &segment, event_type).await)
                }
                BookAction::Create { event_type } => {
                    BookResult::Created(self.create(&client, &mut segment, event_type).await?)
                }
                BookAction::FindOwnInTheWay => {
                    BookResult::InTheWay(self.own_booking_in_the_way(&client, &segment).await)
                }
                BookAction::Decide {
                    failure,
                    event_type,
                    re_resolved,
                    in_the_way,
                } => BookResult::Decided(self.decision(
                    &segment,
                    &failure,
                    (re_resolved, true),
                    Operation::Create,
                    event_type,
                    in_the_way.as_ref(),
                )),
                BookAction::Done(BookEnd::Booked) => return Ok(segment),
                BookAction::Done(BookEnd::Review { reason, failure }) => {
                    return self.review(segment, reason, failure.as_ref()).await;
                }
                BookAction::Done(BookEnd::Decided { decision, failure }) => {
                    return self
                        .apply(segment, decision, &failure, Operation::Create)
                        .await;
                }
                BookAction::Done(BookEnd::ReconcileFailed {
                    failure,
                    re_resolved,
                }) => {
                    return self
                        .after_failure(segment, &failure, re_resolved, Operation::Create)
                        .await;
                }
            };
            action = plan.next(result);
        }
    }

    /// Asks whether the bookable event type still fits the segment and its staff member
    /// (see [`EventTypeChecks::drifted`]).
    async fn drifted(
        &self,
        client: &CalcomClient,
        segment: &SegmentWork,
        bookable: EventTypeId,
    ) -> Option<Refusal> {
        let staff = segment.staff.as_ref()?;
        let host = HostIdentity {
            user_id: staff.user_id,
            username: staff.username.clone(),
        };
        let ask = DriftAsk {
            tenant: &self.work.tenant,
            host: &host,
            bookable,
            minutes: segment_minutes(segment)?,
            fresh: self.job.verify_bookings,
        };
        let refusal = self.engine.event_type_checks.drifted(client, &ask).await;
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
        let found =
            calcom::host_bookings_around(client, host, segment.starts_at, segment.ends_at).await?;
        own_booking_in_the_way(
            self.work.tenant.tenant_id,
            segment.starts_at,
            segment.ends_at,
            &found,
        )
    }

    /// Drops the remembered drift checks of `event_type`: the next create reads it again.
    async fn forget_check(&self, event_type: EventTypeId) {
        self.engine
            .event_type_checks
            .forget(&self.work.tenant, event_type)
            .await;
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
        let found = calcom::find_bookings(
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
        let reason =
            "phasebook keeps exactly one booking per segment, at the appointment's planned time.";
        let (outcome, failure) = match calcom::cancel(client, &booking.uid, reason).await {
            Cancel::Cancelled => ("cancelled", None),
            Cancel::AlreadyCancelled => ("already_cancelled", None),
            Cancel::NotFound(failure) | Cancel::Failed(failure) => ("failed", Some(failure)),
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
        let request = calcom::create_request(
            self.work,
            &self.identity(segment),
            segment.starts_at,
            event_type,
        );
        let request = match request {
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
        match calcom::create(client, &request, segment.ends_at - segment.starts_at).await {
            CreateAnswer::OtherLength(booking) => {
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
            CreateAnswer::Booked(booking) => {
                tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %booking.uid, "segment booked");
                self.settle(segment, Self::booked(&booking, event_type));
                self.finish(attempt, "created", None, Some(booking.uid.clone()), segment)
                    .await?;
                Ok(Created::Booked)
            }
            CreateAnswer::Failed(failure) => {
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

    /// Performs the cancelling steps [`CancelPlan`] names, one at a time, until it ends.
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
        // Cal.com requires a reason from a host; the caller's own words when they gave any.
        let reason = self.work.cancellation_reason.clone().unwrap_or_else(|| {
            format!(
                "Appointment {} was cancelled in phasebook.",
                self.work.appointment_id
            )
        });
        let (mut plan, mut action) = CancelPlan::new(
            &segment.booking,
            segment.moving_from.is_some(),
            segment.map.as_ref().map(|m| m.bookable_event_type_id),
        );
        // The cancel attempt written ahead and the booking it names, until it is finished.
        let mut open: Option<(Uuid, String)> = None;
        loop {
            let result = match action {
                CancelAction::CancelLeftBehind => {
                    CancelResult::LeftBehind(self.cancel_left_behind(&client, &mut segment).await?)
                }
                CancelAction::Reconcile { event_type } => {
                    segment.booking.status = SegmentSyncStatus::Cancelling;
                    let reconciled = self
                        .reconcile(
                            &client,
                            &mut segment,
                            event_type,
                            "reconcile",
                            SegmentSyncStatus::Syncing,
                        )
                        .await?;
                    CancelResult::Reconciled {
                        reconciled,
                        uid: segment.booking.calcom_booking_uid.clone(),
                    }
                }
                CancelAction::Cancel { uid } => {
                    let attempt = self
                        .begin(
                            &segment,
                            "cancel",
                            segment.booking.event_type_id,
                            SegmentSyncStatus::Cancelling,
                        )
                        .await?;
                    let answer = match calcom::cancel(&client, &uid, &reason).await {
                        Cancel::Cancelled => CancelAnswer::Cancelled,
                        Cancel::AlreadyCancelled => CancelAnswer::AlreadyCancelled,
                        Cancel::NotFound(_) => CancelAnswer::NotFound,
                        Cancel::Failed(failure) => CancelAnswer::Failed(failure),
                    };
                    open = Some((attempt, uid));
                    CancelResult::Cancel(answer)
                }
                CancelAction::FindSuccessor { uid } => {
                    CancelResult::Successor(calcom::moved_to(&client, &uid).await)
                }
                CancelAction::Follow { from, to } => {
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %to, "the booking was moved in Cal.com; cancelling where it went");
                    segment.booking.calcom_booking_uid = Some(to);
                    segment.booking.calcom_booking_id = None;
                    let mut snapshot = segment.clone();
                    snapshot.booking.status = SegmentSyncStatus::Cancelling;
                    if let Some((attempt, _)) = open.take() {
                        self.finish(attempt, "moved", None, Some(from), &mut snapshot)
                            .await?;
                    }
                    CancelResult::Followed
                }
                CancelAction::Done(CancelEnd::NothingToCancel) => {
                    return self.save_outcome(segment, Outcome::Cancelled).await;
                }
                CancelAction::Done(CancelEnd::Gone(gone)) => {
                    return match open {
                        Some((attempt, uid)) => {
                            self.cancelled(segment, attempt, gone.outcome(), uid).await
                        }
                        None => self.save_outcome(segment, Outcome::Cancelled).await,
                    };
                }
                CancelAction::Done(CancelEnd::Failed(failure)) => {
                    if let Some((attempt, uid)) = open {
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
                    }
                    return self
                        .after_failure(segment, &failure, true, Operation::Cancel)
                        .await;
                }
            };
            action = plan.next(result);
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

/// The segment's length in minutes, when it fits.
fn segment_minutes(segment: &SegmentWork) -> Option<u32> {
    u32::try_from((segment.ends_at - segment.starts_at).num_minutes()).ok()
}
