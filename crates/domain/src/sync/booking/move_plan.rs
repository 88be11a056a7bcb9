//! The order of the steps that move one segment's Cal.com booking after its appointment was
//! rescheduled, so that exactly one booking stands for it, at its new time, and none at the
//! old one. A state machine the engine drives: [`MovePlan::new`] names the first action, the
//! engine performs it and hands the answer to [`MovePlan::next`], which names the next one,
//! until [`MoveAction::Done`]. [`MovePlan::booking`] is the segment's booking as the move has
//! left it so far: the engine saves it with every attempt it records and at the end.
//!
//! The order: a segment whose new time a neighbour of the same staff member still holds at
//! its old time waits for it. Same event type (so the same host), a known booking and no
//! earlier call whose outcome is unknown: one Cal.com reschedule (new uid, the old booking
//! cancelled by Cal.com). A reschedule whose answer was lost, or that was throttled or never
//! sent, is tried again later (after a look, when it may have landed); one that Cal.com
//! refused falls back to the look. Otherwise — another stylist, no uid, an unknown outcome —
//! the old position is looked at, following Cal.com's `rescheduledToUid` links: a booking of
//! ours already at the new time is adopted, every other one of ours is cancelled, one at a
//! time, and only once all of them are gone does the segment go back to booking its new time
//! as usual. Until then it keeps moving, so a crash at any point repeats the look, never a
//! create.
//!
//! [`MovePlan::leave`] is the same look for an appointment cancelled while it was moving:
//! every booking of ours found is cancelled, none is kept.

use chrono::{DateTime, TimeDelta, Utc};

use super::{AttemptResult, CancelAnswer, Outcome, SegmentBooking};
use crate::sync::reschedule::{
    MoveStep, StillMoving, move_step, retry_the_reschedule, waits_for_neighbour,
};
use crate::sync::{
    BookingIdentity, CalcomFailure, ObservedBooking, Operation, SegmentError, SegmentSyncStatus,
    converge,
};
use crate::{EventTypeId, StaffId};

/// How long a segment waits for the neighbour holding its new time: it runs again right
/// after this run, when the neighbour has moved.
pub const NEIGHBOUR_WAIT: TimeDelta = TimeDelta::milliseconds(50);

/// What the engine knows about a segment whose booking must follow its appointment's move.
#[derive(Debug, Clone, Copy)]
pub struct MoveAsk<'a> {
    pub identity: &'a BookingIdentity,
    pub staff_id: &'a StaffId,
    /// The segment's new time.
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Where its booking may still stand: the old start, and the event type it was made on
    /// (when known).
    pub from: DateTime<Utc>,
    pub from_event_type: Option<EventTypeId>,
    /// The bookable event type of the segment's map at its new position.
    pub to: EventTypeId,
    /// The other segments of the appointment whose bookings still stand at their old times.
    pub neighbours: &'a [StillMoving<'a>],
}

/// The next thing the engine does for the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveAction {
    /// Ask Cal.com to move `uid` to the segment's new start, on the same `event_type`.
    Reschedule {
        uid: String,
        event_type: EventTypeId,
    },
    /// List every booking that may be the segment's: `uid` and each one Cal.com moved it
    /// to, then `event_type`'s bookings around `at`. `logged`: the look is an attempt of its
    /// own, written ahead and recorded; the look of a cancelled appointment is not (its
    /// cancels are).
    Find {
        uid: Option<String>,
        event_type: EventTypeId,
        at: DateTime<Utc>,
        logged: bool,
    },
    /// Cancel a booking of ours the move leaves behind.
    CancelStray {
        uid: String,
        event_type: Option<EventTypeId>,
    },
    /// Finish the attempt of the last call with this outcome, saved with
    /// [`MovePlan::booking`].
    Record(AttemptResult),
    Done(MoveEnd),
}

