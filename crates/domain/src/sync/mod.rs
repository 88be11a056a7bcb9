//! The sync state machine and error policy: the statuses a segment booking and an
//! appointment move through, how an appointment's status follows from its segments, when
//! and how a failed Cal.com call is tried again, which Cal.com booking is ours, and the
//! review reasons a person reads when a human must act.
//!
//! Everything here is pure: the caller passes the current instant and a jitter fraction,
//! and maps the Cal.com client's error into a [`CalcomFailure`] first.
//!
//! Each topic lives in its own file; everything public is re-exported here, so callers
//! keep using `crate::sync::X`.

mod booking;
pub mod breaker;
mod change;
mod converge;
mod drift;
#[cfg(test)]
mod fixtures;
mod identity;
mod policy;
pub mod reschedule;
mod retry;
mod review;
mod status;
mod sweep;
pub use booking::{
    Answer, Applied, AttemptResult, BookAction, BookEnd, BookPlan, BookResult, BookingSeen,
    CANCEL_DONE_OUTCOMES, CancelAction, CancelAnswer, CancelEnd, CancelPlan, CancelReply,
    CancelResult, Created, GoneAs, MoveAction, MoveAsk, MoveEnd, MovePlan, MoveResult,
    NEIGHBOUR_WAIT, Outcome, Reconciled, Resolved, RunAsk, SegmentBooking, Step, Taken,
    cannot_sync_reason, create_may_have_reached_calcom, refusal_failure,
};
pub use change::{
    CalcomAnswer, CalcomChange, ChangeVerdict, change_confirmed, judge_calcom_change,
};
pub use converge::{
    Convergence, MAX_RESCHEDULE_HOPS, carries_identity, converge, reconcile_owed, successor,
};
pub use drift::{EVENT_TYPE_CHECK_TTL_SECS, drift_refusal, event_map_refused_reason};
pub use identity::{
    Adoption, BookingIdentity, METADATA_APPOINTMENT, METADATA_SEGMENT, METADATA_TENANT,
    ObservedBooking, choose_adoption, is_ours,
};
pub use policy::{
    BusyCause, CALCOM_UNAVAILABLE_KINDS, CalcomFailure, Decision, FailureClass, FailureInput,
    Operation, OwnBookingInTheWay, SegmentError, decide, only_calcom_was_unavailable,
    own_booking_in_the_way,
};
pub use retry::RetryPolicy;
pub use review::{
    ReviewSubject, cancelled_in_calcom_reason, managed_parent_without_child_reason,
    missing_event_map_reason, rescheduled_in_calcom_reason, slot_unavailable_reason,
};
pub use status::{
    AppointmentSync, AppointmentSyncStatus, DesiredState, SegmentState, SegmentSyncStatus,
    derive_appointment_sync,
};
pub use sweep::{StoredBooking, sweep_findings};
