//! Which Cal.com booking is ours: the identity written into a booking's metadata, the
//! booking as Cal.com lists it, and the adoption of ours among listed bookings.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::{EventTypeId, SegmentKey};

/// Metadata key carrying the tenant id on every booking phasebook creates.
pub const METADATA_TENANT: &str = "phasebook_tenant";
/// Metadata key carrying the appointment id.
pub const METADATA_APPOINTMENT: &str = "phasebook_appointment";
/// Metadata key carrying the segment key.
pub const METADATA_SEGMENT: &str = "phasebook_segment";

/// The identity phasebook writes into a booking's metadata, and looks for when adopting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BookingIdentity {
    pub tenant_id: Uuid,
    pub appointment_id: Uuid,
    pub segment_key: SegmentKey,
}

impl BookingIdentity {
    /// The metadata entries to send with the create (three short strings: well inside
    /// Cal.com's 50 keys / 40-char keys / 500-char values).
    pub fn metadata(&self) -> [(&'static str, String); 3] {
        [
            (METADATA_TENANT, self.tenant_id.to_string()),
            (METADATA_APPOINTMENT, self.appointment_id.to_string()),
            (METADATA_SEGMENT, self.segment_key.to_string()),
        ]
    }
}

/// A booking as listed by Cal.com, reduced to what adoption looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObservedBooking {
    pub id: i64,
    pub uid: String,
    pub event_type_id: Option<EventTypeId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub cancelled: bool,
    /// The values of our three metadata keys, as strings, when present.
    pub tenant: Option<String>,
    pub appointment: Option<String>,
    pub segment: Option<String>,
    /// Set on a booking that was moved in Cal.com: the uid of the booking it became.
    pub rescheduled_to_uid: Option<String>,
}

/// True when `booking` is the one phasebook created for `identity`: our metadata (tenant,
/// appointment, segment), the same event type, start and end, and not cancelled. The
/// metadata is what makes it ours; event type and span guard against a booking that was
/// moved or re-pointed since, or made while the event type had another length.
pub fn is_ours(
    identity: &BookingIdentity,
    event_type_id: EventTypeId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    booking: &ObservedBooking,
) -> bool {
    let same = |value: &Option<String>, expected: &str| {
        value
            .as_deref()
            .is_some_and(|v| v.eq_ignore_ascii_case(expected))
    };
    !booking.cancelled
        && booking.event_type_id == Some(event_type_id)
        && booking.start == start
        && booking.end == end
        && same(&booking.tenant, &identity.tenant_id.to_string())
        && same(&booking.appointment, &identity.appointment_id.to_string())
        && booking.segment.as_deref() == Some(identity.segment_key.as_str())
}

/// The outcome of looking through listed bookings for ours.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Adoption {
    /// Index of the booking to adopt: the oldest one of ours (lowest Cal.com id).
    pub adopt: Option<usize>,
    /// Indexes of further bookings of ours, which should not exist: they are duplicates to
    /// cancel.
    pub duplicates: Vec<usize>,
}

/// Picks ours among `bookings` (see [`is_ours`]).
pub fn choose_adoption(
    identity: &BookingIdentity,
    event_type_id: EventTypeId,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    bookings: &[ObservedBooking],
) -> Adoption {
    let mut ours: Vec<usize> = bookings
        .iter()
        .enumerate()
        .filter(|(_, b)| is_ours(identity, event_type_id, start, end, b))
        .map(|(i, _)| i)
        .collect();
    ours.sort_by_key(|&i| bookings[i].id);
    let mut iter = ours.into_iter();
    Adoption {
        adopt: iter.next(),
        duplicates: iter.collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::fixtures::now;
    use chrono::TimeDelta;

    fn identity() -> BookingIdentity {
        BookingIdentity {
            tenant_id: Uuid::from_u128(1),
            appointment_id: Uuid::from_u128(2),
            segment_key: SegmentKey::parse("A").expect("key"),
        }
    }

    fn observed(id: i64) -> ObservedBooking {
        let ident = identity();
        ObservedBooking {
            id,
            uid: format!("uid-{id}"),
            event_type_id: Some(EventTypeId(5)),
            start: now(),
            end: now() + TimeDelta::minutes(30),
            cancelled: false,
            tenant: Some(ident.tenant_id.to_string()),
            appointment: Some(ident.appointment_id.to_string()),
            segment: Some("A".into()),
            rescheduled_to_uid: None,
        }
    }

    #[test]
    fn adoption_takes_the_oldest_of_ours_and_names_duplicates() {
        let mut other_segment = observed(1);
        other_segment.segment = Some("B".into());
        let mut cancelled = observed(2);
        cancelled.cancelled = true;
        let mut moved = observed(3);
        moved.start = now() + TimeDelta::minutes(30);
        moved.end = now() + TimeDelta::minutes(60);
        let mut foreign = observed(4);
        foreign.tenant = Some(Uuid::from_u128(99).to_string());
        let list = vec![
            other_segment,
            cancelled,
            moved,
            foreign,
            observed(9),
            observed(6),
        ];
        let end = now() + TimeDelta::minutes(30);
        let a = choose_adoption(&identity(), EventTypeId(5), now(), end, &list);
        assert_eq!(a.adopt, Some(5));
        assert_eq!(a.duplicates, vec![4]);
        let none = choose_adoption(&identity(), EventTypeId(6), now(), end, &list);
        assert_eq!(none, Adoption::default());
    }

    #[test]
    fn metadata_fits_calcom_limits() {
        for (key, value) in identity().metadata() {
            assert!(key.len() <= 40);
            assert!(value.len() <= 500);
        }
    }
}
