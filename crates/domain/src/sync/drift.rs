//! Drift: the bookable event type a segment is about to be booked on no longer fits it.
//! Cal.com lets anyone change an event type's length, and ops may re-point a staff member
//! to another Cal.com user; a booking made anyway would block the wrong time or the wrong
//! calendar while phasebook says `synced`. The worker checks the bookable type before each
//! create (a cached read, at most one a minute per event type) and asks this module.

use super::ReviewSubject;
use crate::EventTypeId;
use crate::resolution::{Assessment, EventTypeFacts, HostIdentity, Refusal, assess};

/// How long a checked event type is trusted before it is read again.
pub const EVENT_TYPE_CHECK_TTL_SECS: u64 = 60;

/// Why the segment must not be booked on `bookable` as it stands in Cal.com now, if it must
/// not: its length differs from the segment's, or it belongs to (or is hosted by) another
/// Cal.com user than the staff member's. `None` lets the create go ahead; a type Cal.com no
/// longer shows is left to the create, whose refusal names it.
pub fn drift_refusal(
    bookable: EventTypeId,
    read: Option<&EventTypeFacts>,
    host: &HostIdentity,
    segment_minutes: u32,
) -> Option<Refusal> {
    let read = read?;
    match assess(bookable, Some(read), host, segment_minutes) {
        Assessment::Refused(
            refusal @ (Refusal::LengthMismatch { .. }
            | Refusal::OwnedByAnotherUser { .. }
            | Refusal::NotAHost { .. }),
        ) => Some(refusal),
        _ => None,
    }
}

/// The review reason for a segment whose event map Cal.com no longer supports: what is
/// wrong, the fix, and the resync that books it once fixed.
pub fn event_map_refused_reason(subject: &ReviewSubject, refusal: &Refusal) -> String {
    format!(
        "Segment {} of appointment {} at {} cannot be booked: {} Fix: {} Then {}.",
        subject.segment_key,
        subject.appointment_id,
        subject.when(),
        refusal.detail(),
        refusal.fix(),
        subject.resync()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CalcomUserId;

    fn host() -> HostIdentity {
        HostIdentity {
            user_id: CalcomUserId(501),
            username: "noa".into(),
        }
    }

    fn personal(length: i64, owner: i64) -> EventTypeFacts {
        EventTypeFacts {
            id: EventTypeId(11),
            slug: "cut".into(),
            title: "Cut".into(),
            length_minutes: length,
            owner: Some(CalcomUserId(owner)),
            team_id: None,
            parent: None,
            scheduling: None,
            hosts: Vec::new(),
            managed_config: false,
        }
    }

    #[test]
    fn a_length_changed_in_calcom_stops_the_booking_and_names_both_lengths() {
        let refusal =
            drift_refusal(EventTypeId(11), Some(&personal(45, 501)), &host(), 30).expect("refused");
        let detail = refusal.detail();
        assert!(detail.contains("45") && detail.contains("30"), "{detail}");
        assert!(refusal.fix().contains("30 minutes"));
    }

    #[test]
    fn a_type_of_another_user_stops_the_booking() {
        let refusal = drift_refusal(EventTypeId(11), Some(&personal(30, 777)), &host(), 30);
        assert!(matches!(refusal, Some(Refusal::OwnedByAnotherUser { .. })));
    }

    #[test]
    fn a_fitting_or_unreadable_type_lets_the_create_decide() {
        assert_eq!(
            drift_refusal(EventTypeId(11), Some(&personal(30, 501)), &host(), 30),
            None
        );
        assert_eq!(drift_refusal(EventTypeId(11), None, &host(), 30), None);
    }
}
