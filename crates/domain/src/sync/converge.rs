//! Convergence: given every Cal.com booking found carrying a segment's identity (by its
//! stored uid, by following Cal.com's reschedule links, and by listing the event type),
//! decide which one stands for the segment and which must be cancelled, so that exactly one
//! active booking remains, at the segment's planned event type and start.
//!
//! A booking moved in Cal.com keeps our metadata (Cal.com copies it to the new booking), so
//! it still carries the identity: it is a stray to cancel, not a second truth. The planned
//! time is the appointment's; the calendar is brought back to it.

use chrono::{DateTime, Utc};

use super::{BookingIdentity, ObservedBooking, choose_adoption};
use crate::EventTypeId;

/// How many reschedule links are followed from a stored uid before giving up: a booking
/// moved more often than this in Cal.com is found by the listing instead.
pub const MAX_RESCHEDULE_HOPS: usize = 8;

/// True when `booking` carries our metadata for `identity` (tenant, appointment, segment),
/// whatever its time, event type or status.
pub fn carries_identity(identity: &BookingIdentity, booking: &ObservedBooking) -> bool {
    let same = |value: &Option<String>, expected: &str| {
        value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    same(&booking.tenant, &identity.tenant_id.to_string())
        && same(&booking.appointment, &identity.appointment_id.to_string())
        && booking.segment.as_deref() == Some(identity.segment_key.as_str())
}

/// The booking a moved booking was moved to, when Cal.com says so. Cal.com cancels the old
/// booking of a reschedule and links it to the new one (`rescheduledToUid`).
pub fn successor(booking: &ObservedBooking) -> Option<&str> {
    booking
        .rescheduled_to_uid
        .as_deref()
        .filter(|next| !next.is_empty() && *next != booking.uid)
}

/// True when Cal.com must be searched for the segment's bookings before a create: an
/// earlier create may have landed (its outcome is unknown), or the segment still names a
/// booking although it is not synced (flagged after a change in Cal.com, or reset by a
/// resync), so a booking of ours may stand somewhere, possibly moved.
pub fn reconcile_owed(earlier_outcome_unknown: bool, has_booking_uid: bool) -> bool {
    earlier_outcome_unknown || has_booking_uid
}

/// What to do with the bookings found for one segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Convergence {
    /// Index of the booking that stands for the segment: ours, active, at the planned
    /// event type and start (the oldest when several are). `None`: one must be created.
    pub keep: Option<usize>,
    /// Indexes of the other active bookings carrying the identity: moved in Cal.com to
    /// another time, on another event type, or duplicates. Each must be cancelled. A uid
    /// found twice (by link and by listing) is named once.
    pub strays: Vec<usize>,
}

impl Convergence {
    /// True when the calendar already matches: one booking at the planned time, nothing else.
    pub fn is_settled(&self) -> bool {
        self.keep.is_some() && self.strays.is_empty()
    }
}

