//! One segment's Cal.com booking as the sync keeps it, and the state machine that moves it:
//! [`SegmentBooking::next_step`] says what a run does with the segment, and
//! [`SegmentBooking::apply`] turns what Cal.com answered into the segment's next state, the
//! attempt's recorded outcome and when the segment is due again. The engine only acts on
//! these answers; every rule about the segment's state is here.

use chrono::{DateTime, Utc};

use super::{
    CalcomFailure, Decision, DesiredState, FailureInput, Operation, OwnBookingInTheWay,
    RetryPolicy, ReviewSubject, SegmentError, SegmentSyncStatus, decide,
    managed_parent_without_child_reason, reconcile_owed,
};
use crate::EventTypeId;

mod answer;
mod cancel_plan;
mod move_plan;
mod plan;
pub use answer::{Answer, BookingSeen, CancelReply, Taken};
pub use cancel_plan::{CancelAction, CancelAnswer, CancelEnd, CancelPlan, CancelResult, GoneAs};
pub use move_plan::{MoveAction, MoveAsk, MoveEnd, MovePlan, MoveResult, NEIGHBOUR_WAIT};
pub use plan::{
    BookAction, BookEnd, BookPlan, BookResult, Created, Reconciled, Resolved, refusal_failure,
};

/// The booking fields of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentBooking {
    pub status: SegmentSyncStatus,
    /// The event type the booking was (or is being) made on.
    pub event_type_id: Option<i64>,
    pub calcom_booking_uid: Option<String>,
    pub calcom_booking_id: Option<i64>,
    /// Attempts that counted (see [`super::FailureClass::consumes_attempt`]).
    pub attempts: i32,
    pub last_error: Option<SegmentError>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub review_reason: Option<String>,
    /// Some earlier create may have reached Cal.com (see
    /// [`create_may_have_reached_calcom`]): the next create must be preceded by a reconcile.
    pub earlier_outcome_unknown: bool,
}

/// What the run asks of the segment beyond its own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAsk {
    pub desired: DesiredState,
    /// Ops asked for a resync: booked segments are checked in Cal.com, the event map
    /// re-validated before a create.
    pub verify_bookings: bool,
    /// The appointment was moved and this segment's booking must follow.
    pub moving: bool,
}

/// What a run does with one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing now: done, waiting for a person, or waiting for its retry time.
    Skip,
    /// Its booking must follow the appointment's move.
    Move,
    /// Booked: check that the booking still stands in Cal.com.
    Verify,
    /// Book it. `revalidate`: resolve the event map again first; `reconcile`: look for a
    /// booking of ours before creating (an earlier create may have reached Cal.com, or a
    /// uid is held).
    Book { revalidate: bool, reconcile: bool },
    /// Cancel its booking (or find there is none).
    Cancel,
}

/// What Cal.com's answers came to for the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A booking of ours stands at the planned time (created, adopted or verified).
    Booked {
        uid: String,
        id: i64,
        event_type: EventTypeId,
    },
    /// A check found no booking at the planned time: the segment starts over.
    Gone,
    /// No booking is held any more (cancelled, not found, already cancelled).
    Cancelled,
    /// A call failed; the policy decided what comes next (see [`SegmentBooking::decide`]).
    Failed {
        failure: CalcomFailure,
        operation: Operation,
        decision: Decision,
    },
    /// A person must act; `failure` is what showed it, when a call did.
    Review {
        reason: String,
        failure: Option<CalcomFailure>,
    },
}

/// The segment after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub booking: SegmentBooking,
    /// The attempt's outcome as recorded in the attempt log, when the outcome ends one.
    pub attempt: Option<AttemptResult>,
    /// When the segment is due again (`None`: not before something changes).
    pub next_run_at: Option<DateTime<Utc>>,
}

/// How one Cal.com call ended, as the attempt log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub outcome: &'static str,
    pub error: Option<SegmentError>,
    pub calcom_booking_uid: Option<String>,
}

/// Attempt outcomes of a cancel that leave no booking held.
pub const CANCEL_DONE_OUTCOMES: [&str; 3] = ["cancelled", "not_found", "already_cancelled"];

/// True when a recorded attempt may have left a booking in Cal.com that we hold no uid for:
/// a create (or a Cal.com reschedule, which creates too) with no outcome recorded (the
/// worker died during the call) or an `unknown` one. The store's
/// `create_outcome_unknown` column is this rule over the attempt log.
pub fn create_may_have_reached_calcom(operation: &str, outcome: Option<&str>) -> bool {
    matches!(operation, "create" | "reschedule") && matches!(outcome, None | Some("unknown"))
}

