//! One run of one appointment's sync job: bring every segment's Cal.com booking to what
//! the appointment asks for (booked or cancelled), segments in parallel (bounded).
//!
//! The engine only acts: it loads the work, asks the segment's booking for its step and the
//! domain's plan for each action, makes the Cal.com call, hands the answer to the domain
//! ([`phasebook_domain::sync::SegmentBooking::take`], `apply`, `fail`) and saves what comes
//! back. Every call is written down first (fenced by the job's lease, see `attempts`), made
//! outside any database transaction, then saved with the segment's new state. When an
//! earlier create's outcome is unknown, the bookings of that event type and time are listed
//! and ours adopted before anything is created.

use std::collections::HashMap;
use std::sync::Arc;

use calcom_client::CalcomClient;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use phasebook_domain::EventTypeId;
use phasebook_domain::sync::breaker::{Breaker, BreakerPolicy};
use phasebook_domain::sync::{
    Answer, AppointmentSync, BookAction, BookEnd, BookPlan, BookResult, BookingIdentity,
    CalcomFailure, CancelAction, CancelEnd, CancelPlan, CancelResult, DesiredState, FailureClass,
    Operation, Outcome, Resolved, RetryPolicy, ReviewSubject, RunAsk, SegmentSyncStatus, Step,
    missing_event_map_reason,
};
use tracing::Instrument;
use uuid::Uuid;

mod attempts;
mod breaker;
mod calcom;
mod moves;
mod steps;

pub(crate) use calcom::observe;

