//! The verification sweep's judgement: compare the bookings phasebook holds for a tenant's
//! coming days with what Cal.com lists for the same window, and name the appointments whose
//! calendar no longer matches, so that their sync job converges them (see `converge`).
//! A booking deleted, cancelled or moved in Cal.com without a webhook is found here.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::ObservedBooking;
use crate::SegmentKey;

/// A synced segment's booking as phasebook stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBooking {
    pub appointment_id: Uuid,
    pub segment_key: SegmentKey,
    pub calcom_booking_uid: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// The appointments to verify: a stored booking that Cal.com no longer lists as active at
/// its planned start and end, and any active booking carrying this tenant's identity that no synced
/// segment stores (a copy left behind by a move). `listed` must be every booking Cal.com
/// holds in the window, whatever its status; `tenant_id` is ours.
pub fn sweep_findings(
    tenant_id: Uuid,
    stored: &[StoredBooking],
    listed: &[ObservedBooking],
) -> BTreeSet<Uuid> {
    let active: HashMap<&str, &ObservedBooking> = listed
        .iter()
        .filter(|b| !b.cancelled)
        .map(|b| (b.uid.as_str(), b))
        .collect();
    let mut findings: BTreeSet<Uuid> = stored
        .iter()
        .filter(|s| {
            active
                .get(s.calcom_booking_uid.as_str())
                .is_none_or(|b| b.start != s.starts_at || b.end != s.ends_at)
        })
        .map(|s| s.appointment_id)
        .collect();
    let known: BTreeSet<&str> = stored
        .iter()
        .map(|s| s.calcom_booking_uid.as_str())
        .collect();
    let tenant = tenant_id.to_string();
    for booking in active.values() {
        let ours = booking
            .tenant
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(&tenant));
        if ours
            && !known.contains(booking.uid.as_str())
            && let Some(appointment) = booking
                .appointment
                .as_deref()
                .and_then(|a| Uuid::parse_str(a).ok())
        {
            findings.insert(appointment);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventTypeId;
    use chrono::{TimeDelta, TimeZone};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 4, 2, hour, 0, 0)
            .single()
            .expect("time")
    }

    fn stored(appointment: u128, uid: &str, hour: u32) -> StoredBooking {
        StoredBooking {
            appointment_id: Uuid::from_u128(appointment),
            segment_key: SegmentKey::parse("A").expect("key"),
            calcom_booking_uid: uid.into(),
            starts_at: at(hour),
            ends_at: at(hour) + TimeDelta::minutes(30),
        }
    }

    fn listed(
        appointment: u128,
        uid: &str,
        start: DateTime<Utc>,
        cancelled: bool,
    ) -> ObservedBooking {
        ObservedBooking {
            id: 1,
            uid: uid.into(),
            event_type_id: Some(EventTypeId(5)),
            start,
            end: start + TimeDelta::minutes(30),
            cancelled,
            tenant: Some(Uuid::from_u128(9).to_string()),
            appointment: Some(Uuid::from_u128(appointment).to_string()),
            segment: Some("A".into()),
            rescheduled_to_uid: None,
        }
    }

    #[test]
    fn missing_cancelled_moved_and_stray_bookings_are_found_and_nothing_else() {
        let tenant = Uuid::from_u128(9);
        let ours = vec![
            stored(1, "fine", 9),
            stored(2, "deleted", 10),
            stored(3, "cancelled", 11),
            stored(4, "moved", 12),
        ];
        let mut foreign = listed(7, "theirs", at(9), false);
        foreign.tenant = None;
        let calcom = vec![
            listed(1, "fine", at(9), false),
            listed(3, "cancelled", at(11), true),
            listed(4, "moved", at(12) + TimeDelta::hours(2), false),
            listed(5, "stray", at(15), false),
            listed(6, "old-stray", at(16), true),
            foreign,
        ];
        let found: Vec<u128> = sweep_findings(tenant, &ours, &calcom)
            .into_iter()
            .map(|u| u.as_u128())
            .collect();
        assert_eq!(found, vec![2, 3, 4, 5]);
    }
}
