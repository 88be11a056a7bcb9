//! The order of the steps that book one segment in one run, as a state machine the engine
//! drives: [`BookPlan::new`] names the first action, the engine performs it and hands the
//! answer to [`BookPlan::next`], which names the next one, until [`BookAction::Done`].
//!
//! The order: a resync resolves the event map again first; a create that may have reached
//! Cal.com earlier is reconciled before anything is created; the bookable event type is
//! checked for drift; then the create. A "busy" answer rechecks the drift with Cal.com's word
//! of now and looks for a booking of ours in the way before the policy decides; when nothing
//! stands there any more, the create is tried once more at once (a sibling segment's run may
//! just have cancelled the copy of ours that was in the way). A managed parent is resolved
//! again once, and the create retried on the host's child.

use crate::EventTypeId;
use crate::resolution::Refusal;

use super::{SegmentBooking, Step};
use crate::sync::{
    BusyCause, CalcomFailure, Decision, FailureClass, OwnBookingInTheWay, ReviewSubject,
    event_map_refused_reason, managed_parent_without_child_reason,
};

/// What resolving the event map for the segment's host came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// This event type is bookable for the host now.
    Bookable(EventTypeId),
    /// The map cannot be booked; the review reason says why.
    Refused(String),
    /// Cal.com did not answer: nothing is known.
    Unknown,
}

/// What looking for an earlier booking of ours came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// One stands at the planned time and was adopted.
    Adopted,
    /// None stands at the planned time.
    Missing,
    /// Cal.com could not be read (or a stray could not be cancelled).
    Failed(CalcomFailure),
}

/// What a create came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    Booked,
    /// Cal.com booked this many minutes, not the segment's length; that booking is cancelled.
    OtherLength(i64),
    Failed(CalcomFailure),
}

/// The next thing the engine does for the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookAction {
    /// Resolve the event map for the segment's host.
    Resolve,
    /// Look for an earlier booking of ours on `event_type` and converge on it.
    Reconcile {
        event_type: EventTypeId,
    },
    /// Ask whether `event_type` still fits the segment. `forget_first`: drop what is
    /// remembered of it and ask Cal.com now.
    CheckDrift {
        event_type: EventTypeId,
        forget_first: bool,
    },
    Create {
        event_type: EventTypeId,
    },
    /// After a "busy" answer: look at what stands in the segment's time.
    FindOwnInTheWay,
    /// Ask the policy about a failed create (see [`SegmentBooking::decide`]; the plan
    /// resolves again when told to).
    Decide {
        failure: CalcomFailure,
        event_type: EventTypeId,
        re_resolved: bool,
        in_the_way: Option<OwnBookingInTheWay>,
    },
    Done(BookEnd),
}

/// How the booking of the segment ended in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookEnd {
    /// A booking of ours stands at the planned time (created or adopted) and is saved.
    Booked,
    /// A person must act.
    Review {
        reason: String,
        failure: Option<CalcomFailure>,
    },
    /// The policy decided on a failed create.
    Decided {
        decision: Decision,
        failure: CalcomFailure,
    },
    /// A reconcile failed: the policy decides, with no re-resolution to follow.
    ReconcileFailed {
        failure: CalcomFailure,
        re_resolved: bool,
    },
}

/// The answer to the action the plan named last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BookResult {
    Resolved(Resolved),
    Reconciled(Reconciled),
    Drift(Option<Refusal>),
    Created(Created),
    InTheWay(BusyCause),
    Decided(Decision),
}

/// What the plan waits for, with the failed create it is about where there is one.
#[derive(Debug, Clone)]
enum Waiting {
    Revalidation,
    Reconcile,
    Drift,
    Create,
    DriftAfterBusy(CalcomFailure),
    InTheWay(CalcomFailure),
    Decision(CalcomFailure),
    ReResolution(CalcomFailure),
    Done,
}

