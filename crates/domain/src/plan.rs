//! Turning a service, a start and the staff into an appointment plan: each segment with its
//! UTC start and end. Time zones and DST are decided here and nowhere else.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::{FieldError, SegmentKey, Service, StaffId};

/// How a caller said when the appointment starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTime {
    /// RFC 3339 with an offset: an exact instant.
    Instant(DateTime<FixedOffset>),
    /// A wall-clock time to be read in the appointment's time zone.
    Local(NaiveDateTime),
}

impl StartTime {
    /// Accepts RFC 3339 with an offset (`2026-03-29T10:00:00+02:00`, `…Z`) or a local
    /// date-time without one (`2026-03-29T10:00` or `2026-03-29T10:00:00`).
    pub fn parse(value: &str) -> Result<Self, FieldError> {
        let value = value.trim();
        if let Ok(at) = DateTime::parse_from_rfc3339(value) {
            return Ok(Self::Instant(at));
        }
        for format in [
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ] {
            if let Ok(local) = NaiveDateTime::parse_from_str(value, format) {
                return Ok(Self::Local(local));
            }
        }
        Err(FieldError::new(
            "start",
            "invalid_start",
            format!(
                "start must be RFC 3339 with an offset (2026-05-04T09:00:00+02:00) or a local date-time read in time_zone (2026-05-04T09:00), got {value:?}"
            ),
        ))
    }

    /// The exact instant this start denotes in `zone`. A wall-clock time skipped by a DST
    /// change, or one that happens twice, is refused: guessing would book the wrong hour.
    pub fn resolve(&self, zone: Tz) -> Result<DateTime<Utc>, FieldError> {
        match *self {
            Self::Instant(at) => Ok(at.with_timezone(&Utc)),
            Self::Local(local) => match zone.from_local_datetime(&local) {
                LocalResult::Single(at) => Ok(at.with_timezone(&Utc)),
                LocalResult::Ambiguous(first, second) => Err(FieldError::new(
                    "start",
                    "ambiguous_local_time",
                    format!(
                        "{local} happens twice in {zone} (clocks go back); send the instant with its offset: {} or {}",
                        first.fixed_offset().to_rfc3339(),
                        second.fixed_offset().to_rfc3339()
                    ),
                )),
                LocalResult::None => {
                    let (before, after) = nearest_valid_instants(zone, local);
                    Err(FieldError::new(
                        "start",
                        "nonexistent_local_time",
                        format!(
                            "{local} does not exist in {zone} (clocks go forward); send the instant with its offset: {} or {}",
                            before.to_rfc3339(),
                            after.to_rfc3339()
                        ),
                    ))
                }
            },
        }
    }
}

/// For a wall-clock time inside a spring-forward hole, the two instants it could mean: the
/// time read with the offset in force before the change, and with the offset after it.
fn nearest_valid_instants(
    zone: Tz,
    local: NaiveDateTime,
) -> (DateTime<FixedOffset>, DateTime<FixedOffset>) {
    // No zone has a hole longer than a day, so a day either side is outside it.
    let offset_at = |at: NaiveDateTime| {
        zone.from_local_datetime(&at)
            .earliest()
            .map(|t| *t.fixed_offset().offset())
    };
    let utc = FixedOffset::east_opt(0).expect("zero offset is valid");
    let before = offset_at(local - Duration::days(1)).unwrap_or(utc);
    let after = offset_at(local + Duration::days(1)).unwrap_or(utc);
    let read_with = |offset: FixedOffset| {
        offset
            .from_local_datetime(&local)
            .single()
            .unwrap_or_else(|| utc.from_utc_datetime(&local))
    };
    (read_with(before), read_with(after))
}

/// Parses an IANA time zone name.
pub fn parse_time_zone(value: &str) -> Result<Tz, FieldError> {
    value.parse::<Tz>().map_err(|_| {
        FieldError::new(
            "time_zone",
            "invalid_time_zone",
            format!("{value:?} is not an IANA time zone such as Europe/Berlin"),
        )
    })
}

/// One staffed segment of an appointment, placed in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedSegment {
    pub key: SegmentKey,
    pub staff_id: StaffId,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// Who performs each segment: `staff` by default, except where `overrides` names another
