//! The order of the steps that cancel one segment's booking in one run, as a state machine
//! the engine drives: [`CancelPlan::new`] names the first action, the engine performs it and
//! hands the answer to [`CancelPlan::next`], which names the next one, until
//! [`CancelAction::Done`].
//!
//! The order: a booking left behind by an unfinished move goes first; a create that may have
//! reached Cal.com without leaving us a uid is reconciled, so that its booking is found and
//! cancelled too; then the booking is cancelled. "Already cancelled" may mean Cal.com moved
//! it: the successor it names holds the time now and is cancelled in turn, at most
//! [`MAX_RESCHEDULE_HOPS`] times. "Cancelled", "not found" and "already cancelled" with no
//! successor all mean the booking is gone.

use super::{Reconciled, SegmentBooking};
use crate::EventTypeId;
use crate::sync::{CalcomFailure, MAX_RESCHEDULE_HOPS};

/// What asking Cal.com to cancel a booking came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAnswer {
    Cancelled,
    /// Cancelled before (by us, by someone else, or by a reschedule in Cal.com).
    AlreadyCancelled,
    NotFound,
    Failed(CalcomFailure),
}

/// How the booking was found gone; the attempt records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneAs {
    Cancelled,
    NotFound,
    AlreadyCancelled,
}

impl GoneAs {
    /// The attempt's recorded outcome (one of [`super::CANCEL_DONE_OUTCOMES`]).
    pub fn outcome(self) -> &'static str {
        match self {
            Self::Cancelled => "cancelled",
            Self::NotFound => "not_found",
            Self::AlreadyCancelled => "already_cancelled",
        }
    }
}

/// The next thing the engine does for the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelAction {
    /// Cancel whatever an unfinished move left at the old time.
    CancelLeftBehind,
    /// Look for an earlier booking of ours on `event_type` and converge on it.
    Reconcile {
        event_type: EventTypeId,
    },
    /// Ask Cal.com to cancel `uid`.
    Cancel {
        uid: String,
    },
    /// `uid` was already cancelled: ask Cal.com where it was moved to, if anywhere.
    FindSuccessor {
        uid: String,
    },
    /// `from` was moved to `to`: record it, and keep `to` as the segment's booking.
    Follow {
        from: String,
        to: String,
    },
    Done(CancelEnd),
}

/// How the cancelling of the segment ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelEnd {
    /// No booking of ours is known: the segment is cancelled with no call to make.
    NothingToCancel,
    /// The segment's booking is gone.
    Gone(GoneAs),
    /// A call failed: the policy decides, with no re-resolution to follow.
    Failed(CalcomFailure),
}

/// The answer to the action the plan named last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelResult {
    /// `Some`: what was left behind could not be cancelled.
    LeftBehind(Option<CalcomFailure>),
    /// The reconcile's answer, and the segment's booking uid after it.
    Reconciled {
        reconciled: Reconciled,
        uid: Option<String>,
    },
    Cancel(CancelAnswer),
    /// Where Cal.com says the booking was moved to.
    Successor(Result<Option<String>, CalcomFailure>),
    Followed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Waiting {
    LeftBehind,
    Reconcile,
    Cancel(String),
    Successor(String),
    Follow(String),
    Done,
}

/// The cancelling steps of one segment in one run (see the module documentation).
#[derive(Debug, Clone)]
pub struct CancelPlan {
    uid: Option<String>,
    /// The event type to reconcile on, when a create's outcome is unknown and no uid is kept.
    reconcile_on: Option<EventTypeId>,
    hops: usize,
    waiting: Waiting,
    last: CancelAction,
}

