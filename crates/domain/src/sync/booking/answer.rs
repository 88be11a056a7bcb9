//! What each Cal.com answer does to one segment's booking within a run, and how the attempt
//! that asked records it: the engine makes the call and hands the answer to
//! [`SegmentBooking::take`], which gives the booking the run goes on with, the booking saved
//! with the attempt's outcome, and that outcome. The end of a segment's run (booked, failed
//! with the policy's decision, review) is [`SegmentBooking::apply`]; the failures that end it
//! are judged by [`SegmentBooking::fail`] and [`SegmentBooking::without_calcom`].

use chrono::{DateTime, Utc};

use super::{
    AttemptResult, GoneAs, Outcome, Reconciled, Resolved, SegmentBooking, refusal_failure,
};
use crate::EventTypeId;
use crate::resolution::Refusal;
use crate::sync::{
    CalcomFailure, Decision, Operation, RetryPolicy, ReviewSubject, SegmentError,
    SegmentSyncStatus, cannot_sync_reason, event_map_refused_reason,
};

/// A booking Cal.com answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingSeen {
    pub uid: String,
    pub id: i64,
    pub event_type: EventTypeId,
}

/// What Cal.com answered a cancel with (the failure it gave, where it gave one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReply {
    Cancelled,
    AlreadyCancelled,
    NotFound(CalcomFailure),
    Failed(CalcomFailure),
}

/// One Cal.com answer about the segment, as its booking takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// A look-up found this booking of ours at the planned time. `verify`: a resync's check
    /// of a booked segment, not a reconcile before a create.
    Found { booking: BookingSeen, verify: bool },
    /// A look-up found none of ours at the planned time.
    Missing,
    /// Cal.com could not be read: what it holds is still unknown.
    LookupFailed(CalcomFailure),
    /// A create booked the segment.
    Created(BookingSeen),
    /// A create booked another length than the segment's: that booking blocks another span
    /// and is cancelled next, but its uid is kept first so that, whatever happens before,
    /// a reconcile finds it.
    CreatedOtherLength(BookingSeen),
    /// A create on `event_type` failed.
    CreateFailed {
        failure: CalcomFailure,
        event_type: EventTypeId,
    },
    /// A booking of ours not at the planned time (`uid`) was asked to go. Cal.com listed it
    /// a moment ago, so "not found" is a failure here: the segment is tried again.
    StrayCancelled { uid: String, reply: CancelReply },
    /// The cancel of `from` found it moved in Cal.com to `to`, which is cancelled next.
    CancelMoved { from: String, to: String },
    /// The cancel of `uid` found it gone.
    CancelGone { uid: String, gone: GoneAs },
    /// The cancel of `uid` failed; the policy decides next.
    CancelFailed { uid: String, failure: CalcomFailure },
}

/// The booking after one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taken {
    /// The booking the run goes on with.
    pub booking: SegmentBooking,
    /// The booking saved with the attempt's outcome. Where the policy still decides after a
    /// failure, it keeps the status the call was begun with, so the store never shows a
    /// state the decision has not made yet.
    pub saved: SegmentBooking,
    pub attempt: AttemptResult,
    /// The failure the answer leaves for the run to act on.
    pub failure: Option<CalcomFailure>,
}

impl CancelReply {
    /// The reply as the cancel plan reads it.
    pub fn answer(self) -> super::CancelAnswer {
        use super::CancelAnswer as A;
        match self {
            Self::Cancelled => A::Cancelled,
            Self::AlreadyCancelled => A::AlreadyCancelled,
            Self::NotFound(_) => A::NotFound,
            Self::Failed(failure) => A::Failed(failure),
        }
    }
}

impl Resolved {
    /// What resolving the event map came to (`Ok(Ok(bookable))`, a refusal, or Cal.com not
    /// read), and how the attempt records it. The segment's booking does not change.
    pub fn from_reply(
        reply: Result<Result<EventTypeId, Refusal>, CalcomFailure>,
        subject: &ReviewSubject,
    ) -> (Self, AttemptResult) {
        let (resolved, error) = match reply {
            Ok(Ok(bookable)) => (Self::Bookable(bookable), None),
            Ok(Err(refusal)) => (
                Self::Refused(event_map_refused_reason(subject, &refusal)),
                Some(SegmentError::from(&refusal_failure(&refusal))),
            ),
            Err(failure) => (Self::Unknown, Some(SegmentError::from(&failure))),
        };
        let attempt = AttemptResult {
            outcome: if error.is_none() {
                "resolved"
            } else {
                "failed"
            },
            error,
            calcom_booking_uid: None,
        };
        (resolved, attempt)
    }
}

impl Reconciled {
    /// What a resync's check of a booked segment makes of the look: `Some(Gone)` when none of
    /// ours stands at the planned time any more, so the segment is booked again. A failed
    /// look tells nothing: the booking is kept, and the next resync checks again.
    pub fn verified(&self) -> Option<Outcome> {
        matches!(self, Self::Missing).then_some(Outcome::Gone)
    }
}

fn record(
    outcome: &'static str,
    failure: Option<&CalcomFailure>,
    uid: Option<String>,
) -> AttemptResult {
    AttemptResult {
        outcome,
        error: failure.map(SegmentError::from),
        calcom_booking_uid: uid,
    }
}