/// How the move of the segment ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveEnd {
    /// A neighbour still holds part of the new time; the segment is due again at its
    /// `next_attempt_at`.
    WaitForNeighbour,
    /// Cal.com moved the booking: it stands at the new time. The reschedule's attempt is
    /// finished with `record`, naming the booking it moved from.
    Moved {
        moved_from: String,
        record: AttemptResult,
    },
    /// A booking of ours already stood at the new time and was adopted; nothing else of
    /// ours stands.
    Adopted,
    /// Nothing of ours stands any more: the segment books its new time as usual.
    Rebook,
    /// The appointment was cancelled: nothing of ours stands at the old position.
    Left,
    /// The old position could not be looked at (no event type is known): nothing was done.
    NowhereToLook,
    /// A call failed: the policy decides what comes next, with no re-resolution to follow.
    Failed {
        failure: CalcomFailure,
        operation: Operation,
    },
}

impl MoveEnd {
    /// True when no booking of ours can stand at the old position any more: the segment
    /// stops moving.
    pub fn done_moving(&self) -> bool {
        matches!(
            self,
            Self::Moved { .. } | Self::Adopted | Self::Rebook | Self::Left
        )
    }
}

/// The answer to the action the plan named last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveResult {
    /// The booking Cal.com moved it to, or why it did not.
    Rescheduled(Result<ObservedBooking, CalcomFailure>),
    Found(Result<Vec<ObservedBooking>, CalcomFailure>),
    Cancelled(CancelAnswer),
    Recorded,
}

/// Where the booking must end up: `None` when the appointment was cancelled.
#[derive(Debug, Clone)]
struct Target {
    event_type: EventTypeId,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

/// What the plan waits for, with the failure it ends on where there is one.
#[derive(Debug, Clone)]
enum Waiting {
    Reschedule(String),
    RecordedReschedule(CalcomFailure),
    Find,
    RecordedFind(Option<CalcomFailure>),
    Cancel(String),
    RecordedCancel(Option<CalcomFailure>),
    Done,
}

/// The moving steps of one segment in one run (see the module documentation).
#[derive(Debug, Clone)]
pub struct MovePlan {
    booking: SegmentBooking,
    identity: BookingIdentity,
    target: Option<Target>,
    look_on: EventTypeId,
    from: DateTime<Utc>,
    now: DateTime<Utc>,
    /// The booking the look found at the new time, as (uid, id).
    kept: Option<(String, i64)>,
    strays: Vec<(String, Option<EventTypeId>)>,
    waiting: Waiting,
    last: MoveAction,
}

impl MovePlan {
    /// The plan for a [`super::Step::Move`] of `booking`, and its first action.
    pub fn new(
        booking: &SegmentBooking,
        ask: &MoveAsk<'_>,
        now: DateTime<Utc>,
    ) -> (Self, MoveAction) {
        let mut plan = Self {
            booking: booking.clone(),
            identity: ask.identity.clone(),
            target: Some(Target {
                event_type: ask.to,
                starts_at: ask.starts_at,
                ends_at: ask.ends_at,
            }),
            look_on: ask.from_event_type.unwrap_or(ask.to),
            from: ask.from,
            now,
            kept: None,
            strays: Vec::new(),
            waiting: Waiting::Done,
            last: MoveAction::Done(MoveEnd::NowhereToLook),
        };
        if waits_for_neighbour(ask.staff_id, ask.starts_at, ask.ends_at, ask.neighbours) {
            plan.booking.next_attempt_at = Some(now + NEIGHBOUR_WAIT);
            let first = plan.end(MoveEnd::WaitForNeighbour);
            return (plan, first);
        }
        let step = move_step(
            booking.calcom_booking_uid.is_some(),
            booking.earlier_outcome_unknown,
            ask.from_event_type,
            ask.to,
        );
        let first = match (step, booking.calcom_booking_uid.clone()) {
            (MoveStep::CalcomReschedule, Some(uid)) => {
                let action = MoveAction::Reschedule {
                    uid: uid.clone(),
                    event_type: ask.to,
                };
                plan.ask(Waiting::Reschedule(uid), action)
            }
            _ => plan.find(),
        };
        (plan, first)
    }