/// The booking steps of one segment in one run (see the module documentation).
#[derive(Debug, Clone)]
pub struct BookPlan {
    subject: ReviewSubject,
    segment_minutes: u32,
    event_type: EventTypeId,
    reconcile: bool,
    /// An earlier create (before or during this run) may have reached Cal.com.
    outcome_unknown: bool,
    re_resolved: bool,
    /// The create was tried again after a "busy" whose cause was gone.
    busy_retried: bool,
    waiting: Waiting,
    last: BookAction,
}

impl BookPlan {
    /// The plan for a [`Step::Book`] of `booking` on `event_type` (the map's bookable type),
    /// and its first action. `subject` names the segment in review reasons.
    pub fn new(
        booking: &SegmentBooking,
        step: Step,
        event_type: EventTypeId,
        subject: ReviewSubject,
        segment_minutes: u32,
    ) -> (Self, BookAction) {
        let (revalidate, reconcile) = match step {
            Step::Book {
                revalidate,
                reconcile,
            } => (revalidate, reconcile),
            _ => (false, booking.earlier_outcome_unknown),
        };
        let mut plan = Self {
            subject,
            segment_minutes,
            event_type,
            reconcile,
            outcome_unknown: booking.earlier_outcome_unknown,
            re_resolved: false,
            busy_retried: false,
            waiting: Waiting::Done,
            last: BookAction::Resolve,
        };
        let first = if revalidate {
            plan.ask(Waiting::Revalidation, BookAction::Resolve)
        } else {
            plan.book()
        };
        (plan, first)
    }

    /// The event type the plan books on now.
    pub fn event_type(&self) -> EventTypeId {
        self.event_type
    }

    /// True once the event map was resolved again after a managed-parent answer.
    pub fn re_resolved(&self) -> bool {
        self.re_resolved
    }

    /// The action after `result`. A result the plan did not ask for changes nothing: the
    /// action it waits for is named again.
    pub fn next(&mut self, result: BookResult) -> BookAction {
        use BookAction as A;
        use BookResult as R;
        let waiting = self.waiting.clone();
        match (waiting, result) {
            (Waiting::Revalidation, R::Resolved(resolved)) => match resolved {
                Resolved::Bookable(id) => {
                    self.event_type = id;
                    self.book()
                }
                Resolved::Refused(reason) => self.end(BookEnd::Review {
                    reason,
                    failure: None,
                }),
                Resolved::Unknown => self.book(),
            },
            (Waiting::Reconcile, R::Reconciled(reconciled)) => match reconciled {
                Reconciled::Adopted => self.end(BookEnd::Booked),
                Reconciled::Missing => self.check_drift(),
                Reconciled::Failed(failure) => self.end(BookEnd::ReconcileFailed {
                    failure,
                    re_resolved: self.re_resolved,
                }),
            },
            (Waiting::Drift, R::Drift(Some(refusal))) => self.refused(&refusal, None),
            (Waiting::Drift, R::Drift(None)) => {
                let event_type = self.event_type;
                self.ask(Waiting::Create, A::Create { event_type })
            }
            (Waiting::Create, R::Created(created)) => match created {
                Created::Booked => self.end(BookEnd::Booked),
                Created::OtherLength(length_minutes) => {
                    let refusal = Refusal::LengthMismatch {
                        event_type_id: self.event_type,
                        length_minutes,
                        segment_minutes: self.segment_minutes,
                    };
                    self.refused(&refusal, None)
                }
                Created::Failed(failure) => {
                    self.outcome_unknown |= failure.class.may_have_created();
                    // "Busy" may be the event type grown since the last check, colliding
                    // with our own next segment: ask Cal.com now, so the reason names it.
                    if failure.class == FailureClass::SlotUnavailable {
                        let event_type = self.event_type;
                        self.ask(
                            Waiting::DriftAfterBusy(failure),
                            A::CheckDrift {
                                event_type,
                                forget_first: true,
                            },
                        )
                    } else {
                        self.decide(failure, None)
                    }
                }
            },
            (Waiting::DriftAfterBusy(failure), R::Drift(Some(refusal))) => {
                self.refused(&refusal, Some(failure))
            }
            (Waiting::DriftAfterBusy(failure), R::Drift(None)) => {
                self.ask(Waiting::InTheWay(failure), A::FindOwnInTheWay)
            }
            (Waiting::InTheWay(_), R::InTheWay(BusyCause::Gone)) if !self.busy_retried => {
                self.busy_retried = true;
                let event_type = self.event_type;
                self.ask(Waiting::Create, A::Create { event_type })
            }
            (Waiting::InTheWay(failure), R::InTheWay(cause)) => self.decide(failure, cause.ours()),
            (Waiting::Decision(failure), R::Decided(decision)) => match decision {
                Decision::ReResolveEventType if !self.re_resolved => {
                    self.re_resolved = true;
                    self.ask(Waiting::ReResolution(failure), A::Resolve)
                }
                Decision::ReResolveEventType => self.without_child(failure),
                decision => self.end(BookEnd::Decided { decision, failure }),
            },
            (Waiting::ReResolution(failure), R::Resolved(resolved)) => match resolved {
                Resolved::Bookable(id) if id != self.event_type => {
                    self.event_type = id;
                    // Nothing was created on the parent, so no reconcile is owed for it.
                    self.reconcile = self.outcome_unknown;
                    self.book()
                }
                _ => self.without_child(failure),
            },
            _ => self.last.clone(),
        }
    }

