//! Fixtures shared by the unit tests of several sync topic files: one review subject and one
//! fixed "now", so every topic's tests speak of the same segment and instant.

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::ReviewSubject;
use crate::{CalcomUserId, EventTypeId, SegmentKey, StaffId};

pub(super) fn subject() -> ReviewSubject {
    ReviewSubject {
        appointment_id: Uuid::from_u128(7),
        service_id: "colour".into(),
        segment_key: SegmentKey::parse("B").expect("key"),
        staff_id: StaffId::parse("anna").expect("staff"),
        calcom_username: "anna-salon".into(),
        calcom_user_id: CalcomUserId(42),
        event_type_id: Some(EventTypeId(1001)),
        starts_at: Utc
            .with_ymd_and_hms(2026, 5, 4, 7, 30, 0)
            .single()
            .expect("time"),
        time_zone: Some(chrono_tz::Europe::Berlin),
    }
}

pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 12, 0, 0)
        .single()
        .expect("time")
}