use super::clients::ClientCache;
use super::drift::EventTypeChecks;
use super::failure::classify;
use crate::store::sync::{
    AppointmentWork, ClaimedJob, JobNext, SegmentWork, StoreError, SyncStore,
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

    /// The tenant's Cal.com client, or the failure that stands for it missing.
    fn calcom(&self) -> Result<Arc<CalcomClient>, CalcomFailure> {
        self.client.clone().ok_or_else(|| {
            self.client_error.clone().unwrap_or_else(|| CalcomFailure {
                class: FailureClass::InvalidRequest,
                kind: "invalid_request".into(),
                http_status: None,
                message: "no Cal.com client".into(),
            })
        })
    }

    /// What the retry policy judges with: the policy, now, and a jitter fraction.
    fn judge(&self) -> (&RetryPolicy, DateTime<Utc>, f64) {
        (&self.engine.policy, Utc::now(), (self.engine.jitter)())
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
        let status = SegmentSyncStatus::Synced;
        let reconciled = self
            .reconcile(&client, segment, event_type, "verify", status)
            .await?;
        let Some(gone) = reconciled.verified() else {
            return Ok(true);
        };
        tracing::warn!(appointment_id = %self.work.appointment_id, segment = %segment.key, "no booking stands at the segment's planned time in Cal.com; booking it again");
        self.settle(segment, gone);
        Ok(false)
    }

    /// Books the segment as its state asks (see
    /// [`phasebook_domain::sync::SegmentBooking::book_step`]).
    async fn book_now(&self, segment: SegmentWork) -> Result<SegmentWork, RunError> {
        let step = segment.booking.book_step(self.ask(&segment));
        self.book(segment, step).await
    }

    /// Performs the booking steps [`BookPlan`] names, one at a time, until it ends.
    async fn book(&self, mut segment: SegmentWork, step: Step) -> Result<SegmentWork, RunError> {
        let client = match self.calcom() {
            Ok(client) => client,
            Err(failure) => {
                let subject = self.subject(&segment, None);
                let outcome = segment
                    .booking
                    .without_calcom(&failure, &subject, self.judge());
                return self.save_outcome(segment, outcome).await;
            }
        };
        let Some(map) = segment.map.clone() else {
            let reason = missing_event_map_reason(&self.subject(&segment, None));
            let outcome = Outcome::Review {
                reason,
                failure: None,
            };
            return self.save_outcome(segment, outcome).await;
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
                BookAction::Reconcile { event_type } => {
                    let status = SegmentSyncStatus::Syncing;
                    let reconciled = self
                        .reconcile(&client, &mut segment, event_type, "reconcile", status)
                        .await?;
                    BookResult::Reconciled(reconciled)
                }
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
                    BookResult::InTheWay(self.busy_cause(&client, &segment).await)
                }
                BookAction::Decide {
                    failure,
                    event_type,
                    re_resolved,
                    in_the_way,
                } => {
                    let (policy, now, jitter) = self.judge();
                    BookResult::Decided(segment.booking.decide(
                        &failure,
                        Operation::Create,
                        re_resolved,
                        true,
                        &self.subject(&segment, Some(event_type)),
                        in_the_way.as_ref(),
                        policy,
                        now,
                        jitter,
                    ))
                }
                BookAction::Done(BookEnd::Booked) => return Ok(segment),
                BookAction::Done(BookEnd::Review { reason, failure }) => {
                    let outcome = Outcome::Review { reason, failure };
                    return self.save_outcome(segment, outcome).await;
                }
                BookAction::Done(BookEnd::Decided { decision, failure }) => {
                    let outcome = Outcome::Failed {
                        failure,
                        operation: Operation::Create,
                        decision,
                    };
                    return self.save_outcome(segment, outcome).await;
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

    /// Performs the cancelling steps [`CancelPlan`] names, one at a time, until it ends.
    async fn bring_cancelled(&self, mut segment: SegmentWork) -> Result<SegmentWork, RunError> {
        if segment.booking.next_step(self.ask(&segment), Utc::now()) != Step::Cancel {
            return Ok(segment);
        }
        let client = match self.calcom() {
            Ok(client) => client,
            Err(failure) => {
                return self
                    .after_failure(segment, &failure, true, Operation::Cancel)
                    .await;
            }
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
                    let status = SegmentSyncStatus::Syncing;
                    let reconciled = self
                        .reconcile(&client, &mut segment, event_type, "reconcile", status)
                        .await?;
                    let uid = segment.booking.calcom_booking_uid.clone();
                    CancelResult::Reconciled { reconciled, uid }
                }
                CancelAction::Cancel { uid } => {
                    let (event_type, status) =
                        (segment.booking.event_type_id, SegmentSyncStatus::Cancelling);
                    let attempt = self.begin(&segment, "cancel", event_type, status).await?;
                    let reply = calcom::cancel(&client, &uid, &reason).await;
                    open = Some((attempt, uid));
                    CancelResult::Cancel(reply.answer())
                }
                CancelAction::FindSuccessor { uid } => {
                    CancelResult::Successor(calcom::moved_to(&client, &uid).await)
                }
                CancelAction::Follow { from, to } => {
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, booking_uid = %to, "the booking was moved in Cal.com; cancelling where it went");
                    let answer = Answer::CancelMoved { from, to };
                    match open.take() {
                        Some((attempt, _)) => {
                            self.record(attempt, &mut segment, answer).await?;
                        }
                        None => {
                            let taken = segment.booking.clone().take(answer, Utc::now());
                            segment.booking = taken.booking;
                        }
                    }
                    CancelResult::Followed
                }
                CancelAction::Done(CancelEnd::Gone(gone)) => {
                    let Some((attempt, uid)) = open else {
                        return self.save_outcome(segment, Outcome::Cancelled).await;
                    };
                    tracing::info!(appointment_id = %self.work.appointment_id, segment = %segment.key, outcome = gone.outcome(), "segment booking cancelled");
                    let answer = Answer::CancelGone { uid, gone };
                    self.record(attempt, &mut segment, answer).await?;
                    return Ok(segment);
                }
                CancelAction::Done(CancelEnd::NothingToCancel) => {
                    return self.save_outcome(segment, Outcome::Cancelled).await;
                }
                CancelAction::Done(CancelEnd::Failed(failure)) => {
                    if let Some((attempt, uid)) = open {
                        let answer = Answer::CancelFailed {
                            uid,
                            failure: failure.clone(),
                        };
                        self.record(attempt, &mut segment, answer).await?;
                    }
                    return self
                        .after_failure(segment, &failure, true, Operation::Cancel)
                        .await;
                }
            };
            action = plan.next(result);
        }
    }

    /// Saves the end of a run after a failed call, as the policy decides (see
    /// [`phasebook_domain::sync::SegmentBooking::fail`]).
    async fn after_failure(
        &self,
        segment: SegmentWork,
        failure: &CalcomFailure,
        re_resolved: bool,
        operation: Operation,
    ) -> Result<SegmentWork, RunError> {
        let subject = self.subject(&segment, None);
        let outcome = segment
            .booking
            .fail(failure, operation, re_resolved, &subject, self.judge());
        self.save_outcome(segment, outcome).await
    }
}

/// The segment's length in minutes, when it fits.
fn segment_minutes(segment: &SegmentWork) -> Option<u32> {
    u32::try_from((segment.ends_at - segment.starts_at).num_minutes()).ok()
}