    /// The plan for cancelling what an unfinished move of `booking` left at `from`, on
    /// `from_event_type` (else the booking's own event type), and its first action.
    pub fn leave(
        booking: &SegmentBooking,
        identity: &BookingIdentity,
        from: DateTime<Utc>,
        from_event_type: Option<EventTypeId>,
        now: DateTime<Utc>,
    ) -> (Self, MoveAction) {
        let look_on = from_event_type.or(booking.event_type_id.map(EventTypeId));
        let mut plan = Self {
            booking: booking.clone(),
            identity: identity.clone(),
            target: None,
            look_on: look_on.unwrap_or(EventTypeId(0)),
            from,
            now,
            kept: None,
            strays: Vec::new(),
            waiting: Waiting::Done,
            last: MoveAction::Done(MoveEnd::NowhereToLook),
        };
        let first = match look_on {
            Some(_) => plan.find(),
            None => plan.end(MoveEnd::NowhereToLook),
        };
        (plan, first)
    }

    /// The segment's booking as the move has left it so far.
    pub fn booking(&self) -> &SegmentBooking {
        &self.booking
    }

    /// The action after `result`. A result the plan did not ask for changes nothing: the
    /// action it waits for is named again.
    pub fn next(&mut self, result: MoveResult) -> MoveAction {
        use MoveResult as R;
        let waiting = self.waiting.clone();
        match (waiting, result) {
            (Waiting::Reschedule(uid), R::Rescheduled(Ok(moved))) => {
                self.booked(moved.uid.clone(), moved.id);
                self.end(MoveEnd::Moved {
                    moved_from: uid,
                    record: AttemptResult {
                        outcome: "rescheduled",
                        error: None,
                        calcom_booking_uid: Some(moved.uid),
                    },
                })
            }
            (Waiting::Reschedule(_), R::Rescheduled(Err(failure))) => {
                let outcome = if failure.class.may_have_created() {
                    "unknown"
                } else {
                    "failed"
                };
                let record = self.failed(&failure, outcome);
                self.ask(Waiting::RecordedReschedule(failure), record)
            }
            (Waiting::RecordedReschedule(failure), R::Recorded) => {
                if !retry_the_reschedule(failure.class) {
                    // Cal.com refused the move itself (the booking went meanwhile, the time
                    // is taken, …): look, cancel and book anew instead.
                    return self.find();
                }
                // A reschedule that may have landed is looked for before it is tried again.
                if failure.class.may_have_created() {
                    self.booking.earlier_outcome_unknown = true;
                }
                self.end(MoveEnd::Failed {
                    failure,
                    operation: Operation::Create,
                })
            }
            (Waiting::Find, R::Found(Err(failure))) => {
                if self.target.is_none() {
                    return self.end(MoveEnd::Failed {
                        failure,
                        operation: Operation::Cancel,
                    });
                }
                let record = self.failed(&failure, "failed");
                self.ask(Waiting::RecordedFind(Some(failure)), record)
            }
            (Waiting::Find, R::Found(Ok(found))) => self.found(&found),
            (Waiting::RecordedFind(Some(failure)), R::Recorded) => self.end(MoveEnd::Failed {
                failure,
                operation: Operation::Create,
            }),
            (Waiting::RecordedFind(None), R::Recorded) => self.next_stray(),
            (Waiting::Cancel(uid), R::Cancelled(answer)) => {
                let (outcome, failure) = match answer {
                    CancelAnswer::Cancelled => ("cancelled", None),
                    CancelAnswer::AlreadyCancelled => ("already_cancelled", None),
                    CancelAnswer::NotFound => ("not_found", None),
                    CancelAnswer::Failed(failure) => ("failed", Some(failure)),
                };
                let record = MoveAction::Record(AttemptResult {
                    outcome,
                    error: failure.as_ref().map(SegmentError::from),
                    calcom_booking_uid: Some(uid),
                });
                self.ask(Waiting::RecordedCancel(failure), record)
            }
            (Waiting::RecordedCancel(Some(failure)), R::Recorded) => self.end(MoveEnd::Failed {
                failure,
                operation: Operation::Cancel,
            }),
            (Waiting::RecordedCancel(None), R::Recorded) => self.next_stray(),
            _ => self.last.clone(),
        }
    }