impl SegmentBooking {
    /// A segment not attempted yet.
    pub fn new() -> Self {
        Self {
            status: SegmentSyncStatus::Pending,
            event_type_id: None,
            calcom_booking_uid: None,
            calcom_booking_id: None,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            review_reason: None,
            earlier_outcome_unknown: false,
        }
    }

    /// Waiting for a retry time that has not come.
    pub fn not_due(&self, now: DateTime<Utc>) -> bool {
        self.next_attempt_at.is_some_and(|at| at > now)
    }

    /// What this run does with the segment.
    pub fn next_step(&self, ask: RunAsk, now: DateTime<Utc>) -> Step {
        use SegmentSyncStatus as S;
        match ask.desired {
            DesiredState::Booked => {
                if ask.moving && self.status != S::NeedsReview {
                    return if self.not_due(now) {
                        Step::Skip
                    } else {
                        Step::Move
                    };
                }
                match self.status {
                    S::NeedsReview => Step::Skip,
                    S::Synced if ask.verify_bookings && self.calcom_booking_uid.is_some() => {
                        Step::Verify
                    }
                    S::Synced => Step::Skip,
                    S::Pending | S::Failed if self.not_due(now) => Step::Skip,
                    _ => self.book_step(ask),
                }
            }
            DesiredState::Cancelled => match self.status {
                S::Cancelled | S::NeedsReview => Step::Skip,
                _ if self.not_due(now) => Step::Skip,
                _ => Step::Cancel,
            },
        }
    }

    /// The booking step of a segment not booked (also after a verify found it gone).
    pub fn book_step(&self, ask: RunAsk) -> Step {
        Step::Book {
            revalidate: ask.verify_bookings,
            reconcile: reconcile_owed(
                self.earlier_outcome_unknown,
                self.calcom_booking_uid.is_some(),
            ),
        }
    }

    /// The policy's decision on a failed call of this segment. `re_resolved`: the host's
    /// child of a managed parent was already looked for; a decision to look again then
    /// comes back as a review. `allow_re_resolve` is false where no re-resolution follows.
    #[allow(clippy::too_many_arguments)]
    pub fn decide(
        &self,
        failure: &CalcomFailure,
        operation: Operation,
        re_resolved: bool,
        allow_re_resolve: bool,
        subject: &ReviewSubject,
        in_the_way: Option<&OwnBookingInTheWay>,
        policy: &RetryPolicy,
        now: DateTime<Utc>,
        jitter: f64,
    ) -> Decision {
        let attempts =
            u32::try_from(self.attempts).unwrap_or(0) + u32::from(failure.class.consumes_attempt());
        let decision = decide(
            &FailureInput {
                operation,
                failure,
                attempts,
                earlier_outcome_unknown: self.earlier_outcome_unknown,
                event_type_re_resolved: re_resolved,
                subject,
                in_the_way,
            },
            policy,
            now,
            jitter,
        );
        match decision {
            Decision::ReResolveEventType if !allow_re_resolve => {
                let event_type = subject.event_type_id.unwrap_or(EventTypeId(0));
                Decision::NeedsReview {
                    reason: managed_parent_without_child_reason(subject, event_type),
                }
            }
            other => other,
        }
    }