impl CancelPlan {
    /// The plan for a [`super::Step::Cancel`] of `booking`, and its first action. `moving`:
    /// the segment was being moved when it was cancelled. `bookable`: the map's bookable
    /// event type, for a create that never recorded one.
    pub fn new(
        booking: &SegmentBooking,
        moving: bool,
        bookable: Option<EventTypeId>,
    ) -> (Self, CancelAction) {
        // A create whose outcome is unknown may have left a booking we have no uid for.
        let reconcile_on =
            if booking.calcom_booking_uid.is_none() && booking.earlier_outcome_unknown {
                booking.event_type_id.map(EventTypeId).or(bookable)
            } else {
                None
            };
        let mut plan = Self {
            uid: booking.calcom_booking_uid.clone(),
            reconcile_on,
            hops: 0,
            waiting: Waiting::Done,
            last: CancelAction::CancelLeftBehind,
        };
        let first = if moving {
            plan.ask(Waiting::LeftBehind, CancelAction::CancelLeftBehind)
        } else {
            plan.reconcile_or_cancel()
        };
        (plan, first)
    }

    /// The action after `result`. A result the plan did not ask for changes nothing: the
    /// action it waits for is named again.
    pub fn next(&mut self, result: CancelResult) -> CancelAction {
        use CancelResult as R;
        let waiting = self.waiting.clone();
        match (waiting, result) {
            (Waiting::LeftBehind, R::LeftBehind(Some(failure))) => {
                self.end(CancelEnd::Failed(failure))
            }
            (Waiting::LeftBehind, R::LeftBehind(None)) => self.reconcile_or_cancel(),
            (Waiting::Reconcile, R::Reconciled { reconciled, uid }) => match reconciled {
                Reconciled::Failed(failure) => self.end(CancelEnd::Failed(failure)),
                Reconciled::Adopted | Reconciled::Missing => {
                    self.uid = uid;
                    self.cancel()
                }
            },
            (Waiting::Cancel(uid), R::Cancel(answer)) => match answer {
                CancelAnswer::Cancelled => self.end(CancelEnd::Gone(GoneAs::Cancelled)),
                CancelAnswer::NotFound => self.end(CancelEnd::Gone(GoneAs::NotFound)),
                // Cal.com cancels the old booking of a reschedule: what holds the stylist's
                // time now is the booking it was moved to, so that is the one to cancel.
                CancelAnswer::AlreadyCancelled => {
                    let action = CancelAction::FindSuccessor { uid: uid.clone() };
                    self.ask(Waiting::Successor(uid), action)
                }
                CancelAnswer::Failed(failure) => self.end(CancelEnd::Failed(failure)),
            },
            (Waiting::Successor(from), R::Successor(found)) => match found {
                Ok(Some(to)) if self.hops < MAX_RESCHEDULE_HOPS => {
                    self.hops += 1;
                    let action = CancelAction::Follow {
                        from,
                        to: to.clone(),
                    };
                    self.ask(Waiting::Follow(to), action)
                }
                Ok(_) => self.end(CancelEnd::Gone(GoneAs::AlreadyCancelled)),
                Err(failure) => self.end(CancelEnd::Failed(failure)),
            },
            (Waiting::Follow(to), R::Followed) => {
                self.uid = Some(to);
                self.cancel()
            }
            _ => self.last.clone(),
        }
    }

    fn ask(&mut self, waiting: Waiting, action: CancelAction) -> CancelAction {
        self.waiting = waiting;
        self.last = action.clone();
        action
    }

    fn end(&mut self, end: CancelEnd) -> CancelAction {
        self.ask(Waiting::Done, CancelAction::Done(end))
    }

    fn reconcile_or_cancel(&mut self) -> CancelAction {
        match self.reconcile_on {
            Some(event_type) => {
                self.ask(Waiting::Reconcile, CancelAction::Reconcile { event_type })
            }
            None => self.cancel(),
        }
    }

    fn cancel(&mut self) -> CancelAction {
        match self.uid.clone() {
            Some(uid) => {
                let action = CancelAction::Cancel { uid: uid.clone() };
                self.ask(Waiting::Cancel(uid), action)
            }
            None => self.end(CancelEnd::NothingToCancel),
        }
    }
}

#[cfg(test)]
mod tests;
