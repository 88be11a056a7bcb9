//! What redefining a service does to the event maps that point at its segments. A map is
//! stored per (service, segment key, staff): a segment that disappears takes its maps with
//! it, and a segment whose length changes no longer fits the event types its maps were
//! checked against. Neither may happen silently.

use std::collections::BTreeMap;

use crate::{CalcomUserId, SegmentKey, Service, ServiceId, StaffId};

/// The maps a change would break, by segment key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceChange {
    /// Segments the new definition no longer has, with the staff whose maps point at them.
    /// A change with any of these is refused: the maps would be lost.
    pub removed: BTreeMap<SegmentKey, Vec<StaffId>>,
    /// Segments whose length changes, with the staff whose maps must be checked again.
    pub resized: BTreeMap<SegmentKey, Vec<StaffId>>,
}

impl ServiceChange {
    pub fn loses_maps(&self) -> bool {
        !self.removed.is_empty()
    }
}

/// Compares the stored definition with the new one against the existing maps
/// (`(segment key, staff)` pairs of this service).
pub fn service_change(
    old: &Service,
    new: &Service,
    maps: &[(SegmentKey, StaffId)],
) -> ServiceChange {
    let mut change = ServiceChange::default();
    for (key, staff) in maps {
        let before = old.segments().iter().find(|s| &s.key == key);
        let after = new.segments().iter().find(|s| &s.key == key);
        match (before, after) {
            (_, None) => change
                .removed
                .entry(key.clone())
                .or_default()
                .push(staff.clone()),
            (Some(b), Some(a)) if b.duration_minutes != a.duration_minutes => change
                .resized
                .entry(key.clone())
                .or_default()
                .push(staff.clone()),
            _ => {}
        }
    }
    change
}

/// Why a segment's maps must be checked again after the segment became `minutes` long: the
/// bookable event types were checked against the old length, and Cal.com would block a
/// different span than the segment.
pub fn resized_map_reason(service_id: &ServiceId, key: &SegmentKey, minutes: u32) -> String {
    format!(
        "Segment {key} of service {service_id} is now {minutes} minutes long, and this map was checked against its old length; point it at an event type of {minutes} minutes and check it again with PUT /event-maps/{service_id}/{key}/{{staff_id}}."
    )
}

/// Why a staff member's maps must be checked again after they were re-pointed to another
/// Cal.com user: the event types were checked as that user's, and a booking on them would
/// land in the previous user's calendar.
pub fn repointed_map_reason(staff_id: &StaffId, user: CalcomUserId) -> String {
    format!(
        "Staff member {staff_id} now books as Cal.com user {user}, and this map was checked for the previous user; map one of user {user}'s event types with PUT /event-maps/{{service_id}}/{{segment_key}}/{staff_id}."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SegmentSpec;

    fn service(segments: &[(&str, u32)]) -> Service {
        Service::new(
            "Colour",
            segments
                .iter()
                .map(|(key, minutes)| SegmentSpec {
                    key: SegmentKey::parse(key).expect("key"),
                    name: format!("segment {key}"),
                    duration_minutes: *minutes,
                    gap_after_minutes: 0,
                    gap_after_max_minutes: None,
                })
                .collect(),
        )
        .expect("service")
    }

    fn map(key: &str, staff: &str) -> (SegmentKey, StaffId) {
        (
            SegmentKey::parse(key).expect("key"),
            StaffId::parse(staff).expect("staff"),
        )
    }

    #[test]
    fn renamed_keys_lose_maps_and_resized_segments_need_a_new_check() {
        let old = service(&[("A", 30), ("B", 15), ("C", 30)]);
        let new = service(&[("A", 30), ("B", 20), ("X", 30)]);
        let maps = [
            map("A", "noa"),
            map("B", "noa"),
            map("C", "noa"),
            map("C", "ben"),
        ];
        let change = service_change(&old, &new, &maps);
        assert!(change.loses_maps());
        assert_eq!(change.removed.len(), 1);
        assert_eq!(
            change.removed[&SegmentKey::parse("C").expect("key")].len(),
            2
        );
        assert_eq!(change.resized.len(), 1);
        assert!(
            change
                .resized
                .contains_key(&SegmentKey::parse("B").expect("key"))
        );
        let same = service_change(&old, &old, &maps);
        assert_eq!(same, ServiceChange::default());
    }
}