    fn ask(&mut self, waiting: Waiting, action: BookAction) -> BookAction {
        self.waiting = waiting;
        self.last = action.clone();
        action
    }

    fn end(&mut self, end: BookEnd) -> BookAction {
        self.ask(Waiting::Done, BookAction::Done(end))
    }

    /// Reconcile first when owed, else go on to the drift check.
    fn book(&mut self) -> BookAction {
        if self.reconcile {
            let event_type = self.event_type;
            self.ask(Waiting::Reconcile, BookAction::Reconcile { event_type })
        } else {
            self.check_drift()
        }
    }

    fn check_drift(&mut self) -> BookAction {
        let event_type = self.event_type;
        self.ask(
            Waiting::Drift,
            BookAction::CheckDrift {
                event_type,
                forget_first: false,
            },
        )
    }

    fn decide(
        &mut self,
        failure: CalcomFailure,
        in_the_way: Option<OwnBookingInTheWay>,
    ) -> BookAction {
        let action = BookAction::Decide {
            failure: failure.clone(),
            event_type: self.event_type,
            re_resolved: self.re_resolved,
            in_the_way,
        };
        self.ask(Waiting::Decision(failure), action)
    }

    fn subject_on(&self, event_type: EventTypeId) -> ReviewSubject {
        ReviewSubject {
            event_type_id: Some(event_type),
            ..self.subject.clone()
        }
    }

    /// The event type no longer fits: review, with `failure` when a call showed it (else
    /// the refusal itself).
    fn refused(&mut self, refusal: &Refusal, failure: Option<CalcomFailure>) -> BookAction {
        let reason = event_map_refused_reason(&self.subject_on(self.event_type), refusal);
        let failure = failure.unwrap_or_else(|| refusal_failure(refusal));
        self.end(BookEnd::Review {
            reason,
            failure: Some(failure),
        })
    }

    /// The managed parent has no child for the host (or resolving again did not find one).
    fn without_child(&mut self, failure: CalcomFailure) -> BookAction {
        let parent = match failure.class {
            FailureClass::ManagedParent { event_type_id } => event_type_id,
            _ => self.event_type,
        };
        let reason = managed_parent_without_child_reason(&self.subject_on(parent), parent);
        self.end(BookEnd::Review {
            reason,
            failure: Some(failure),
        })
    }
}

/// A refusal as the failure recorded on the segment.
pub fn refusal_failure(refusal: &Refusal) -> CalcomFailure {
    CalcomFailure {
        class: FailureClass::Validation,
        kind: refusal.code().to_string(),
        http_status: None,
        message: refusal.detail(),
    }
}

#[cfg(test)]
mod tests;