    /// The segment after `outcome`.
    pub fn apply(self, outcome: Outcome, now: DateTime<Utc>) -> Applied {
        let mut next = self;
        match outcome {
            Outcome::Booked {
                uid,
                id,
                event_type,
            } => {
                next.status = SegmentSyncStatus::Synced;
                next.calcom_booking_uid = Some(uid.clone());
                next.calcom_booking_id = Some(id);
                next.event_type_id = Some(event_type.0);
                next.next_attempt_at = None;
                next.review_reason = None;
                next.last_error = None;
                Applied {
                    booking: next,
                    attempt: Some(AttemptResult {
                        outcome: "created",
                        error: None,
                        calcom_booking_uid: Some(uid),
                    }),
                    next_run_at: None,
                }
            }
            Outcome::Gone => {
                next.status = SegmentSyncStatus::Pending;
                next.calcom_booking_uid = None;
                next.calcom_booking_id = None;
                next.attempts = 0;
                Applied {
                    booking: next,
                    attempt: None,
                    next_run_at: Some(now),
                }
            }
            Outcome::Cancelled => {
                next.status = SegmentSyncStatus::Cancelled;
                next.next_attempt_at = None;
                next.last_error = None;
                next.review_reason = None;
                Applied {
                    booking: next,
                    attempt: None,
                    next_run_at: None,
                }
            }
            Outcome::Failed {
                failure,
                operation,
                decision,
            } => {
                if failure.class.consumes_attempt() {
                    next.attempts = next.attempts.saturating_add(1);
                }
                if operation == Operation::Create && failure.class.may_have_created() {
                    next.earlier_outcome_unknown = true;
                }
                next.last_error = Some(SegmentError::from(&failure));
                next.status = decision.segment_status(operation);
                let next_run_at = match decision {
                    Decision::Retry { at } | Decision::ReconcileFirst { at } => {
                        next.next_attempt_at = Some(at);
                        next.review_reason = None;
                        Some(at)
                    }
                    Decision::NeedsReview { reason } => {
                        next.next_attempt_at = None;
                        next.review_reason = Some(reason);
                        None
                    }
                    Decision::ReResolveEventType => {
                        next.next_attempt_at = Some(now);
                        Some(now)
                    }
                };
                let error = next.last_error.clone();
                Applied {
                    booking: next,
                    attempt: Some(AttemptResult {
                        outcome: if operation == Operation::Create
                            && failure.class.may_have_created()
                        {
                            "unknown"
                        } else {
                            "failed"
                        },
                        error,
                        calcom_booking_uid: None,
                    }),
                    next_run_at,
                }
            }
            Outcome::Review { reason, failure } => {
                next.status = SegmentSyncStatus::NeedsReview;
                next.next_attempt_at = None;
                next.review_reason = Some(reason);
                if let Some(failure) = &failure {
                    next.last_error = Some(SegmentError::from(failure));
                }
                Applied {
                    booking: next,
                    attempt: None,
                    next_run_at: None,
                }
            }
        }
    }

    /// The segment after ops asked for a resync: what failed, waits for a person or was
    /// left mid-call starts over (attempts and review cleared), towards `desired`. `None`:
    /// the segment is left as it is (booked ones are verified by the run instead).
    pub fn on_resync(&self, desired: DesiredState) -> Option<SegmentBooking> {
        use SegmentSyncStatus as S;
        if !Self::RESET_ON_RESYNC.contains(&self.status) {
            return None;
        }
        let mut next = self.clone();
        next.status = match desired {
            DesiredState::Cancelled => S::Cancelling,
            DesiredState::Booked => S::Pending,
        };
        next.attempts = 0;
        next.next_attempt_at = None;
        next.review_reason = None;
        Some(next)
    }

    /// The statuses a resync starts over (see [`SegmentBooking::on_resync`]).
    pub const RESET_ON_RESYNC: [SegmentSyncStatus; 3] = [
        SegmentSyncStatus::Failed,
        SegmentSyncStatus::NeedsReview,
        SegmentSyncStatus::Syncing,
    ];

    /// True when the run has nothing more to do with the segment: booked, cancelled or
    /// waiting for a person.
    pub fn is_settled(&self, desired: DesiredState) -> bool {
        match desired {
            DesiredState::Booked => matches!(
                self.status,
                SegmentSyncStatus::Synced | SegmentSyncStatus::NeedsReview
            ),
            DesiredState::Cancelled => matches!(
                self.status,
                SegmentSyncStatus::Cancelled | SegmentSyncStatus::NeedsReview
            ),
        }
    }

    /// When this segment makes its job due again after a run: a failed or cancelling
    /// segment at its retry time (now when none is set), a pending one waiting out a
    /// backoff at that time.
    pub fn due_again(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        use SegmentSyncStatus as S;
        match self.status {
            S::Failed | S::Cancelling => Some(self.next_attempt_at.unwrap_or(now)),
            S::Pending => self.next_attempt_at,
            _ => None,
        }
    }
}

impl Default for SegmentBooking {
    fn default() -> Self {
        Self::new()
    }
}

/// The review reason when a segment cannot even be tried (no Cal.com client for the
/// tenant) and the policy named none.
pub fn cannot_sync_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Segment {} of appointment {} cannot be synced: {}; fix the tenant's Cal.com settings, then {}.",
        subject.segment_key,
        subject.appointment_id,
        failure.message,
        subject.resync()
    )
}

#[cfg(test)]
mod tests;