    fn ask(&mut self, waiting: Waiting, action: MoveAction) -> MoveAction {
        self.waiting = waiting;
        self.last = action.clone();
        action
    }

    fn end(&mut self, end: MoveEnd) -> MoveAction {
        self.ask(Waiting::Done, MoveAction::Done(end))
    }

    fn find(&mut self) -> MoveAction {
        let action = MoveAction::Find {
            uid: self.booking.calcom_booking_uid.clone(),
            event_type: self.look_on,
            at: self.from,
            logged: self.target.is_some(),
        };
        self.ask(Waiting::Find, action)
    }

    /// The record of a failed call; the failure is the segment's last error from now on.
    fn failed(&mut self, failure: &CalcomFailure, outcome: &'static str) -> MoveAction {
        let error = SegmentError::from(failure);
        self.booking.last_error = Some(error.clone());
        MoveAction::Record(AttemptResult {
            outcome,
            error: Some(error),
            calcom_booking_uid: None,
        })
    }

    fn found(&mut self, found: &[ObservedBooking]) -> MoveAction {
        let Some(target) = self.target.clone() else {
            // Cancelled: no event type or time can be kept (a zero-length span on event
            // type 0 matches nothing), so every active booking of ours is a stray.
            let look = converge(&self.identity, EventTypeId(0), self.from, self.from, found);
            self.strays = Self::named(found, &look.strays);
            return self.next_stray();
        };
        let look = converge(
            &self.identity,
            target.event_type,
            target.starts_at,
            target.ends_at,
            found,
        );
        self.kept = look.keep.map(|i| (found[i].uid.clone(), found[i].id));
        self.strays = Self::named(found, &look.strays);
        // The stored uid stays until every old booking is cancelled: a crash before then
        // repeats this look from the same place.
        let record = AttemptResult {
            outcome: if self.kept.is_some() {
                "adopted"
            } else {
                "missing"
            },
            error: None,
            calcom_booking_uid: self.kept.as_ref().map(|(uid, _)| uid.clone()),
        };
        self.ask(Waiting::RecordedFind(None), MoveAction::Record(record))
    }

    fn named(found: &[ObservedBooking], strays: &[usize]) -> Vec<(String, Option<EventTypeId>)> {
        strays
            .iter()
            .rev()
            .map(|&i| (found[i].uid.clone(), found[i].event_type_id))
            .collect()
    }

    /// The next stray to cancel (in the order found), or the end once none is left.
    fn next_stray(&mut self) -> MoveAction {
        if let Some((uid, event_type)) = self.strays.pop() {
            let action = MoveAction::CancelStray {
                uid: uid.clone(),
                event_type,
            };
            return self.ask(Waiting::Cancel(uid), action);
        }
        if self.target.is_none() {
            return self.end(MoveEnd::Left);
        }
        match self.kept.clone() {
            Some((uid, id)) => {
                self.booked(uid, id);
                self.end(MoveEnd::Adopted)
            }
            None => {
                self.booking.calcom_booking_uid = None;
                self.booking.calcom_booking_id = None;
                self.booking.status = SegmentSyncStatus::Pending;
                self.end(MoveEnd::Rebook)
            }
        }
    }

    /// A booking of ours stands at the new time: the segment is synced on it.
    fn booked(&mut self, uid: String, id: i64) {
        let event_type = self.target.as_ref().map_or(self.look_on, |t| t.event_type);
        let outcome = Outcome::Booked {
            uid,
            id,
            event_type,
        };
        self.booking = self.booking.clone().apply(outcome, self.now).booking;
    }
}

#[cfg(test)]
mod tests;
