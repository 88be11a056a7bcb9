//! Rules for moving an appointment: when it may move at all, and how each segment's Cal.com
//! booking follows it so that exactly one booking stands for the segment, at its new time.
//! The order in which a run applies them, answer by answer, is
//! [`MovePlan`](super::MovePlan)'s.

use chrono::{DateTime, Utc};

use super::FailureClass;
use crate::AppointmentStatus;
use crate::EventTypeId;

/// Booking metadata key naming the appointment's revision a booking was made for (a create
/// after a move carries it; Cal.com's own reschedule copies the old booking's metadata).
pub const METADATA_REVISION: &str = "phasebook_revision";

/// Why an appointment cannot be moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RescheduleRefusal {
    /// It was cancelled: book a new one instead.
    Cancelled,
    /// Its first segment has begun (or is over): the time cannot change any more.
    Started,
}

/// Whether an appointment with this status and first start may be moved at `now`.
pub fn may_reschedule(
    status: AppointmentStatus,
    starts_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), RescheduleRefusal> {
    match status {
        AppointmentStatus::Cancelled => Err(RescheduleRefusal::Cancelled),
        AppointmentStatus::Booked if starts_at <= now => Err(RescheduleRefusal::Started),
        AppointmentStatus::Booked => Ok(()),
    }
}

/// Whether a segment whose plan changed from (`from_start`, `from_staff`) must have its
/// Cal.com booking moved: only when its time or its staff member changed, and only when a
/// booking may stand (a uid is stored, or a create or move may have landed unseen).
pub fn segment_must_move(
    time_or_staff_changed: bool,
    has_booking_uid: bool,
    earlier_outcome_unknown: bool,
) -> bool {
    time_or_staff_changed && (has_booking_uid || earlier_outcome_unknown)
}

/// How the sync engine moves one segment's booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveStep {
    /// Cal.com's reschedule: same event type (so same host), a known booking, and no
    /// earlier call whose outcome is unknown. One call, new uid, old one cancelled.
    CalcomReschedule,
    /// Look where the booking stood and where it should stand (following Cal.com's
    /// reschedule links): adopt one already at the new time, cancel every other of ours,
    /// then book the new time if nothing stands there. Used when the staff member changed
    /// (Cal.com cannot change a booking's host), when no uid is known, and after a call
    /// whose outcome is unknown.
    Reconcile,
}

/// Chooses how a segment is moved from the booking at `from_event_type` to
/// `to_event_type`.
pub fn move_step(
    has_booking_uid: bool,
    earlier_outcome_unknown: bool,
    from_event_type: Option<EventTypeId>,
    to_event_type: EventTypeId,
) -> MoveStep {
    if has_booking_uid && !earlier_outcome_unknown && from_event_type == Some(to_event_type) {
        MoveStep::CalcomReschedule
    } else {
        MoveStep::Reconcile
    }
}

/// A segment of the same appointment whose booking still stands at its old time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StillMoving<'a> {
    pub staff_id: &'a crate::StaffId,
    pub old_start: DateTime<Utc>,
    pub old_end: DateTime<Utc>,
}

/// Whether a segment must wait before its booking moves to [`starts_at`, `ends_at`): another
/// segment of the same appointment and staff member still holds part of that time in
/// Cal.com (moving a colour 15 minutes later lands segment C on D's old booking), and Cal.com
/// would refuse the host as busy. Plans keep their order, so the segment moving into
/// nobody's old time goes first and the others follow, one run each.
pub fn waits_for_neighbour(
    staff_id: &crate::StaffId,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    others: &[StillMoving<'_>],
) -> bool {
    others
        .iter()
        .any(|o| o.staff_id == staff_id && o.old_start < ends_at && starts_at < o.old_end)
}

/// Whether a failed Cal.com reschedule is tried again as a reschedule (after a reconcile
/// when it may have landed). Otherwise Cal.com refused the move itself (the booking was
/// cancelled or moved there meanwhile, the time is taken, …) and the segment is reconciled,
/// cancelled and booked anew instead.
pub fn retry_the_reschedule(class: FailureClass) -> bool {
    class.may_have_created()
        || matches!(
            class,
            FailureClass::RateLimited { .. } | FailureClass::NotSent
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;
    use proptest::prelude::*;

    #[test]
    fn a_cancelled_or_started_appointment_stays_where_it_is() {
        let now = Utc::now();
        let later = now + TimeDelta::hours(1);
        assert_eq!(
            may_reschedule(AppointmentStatus::Booked, later, now),
            Ok(())
        );
        assert_eq!(
            may_reschedule(AppointmentStatus::Cancelled, later, now),
            Err(RescheduleRefusal::Cancelled)
        );
        assert_eq!(
            may_reschedule(AppointmentStatus::Booked, now, now),
            Err(RescheduleRefusal::Started)
        );
    }

    #[test]
    fn only_a_known_booking_on_the_same_event_type_is_rescheduled_in_calcom() {
        let same = Some(EventTypeId(7));
        assert_eq!(
            move_step(true, false, same, EventTypeId(7)),
            MoveStep::CalcomReschedule
        );
        assert_eq!(
            move_step(true, false, Some(EventTypeId(8)), EventTypeId(7)),
            MoveStep::Reconcile,
            "another stylist: cancel and create"
        );
        assert_eq!(
            move_step(true, true, same, EventTypeId(7)),
            MoveStep::Reconcile
        );
        assert_eq!(
            move_step(false, false, same, EventTypeId(7)),
            MoveStep::Reconcile
        );
    }

    #[test]
    fn a_refused_reschedule_falls_back_and_a_lost_one_is_retried() {
        assert!(retry_the_reschedule(FailureClass::OutcomeUnknown));
        assert!(retry_the_reschedule(FailureClass::RateLimited {
            reset_after_ms: 1
        }));
        assert!(!retry_the_reschedule(FailureClass::Validation));
        assert!(!retry_the_reschedule(FailureClass::SlotUnavailable));
    }

    #[test]
    fn a_segment_landing_on_its_neighbours_old_booking_waits_for_it() {
        let anna = crate::StaffId::parse("anna").expect("staff");
        let at =
            |m: i64| DateTime::from_timestamp(1_900_000_000, 0).expect("t") + TimeDelta::minutes(m);
        let d_old = StillMoving {
            staff_id: &anna,
            old_start: at(90),
            old_end: at(120),
        };
        // C moves 15 minutes later, onto D's old time.
        assert!(waits_for_neighbour(&anna, at(75), at(105), &[d_old]));
        // D moves into nobody's old time.
        assert!(!waits_for_neighbour(&anna, at(105), at(135), &[]));
        let bob = crate::StaffId::parse("bob").expect("staff");
        assert!(!waits_for_neighbour(&bob, at(75), at(105), &[d_old]));
    }

    proptest! {
        #[test]
        fn an_unknown_outcome_is_always_reconciled_first(
            uid in any::<bool>(), from in proptest::option::of(1i64..4), to in 1i64..4,
        ) {
            prop_assert_eq!(
                move_step(uid, true, from.map(EventTypeId), EventTypeId(to)),
                MoveStep::Reconcile
            );
        }

        #[test]
        fn an_unchanged_segment_never_moves(uid in any::<bool>(), unknown in any::<bool>()) {
            prop_assert!(!segment_must_move(false, uid, unknown));
        }
    }
}