/// staff member for a segment key. Unknown or repeated keys are errors.
pub fn assign_staff(
    service: &Service,
    staff: &StaffId,
    overrides: &[(SegmentKey, StaffId)],
) -> Result<Vec<StaffId>, FieldError> {
    let mut by_key: HashMap<&SegmentKey, &StaffId> = HashMap::new();
    let mut seen = HashSet::new();
    for (i, (key, who)) in overrides.iter().enumerate() {
        if service.segment(key).is_none() {
            return Err(FieldError::new(
                format!("segments[{i}].key"),
                "unknown_segment_key",
                format!(
                    "the service has no segment {:?}; its segments are {}",
                    key.as_str(),
                    service
                        .segments()
                        .iter()
                        .map(|s| s.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if !seen.insert(key) {
            return Err(FieldError::new(
                format!("segments[{i}].key"),
                "duplicate_segment_key",
                format!("segment {:?} is assigned twice", key.as_str()),
            ));
        }
        by_key.insert(key, who);
    }
    Ok(service
        .segments()
        .iter()
        .map(|s| {
            by_key
                .get(&s.key)
                .map_or_else(|| staff.clone(), |w| (*w).clone())
        })
        .collect())
}

/// Places every segment of `service` from `start`, each gap at its minimum. `staff` holds
/// one staff member per segment, in order (see [`assign_staff`]).
pub fn plan_appointment(
    service: &Service,
    start: DateTime<Utc>,
    staff: &[StaffId],
) -> Vec<PlannedSegment> {
    let gaps: Vec<u32> = service
        .segments()
        .iter()
        .map(|s| s.gap_after_minutes)
        .collect();
    plan_with_gaps(service, start, staff, &gaps)
}

/// Like [`plan_appointment`] with explicit gap lengths (availability search uses the slack
/// of a gap range). `gaps[i]` is the gap after segment `i`.
pub fn plan_with_gaps(
    service: &Service,
    start: DateTime<Utc>,
    staff: &[StaffId],
    gaps: &[u32],
) -> Vec<PlannedSegment> {
    let mut at = start;
    service
        .segments()
        .iter()
        .zip(staff)
        .zip(gaps.iter().copied().chain(std::iter::repeat(0)))
        .map(|((segment, who), gap)| {
            let starts_at = at;
            let ends_at = starts_at + Duration::minutes(i64::from(segment.duration_minutes));
            at = ends_at + Duration::minutes(i64::from(gap));
            PlannedSegment {
                key: segment.key.clone(),
                staff_id: who.clone(),
                starts_at,
                ends_at,
            }
        })
        .collect()
}

/// Half-open intervals `[a_start, a_end)` and `[b_start, b_end)` share a moment.
pub fn overlaps(
    a_start: DateTime<Utc>,
    a_end: DateTime<Utc>,
    b_start: DateTime<Utc>,
    b_end: DateTime<Utc>,
) -> bool {
    a_start < b_end && b_start < a_end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::tests::{colouring, seg};
    use proptest::prelude::*;

    fn anna() -> StaffId {
        StaffId::parse("anna").expect("id")
    }

    fn berlin() -> Tz {
        parse_time_zone("Europe/Berlin").expect("zone")
    }

    #[test]
    fn colouring_plan_leaves_the_processing_gap_free() {
        let service = colouring();
        let start = Utc
            .with_ymd_and_hms(2026, 5, 4, 7, 0, 0)
            .single()
            .expect("date");
        let staff = assign_staff(&service, &anna(), &[]).expect("staff");
        let plan = plan_appointment(&service, start, &staff);
        let times: Vec<_> = plan
            .iter()
            .map(|p| {
                (
                    p.key.as_str().to_string(),
                    p.starts_at.format("%H:%M").to_string(),
                    p.ends_at.format("%H:%M").to_string(),
                )
            })
            .collect();
        assert_eq!(
            times,
            vec![
                ("A".into(), "07:00".into(), "07:30".into()),
                ("B".into(), "08:05".into(), "08:20".into()),
                ("C".into(), "08:20".into(), "08:50".into()),
                ("D".into(), "08:50".into(), "09:10".into()),
            ]
        );
    }

    #[test]
    fn local_start_is_read_in_the_time_zone() {
        let start = StartTime::parse("2026-07-01T09:00").expect("parse");
        let utc = start.resolve(berlin()).expect("resolve");
        assert_eq!(utc.to_rfc3339(), "2026-07-01T07:00:00+00:00");
    }

    #[test]
    fn offset_start_ignores_the_zone() {
        let start = StartTime::parse("2026-07-01T09:00:00-04:00").expect("parse");
        assert_eq!(
            start.resolve(berlin()).expect("resolve").to_rfc3339(),
            "2026-07-01T13:00:00+00:00"
        );
    }

    #[test]
    fn spring_forward_hole_is_refused_naming_both_readings() {
        let start = StartTime::parse("2026-03-29T02:30").expect("parse");
        let err = start.resolve(berlin()).expect_err("hole");
        assert_eq!(err.code, "nonexistent_local_time");
        assert!(
            err.message.contains("2026-03-29T02:30:00+01:00"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("2026-03-29T02:30:00+02:00"),
            "{}",
            err.message
        );
    }

    #[test]
    fn fall_back_hour_is_refused_naming_both_instants() {
        let start = StartTime::parse("2026-10-25T02:30").expect("parse");
        let err = start.resolve(berlin()).expect_err("ambiguous");
        assert_eq!(err.code, "ambiguous_local_time");
        assert!(
            err.message.contains("2026-10-25T02:30:00+02:00"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains("2026-10-25T02:30:00+01:00"),
            "{}",
            err.message
        );
    }

    #[test]
    fn garbage_start_and_zone_are_field_errors() {
        assert_eq!(
            StartTime::parse("tomorrow").expect_err("bad").field,
            "start"
        );
        assert_eq!(
            parse_time_zone("Mars/Olympus").expect_err("bad").field,
            "time_zone"
        );
    }

    #[test]
    fn overrides_assign_other_staff_and_reject_unknown_keys() {
        let service = colouring();
        let ben = StaffId::parse("ben").expect("id");
        let c = SegmentKey::parse("C").expect("key");
        let staff = assign_staff(&service, &anna(), &[(c, ben.clone())]).expect("ok");
        assert_eq!(staff[2], ben);
        assert_eq!(staff[0], anna());
        let z = SegmentKey::parse("Z").expect("key");
        let err = assign_staff(&service, &anna(), &[(z, ben)]).expect_err("unknown");
        assert_eq!(err.field, "segments[0].key");
        assert_eq!(err.code, "unknown_segment_key");
    }

    fn arb_service() -> impl Strategy<Value = Service> {
        prop::collection::vec((5u32..=600, 0u32..=240), 1..=10).prop_map(|parts| {
            let last = parts.len() - 1;
            let segments = parts
                .iter()
                .enumerate()
                .map(|(i, (d, g))| seg(&format!("S{i}"), *d, if i == last { 0 } else { *g }))
                .collect();
            Service::new("generated", segments).expect("generated service is valid")
        })
    }

    proptest! {
        #[test]
        fn plans_keep_order_never_overlap_and_add_up(
            service in arb_service(),
            minutes in 0i64..(3 * 366 * 24 * 60),
        ) {
            let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("date")
                + Duration::minutes(minutes);
            let staff = assign_staff(&service, &anna(), &[]).expect("staff");
            let plan = plan_appointment(&service, start, &staff);
            prop_assert_eq!(plan.len(), service.segments().len());
            prop_assert_eq!(plan[0].starts_at, start);
            for (p, s) in plan.iter().zip(service.segments()) {
                prop_assert_eq!(&p.key, &s.key);
                prop_assert_eq!((p.ends_at - p.starts_at).num_minutes(), i64::from(s.duration_minutes));
            }
            for pair in plan.windows(2) {
                prop_assert!(pair[0].ends_at <= pair[1].starts_at);
                prop_assert!(!overlaps(pair[0].starts_at, pair[0].ends_at, pair[1].starts_at, pair[1].ends_at));
            }
            let last = plan.last().expect("non-empty");
            prop_assert_eq!((last.ends_at - start).num_minutes(), i64::from(service.total_minutes()));
        }

        #[test]
        fn berlin_local_times_round_trip_on_dst_days(
            day in prop::sample::select(vec![(2026, 3, 29), (2026, 10, 25), (2027, 3, 28), (2027, 10, 31)]),
            minute_of_day in 0u32..(24 * 60),
            service in arb_service(),
        ) {
            let (y, m, d) = day;
            let local = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("date")
                .and_hms_opt(minute_of_day / 60, minute_of_day % 60, 0).expect("time");
            let zone = berlin();
            match StartTime::Local(local).resolve(zone) {
                Ok(utc) => {
                    // A time that resolved is unique, and reads back as the same wall clock.
                    prop_assert_eq!(utc.with_timezone(&zone).naive_local(), local);
                    let staff = assign_staff(&service, &anna(), &[]).expect("staff");
                    let plan = plan_appointment(&service, utc, &staff);
                    let last = plan.last().expect("non-empty");
                    // Real elapsed time, not wall-clock time, across the DST change.
                    prop_assert_eq!((last.ends_at - utc).num_minutes(), i64::from(service.total_minutes()));
                }
                Err(err) => {
                    // Only the hour skipped in spring or repeated in autumn is refused.
                    prop_assert_eq!(minute_of_day / 60, 2);
                    prop_assert!(err.code == "nonexistent_local_time" || err.code == "ambiguous_local_time");
                }
            }
        }
    }
}
