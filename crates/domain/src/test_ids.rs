//! Typed ids from string literals, for unit tests only: several modules' tests build the
//! same service, segment and staff ids, and one place for that keeps them from drifting.

use crate::{SegmentKey, ServiceId, StaffId};

pub(crate) fn sid(s: &str) -> ServiceId {
    ServiceId::parse(s).expect("service id")
}

pub(crate) fn key(s: &str) -> SegmentKey {
    SegmentKey::parse(s).expect("segment key")
}

pub(crate) fn staff(s: &str) -> StaffId {
    StaffId::parse(s).expect("staff id")
}
