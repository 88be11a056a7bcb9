//! Changes made on Cal.com's side (webhooks): what a cancel or a move means for the segment,
//! and whether Cal.com's current state confirms the change before it is acted on.

use chrono::{DateTime, Utc};

use super::{
    DesiredState, ObservedBooking, ReviewSubject, SegmentSyncStatus, cancelled_in_calcom_reason,
    rescheduled_in_calcom_reason,
};

/// What Cal.com says happened to one of our bookings (its webhooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalcomChange<'a> {
    Cancelled {
        booking_uid: &'a str,
        cancellation_reason: Option<&'a str>,
    },
    Rescheduled {
        new_uid: &'a str,
        new_start: DateTime<Utc>,
    },
}

/// What a change made in Cal.com means for the segment whose booking it touched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeVerdict {
    /// The appointment asked for the cancel: the segment is cancelled. `record` is false
    /// when the segment already says so (a late or repeated webhook).
    CancelConfirmed { record: bool },
    /// The calendar no longer matches the appointment: a human must decide, for this reason.
    Review(String),
}

/// Judges a change made in Cal.com against what the appointment wants: a cancel we asked
/// for only confirms it; anything else means the calendar and the appointment disagree.
pub fn judge_calcom_change(
    desired: DesiredState,
    status: SegmentSyncStatus,
    subject: &ReviewSubject,
    change: CalcomChange<'_>,
) -> ChangeVerdict {
    match change {
        CalcomChange::Cancelled { .. } if desired == DesiredState::Cancelled => {
            ChangeVerdict::CancelConfirmed {
                record: status != SegmentSyncStatus::Cancelled,
            }
        }
        CalcomChange::Cancelled {
            booking_uid,
            cancellation_reason,
        } => ChangeVerdict::Review(cancelled_in_calcom_reason(
            subject,
            booking_uid,
            cancellation_reason,
        )),
        CalcomChange::Rescheduled { new_uid, new_start } => {
            ChangeVerdict::Review(rescheduled_in_calcom_reason(subject, new_uid, new_start))
        }
    }
}

/// What Cal.com answers, asked about the booking a webhook names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalcomAnswer {
    /// The booking as Cal.com holds it now.
    Booking(ObservedBooking),
    /// Cal.com has no such booking.
    Gone,
    /// Cal.com could not be asked (unreachable, throttled).
    Unknown,
}

/// True when Cal.com's current state agrees with the change a signed webhook reports, so it
/// may be acted on. A delivery Cal.com contradicts (a "cancelled" booking that is still
/// active, a "moved to" booking that does not exist) is not believed: acting on it would
/// flag or release a booking that still stands. When Cal.com cannot be asked, the change is
/// believed, since flagging only asks a person to look.
pub fn change_confirmed(change: &CalcomChange<'_>, answer: &CalcomAnswer) -> bool {
    match (change, answer) {
        (_, CalcomAnswer::Unknown) => true,
        (CalcomChange::Cancelled { .. }, CalcomAnswer::Gone) => true,
        (CalcomChange::Cancelled { .. }, CalcomAnswer::Booking(booking)) => booking.cancelled,
        (CalcomChange::Rescheduled { .. }, CalcomAnswer::Gone) => false,
        (CalcomChange::Rescheduled { new_uid, .. }, CalcomAnswer::Booking(booking)) => {
            booking.uid == *new_uid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::subject;
    use chrono::TimeZone;

    #[test]
    fn a_cancel_we_asked_for_is_confirmed_once_and_never_flagged() {
        let change = CalcomChange::Cancelled {
            booking_uid: "uid-1",
            cancellation_reason: None,
        };
        let pending = judge_calcom_change(
            DesiredState::Cancelled,
            SegmentSyncStatus::Cancelling,
            &subject(),
            change,
        );
        assert_eq!(pending, ChangeVerdict::CancelConfirmed { record: true });
        let repeated = judge_calcom_change(
            DesiredState::Cancelled,
            SegmentSyncStatus::Cancelled,
            &subject(),
            change,
        );
        assert_eq!(repeated, ChangeVerdict::CancelConfirmed { record: false });
    }

    #[test]
    fn a_cancel_made_in_calcom_alone_flags_the_segment_with_the_reason_given() {
        let verdict = judge_calcom_change(
            DesiredState::Booked,
            SegmentSyncStatus::Synced,
            &subject(),
            CalcomChange::Cancelled {
                booking_uid: "uid-1",
                cancellation_reason: Some("stylist ill"),
            },
        );
        let ChangeVerdict::Review(reason) = verdict else {
            panic!("flagged: {verdict:?}");
        };
        assert!(
            reason.contains("uid-1") && reason.contains("stylist ill"),
            "{reason}"
        );
        assert!(reason.contains("POST /resync/"), "{reason}");
    }

    #[test]
    fn a_booking_moved_in_calcom_flags_the_segment_naming_the_new_booking() {
        let moved_to = Utc
            .with_ymd_and_hms(2026, 5, 5, 9, 0, 0)
            .single()
            .expect("time");
        let verdict = judge_calcom_change(
            DesiredState::Booked,
            SegmentSyncStatus::Synced,
            &subject(),
            CalcomChange::Rescheduled {
                new_uid: "uid-2",
                new_start: moved_to,
            },
        );
        let ChangeVerdict::Review(reason) = verdict else {
            panic!("flagged: {verdict:?}");
        };
        assert!(
            reason.contains("uid-2") && reason.contains("2026-05-05 09:00"),
            "{reason}"
        );
    }
}