/// Decides which of `bookings` stands for the segment planned on `event_type_id` from
/// `start` to `end`, and which must go. A booking of ours at the right start but of another
/// length (made while the event type had another length) does not stand: it is a stray.
pub fn converge(
    identity: &BookingIdentity,
    event_type_id: EventTypeId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    bookings: &[ObservedBooking],
) -> Convergence {
    let keep = choose_adoption(identity, event_type_id, start, end, bookings).adopt;
    let keep_uid = keep.map(|i| bookings[i].uid.as_str());
    let mut strays: Vec<usize> = Vec::new();
    for (index, booking) in bookings.iter().enumerate() {
        let named = keep_uid == Some(booking.uid.as_str())
            || strays.iter().any(|&s| bookings[s].uid == booking.uid);
        if !booking.cancelled && !named && carries_identity(identity, booking) {
            strays.push(index);
        }
    }
    Convergence { keep, strays }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SegmentKey;
    use chrono::{TimeDelta, TimeZone};
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use uuid::Uuid;

    fn identity() -> BookingIdentity {
        BookingIdentity {
            tenant_id: Uuid::from_u128(1),
            appointment_id: Uuid::from_u128(2),
            segment_key: SegmentKey::parse("D").expect("key"),
        }
    }

    fn planned() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 3, 5, 10, 0, 0)
            .single()
            .expect("time")
    }

    fn ours(id: i64, start: DateTime<Utc>) -> ObservedBooking {
        let ident = identity();
        ObservedBooking {
            id,
            uid: format!("uid-{id}"),
            event_type_id: Some(EventTypeId(5)),
            start,
            end: start + TimeDelta::minutes(30),
            cancelled: false,
            tenant: Some(ident.tenant_id.to_string()),
            appointment: Some(ident.appointment_id.to_string()),
            segment: Some("D".into()),
            rescheduled_to_uid: None,
        }
    }

    #[test]
    fn a_booking_moved_in_calcom_is_a_stray_and_the_planned_time_must_be_booked_again() {
        let mut old = ours(1, planned());
        old.cancelled = true;
        old.rescheduled_to_uid = Some("uid-2".into());
        let moved = ours(2, planned() + TimeDelta::hours(2));
        let found = vec![old, moved.clone(), moved];
        let c = converge(
            &identity(),
            EventTypeId(5),
            planned(),
            planned() + TimeDelta::minutes(30),
            &found,
        );
        assert_eq!(c.keep, None, "nothing stands at the planned time");
        assert_eq!(c.strays, vec![1], "the moved booking, named once");
        assert_eq!(successor(&found[0]), Some("uid-2"));
    }

    #[test]
    fn the_booking_at_the_planned_time_is_kept_and_every_other_copy_goes() {
        let found = vec![
            ours(7, planned() - TimeDelta::minutes(15)),
            ours(3, planned()),
            ours(9, planned()),
        ];
        let c = converge(
            &identity(),
            EventTypeId(5),
            planned(),
            planned() + TimeDelta::minutes(30),
            &found,
        );
        assert_eq!(c.keep, Some(1));
        assert_eq!(c.strays, vec![0, 2]);
        assert!(!c.is_settled());
        let settled = converge(
            &identity(),
            EventTypeId(5),
            planned(),
            planned() + TimeDelta::minutes(30),
            &found[1..2],
        );
        assert!(settled.is_settled());
    }

    #[test]
    fn bookings_of_another_segment_appointment_or_tenant_are_never_touched() {
        let mut other_segment = ours(1, planned() + TimeDelta::hours(1));
        other_segment.segment = Some("C".into());
        let mut other_appointment = ours(2, planned());
        other_appointment.appointment = Some(Uuid::from_u128(3).to_string());
        let mut other_tenant = ours(3, planned());
        other_tenant.tenant = Some(Uuid::from_u128(4).to_string());
        let mut foreign = ours(4, planned());
        foreign.tenant = None;
        foreign.appointment = None;
        foreign.segment = None;
        let found = vec![other_segment, other_appointment, other_tenant, foreign];
        assert_eq!(
            converge(
                &identity(),
                EventTypeId(5),
                planned(),
                planned() + TimeDelta::minutes(30),
                &found
            ),
            Convergence::default()
        );
    }

    fn any_booking() -> impl Strategy<Value = ObservedBooking> {
        (
            1i64..12,
            prop_oneof![Just(5i64), Just(6)],
            -2i64..3,
            any::<bool>(),
            any::<bool>(),
            prop_oneof![Just("D"), Just("C")],
        )
            .prop_map(|(id, event_type, shift, cancelled, mine, segment)| {
                let mut b = ours(id, planned() + TimeDelta::minutes(15 * shift));
                b.event_type_id = Some(EventTypeId(event_type));
                b.cancelled = cancelled;
                b.segment = Some(segment.into());
                if !mine {
                    b.appointment = Some(Uuid::from_u128(77).to_string());
                }
                b
            })
    }

    proptest! {
        /// Applying the decision (cancel every stray, create one when nothing is kept)
        /// always leaves exactly one active booking carrying the identity, at the planned
        /// event type and start, and touches nothing that is not ours.
        #[test]
        fn convergence_leaves_exactly_one_active_booking_at_the_planned_time(
            found in proptest::collection::vec(any_booking(), 0..10)
        ) {
            // One uid is one booking: keep the first of each.
            let mut seen = BTreeSet::new();
            let found: Vec<ObservedBooking> =
                found.into_iter().filter(|b| seen.insert(b.uid.clone())).collect();
            let identity = identity();
            let c = converge(&identity, EventTypeId(5), planned(), planned() + TimeDelta::minutes(30), &found);
            let stray_uids: BTreeSet<&str> =
                c.strays.iter().map(|&i| found[i].uid.as_str()).collect();
            prop_assert_eq!(stray_uids.len(), c.strays.len(), "a uid is cancelled once");
            for &i in &c.strays {
                prop_assert!(carries_identity(&identity, &found[i]) && !found[i].cancelled);
            }
            let mut active: BTreeSet<(&str, i64, DateTime<Utc>)> = found
                .iter()
                .filter(|b| !b.cancelled && carries_identity(&identity, b))
                .filter(|b| !stray_uids.contains(b.uid.as_str()))
                .map(|b| (b.uid.as_str(), b.event_type_id.map_or(0, |e| e.0), b.start))
                .collect();
            match c.keep {
                Some(k) => {
                    prop_assert!(!stray_uids.contains(found[k].uid.as_str()));
                }
                None => {
                    active.insert(("created", 5, planned()));
                }
            }
            let left: Vec<_> = active.into_iter().collect();
            prop_assert_eq!(left.len(), 1, "{:?}", left);
            prop_assert_eq!((left[0].1, left[0].2), (5, planned()));
        }
    }
}