impl SegmentBooking {
    /// The booking after `answer` (see [`Answer`]), at `now`.
    pub fn take(self, answer: Answer, now: DateTime<Utc>) -> Taken {
        let booked = |booking: SegmentBooking, seen: BookingSeen| {
            let outcome = Outcome::Booked {
                uid: seen.uid,
                id: seen.id,
                event_type: seen.event_type,
            };
            booking.apply(outcome, now).booking
        };
        let mut next = self;
        let (attempt, failure, status_while_deciding) = match answer {
            Answer::Found { booking, verify } => {
                let uid = booking.uid.clone();
                next = booked(next, booking);
                let outcome = if verify { "exists" } else { "adopted" };
                (record(outcome, None, Some(uid)), None, None)
            }
            Answer::Missing => (record("missing", None, None), None, None),
            Answer::LookupFailed(failure) => {
                next.last_error = Some(SegmentError::from(&failure));
                (record("failed", Some(&failure), None), Some(failure), None)
            }
            Answer::Created(booking) => {
                let uid = booking.uid.clone();
                next = booked(next, booking);
                (record("created", None, Some(uid)), None, None)
            }
            Answer::CreatedOtherLength(booking) => {
                next.event_type_id = Some(booking.event_type.0);
                next.calcom_booking_uid = Some(booking.uid.clone());
                next.calcom_booking_id = Some(booking.id);
                (record("created", None, Some(booking.uid)), None, None)
            }
            Answer::CreateFailed {
                failure,
                event_type,
            } => {
                let may_have_created = failure.class.may_have_created();
                next.earlier_outcome_unknown |= may_have_created;
                next.event_type_id = Some(event_type.0);
                next.last_error = Some(SegmentError::from(&failure));
                let outcome = if may_have_created {
                    "unknown"
                } else {
                    "failed"
                };
                let attempt = record(outcome, Some(&failure), None);
                (attempt, Some(failure), Some(SegmentSyncStatus::Syncing))
            }
            Answer::StrayCancelled { uid, reply } => match reply {
                CancelReply::Cancelled => (record("cancelled", None, Some(uid)), None, None),
                CancelReply::AlreadyCancelled => {
                    (record("already_cancelled", None, Some(uid)), None, None)
                }
                CancelReply::NotFound(failure) | CancelReply::Failed(failure) => (
                    record("failed", Some(&failure), Some(uid)),
                    Some(failure),
                    None,
                ),
            },
            Answer::CancelMoved { from, to } => {
                next.calcom_booking_uid = Some(to);
                next.calcom_booking_id = None;
                let attempt = record("moved", None, Some(from));
                (attempt, None, Some(SegmentSyncStatus::Cancelling))
            }
            Answer::CancelGone { uid, gone } => {
                next = next.apply(Outcome::Cancelled, now).booking;
                (record(gone.outcome(), None, Some(uid)), None, None)
            }
            Answer::CancelFailed { uid, failure } => {
                let attempt = record("failed", Some(&failure), Some(uid));
                (attempt, Some(failure), Some(SegmentSyncStatus::Cancelling))
            }
        };
        let mut saved = next.clone();
        if let Some(status) = status_while_deciding {
            saved.status = status;
        }
        Taken {
            booking: next,
            saved,
            attempt,
            failure,
        }
    }

    /// The end of a run after a failed call that no re-resolution follows: the policy's
    /// decision, on the event type the booking was made on (else the map's, named by
    /// `subject`). `re_resolved`: the host's child of a managed parent was looked for.
    pub fn fail(
        &self,
        failure: &CalcomFailure,
        operation: Operation,
        re_resolved: bool,
        subject: &ReviewSubject,
        (policy, now, jitter): (&RetryPolicy, DateTime<Utc>, f64),
    ) -> Outcome {
        let event_type = self
            .event_type_id
            .map(EventTypeId)
            .or(subject.event_type_id)
            .unwrap_or(EventTypeId(0));
        let subject = ReviewSubject {
            event_type_id: Some(event_type),
            ..subject.clone()
        };
        let decision = self.decide(
            failure,
            operation,
            re_resolved,
            false,
            &subject,
            None,
            policy,
            now,
            jitter,
        );
        Outcome::Failed {
            failure: failure.clone(),
            operation,
            decision,
        }
    }

    /// The end of a run that could not reach Cal.com at all (no client for the tenant): a
    /// review, with the policy's reason when it names one (else that the segment cannot be
    /// synced and the tenant's settings need fixing).
    pub fn without_calcom(
        &self,
        failure: &CalcomFailure,
        subject: &ReviewSubject,
        (policy, now, jitter): (&RetryPolicy, DateTime<Utc>, f64),
    ) -> Outcome {
        let on_none = ReviewSubject {
            event_type_id: Some(EventTypeId(0)),
            ..subject.clone()
        };
        let decision = self.decide(
            failure,
            Operation::Create,
            true,
            false,
            &on_none,
            None,
            policy,
            now,
            jitter,
        );
        let reason = match decision {
            Decision::NeedsReview { reason } => reason,
            _ => cannot_sync_reason(subject, failure),
        };
        Outcome::Review {
            reason,
            failure: Some(failure.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
