//! A service as the salon sells it: ordered, staffed segments with processing gaps
//! between them. `Service::new` is the only way to get one, so every service in the
//! system satisfies the rules below.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::error::refuse_control_characters;
use crate::{FieldError, SegmentKey};

pub const MAX_SEGMENTS: usize = 10;
pub const MIN_SEGMENT_MINUTES: u32 = 5;
pub const MAX_SEGMENT_MINUTES: u32 = 600;
/// A processing gap longer than a working day is a typo, not a colour.
pub const MAX_GAP_MINUTES: u32 = 24 * 60;

/// One segment as defined on the service. `gap_after_minutes` is the processing time that
/// follows it (the stylist is free); `gap_after_max_minutes`, when set, lets availability
/// search stretch the gap up to that length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentSpec {
    pub key: SegmentKey,
    pub name: String,
    pub duration_minutes: u32,
    pub gap_after_minutes: u32,
    pub gap_after_max_minutes: Option<u32>,
}

impl SegmentSpec {
    /// The longest gap availability may use after this segment.
    pub fn max_gap_minutes(&self) -> u32 {
        self.gap_after_max_minutes.unwrap_or(self.gap_after_minutes)
    }
}

/// A validated service definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Service {
    name: String,
    segments: Vec<SegmentSpec>,
}

impl Service {
    pub fn new(name: &str, segments: Vec<SegmentSpec>) -> Result<Self, FieldError> {
        let name = name.trim();
        refuse_control_characters("name", name, false)?;
        if name.is_empty() || name.chars().count() > 200 {
            return Err(FieldError::new(
                "name",
                "invalid_name",
                "the service name must be 1 to 200 characters",
            ));
        }
        if segments.is_empty() {
            return Err(FieldError::new(
                "segments",
                "no_segments",
                "a service needs at least one segment",
            ));
        }
        if segments.len() > MAX_SEGMENTS {
            return Err(FieldError::new(
                "segments",
                "too_many_segments",
                format!(
                    "a service has at most {MAX_SEGMENTS} segments, got {}",
                    segments.len()
                ),
            ));
        }
        let mut seen = HashSet::new();
        let last = segments.len() - 1;
        for (i, segment) in segments.iter().enumerate() {
            let at = |field: &str| format!("segments[{i}].{field}");
            if !seen.insert(segment.key.clone()) {
                return Err(FieldError::new(
                    at("key"),
                    "duplicate_segment_key",
                    format!("segment key {:?} is used twice", segment.key.as_str()),
                ));
            }
            let seg_name = segment.name.trim();
            refuse_control_characters(&at("name"), seg_name, false)?;
            if seg_name.is_empty() || seg_name.chars().count() > 200 {
                return Err(FieldError::new(
                    at("name"),
                    "invalid_name",
                    "a segment name must be 1 to 200 characters",
                ));
            }
            if !(MIN_SEGMENT_MINUTES..=MAX_SEGMENT_MINUTES).contains(&segment.duration_minutes) {
                return Err(FieldError::new(
                    at("duration_minutes"),
                    "duration_out_of_range",
                    format!(
                        "a segment lasts {MIN_SEGMENT_MINUTES} to {MAX_SEGMENT_MINUTES} minutes, got {}",
                        segment.duration_minutes
                    ),
                ));
            }
            if segment.gap_after_minutes > MAX_GAP_MINUTES {
                return Err(FieldError::new(
                    at("gap_after_minutes"),
                    "gap_out_of_range",
                    format!(
                        "a gap lasts at most {MAX_GAP_MINUTES} minutes, got {}",
                        segment.gap_after_minutes
                    ),
                ));
            }
            if let Some(max) = segment.gap_after_max_minutes {
                if max < segment.gap_after_minutes {
                    return Err(FieldError::new(
                        at("gap_after_max_minutes"),
                        "gap_range_inverted",
                        format!(
                            "gap_after_max_minutes ({max}) is below gap_after_minutes ({})",
                            segment.gap_after_minutes
                        ),
                    ));
                }
                if max > MAX_GAP_MINUTES {
                    return Err(FieldError::new(
                        at("gap_after_max_minutes"),
                        "gap_out_of_range",
                        format!("a gap lasts at most {MAX_GAP_MINUTES} minutes, got {max}"),
                    ));
                }
            }
            if i == last && (segment.gap_after_minutes > 0 || segment.max_gap_minutes() > 0) {
                return Err(FieldError::new(
                    at("gap_after_minutes"),
                    "gap_after_last_segment",
                    "the last segment cannot have a gap after it: the appointment ends with it",
                ));
            }
        }
        Ok(Self {
            name: name.to_string(),
            segments,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn segments(&self) -> &[SegmentSpec] {
        &self.segments
    }

    pub fn segment(&self, key: &SegmentKey) -> Option<&SegmentSpec> {
        self.segments.iter().find(|s| &s.key == key)
    }

    /// Length of the appointment with every gap at its minimum.
    pub fn total_minutes(&self) -> u32 {
        self.segments
            .iter()
            .map(|s| s.duration_minutes + s.gap_after_minutes)
            .sum()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn seg(key: &str, duration: u32, gap: u32) -> SegmentSpec {
        SegmentSpec {
            key: SegmentKey::parse(key).expect("test key"),
            name: format!("segment {key}"),
            duration_minutes: duration,
            gap_after_minutes: gap,
            gap_after_max_minutes: None,
        }
    }

    pub fn colouring() -> Service {
        Service::new(
            "Colour, cut and blow-dry",
            vec![
                seg("A", 30, 35),
                seg("B", 15, 0),
                seg("C", 30, 0),
                seg("D", 20, 0),
            ],
        )
        .expect("valid service")
    }

    #[test]
    fn colouring_service_is_valid_and_lasts_130_minutes() {
        assert_eq!(colouring().total_minutes(), 130);
    }

    #[test]
    fn empty_service_is_rejected() {
        let err = Service::new("x", vec![]).expect_err("no segments");
        assert_eq!(err.code, "no_segments");
        assert_eq!(err.field, "segments");
    }

    #[test]
    fn eleven_segments_are_rejected() {
        let segs = (0..11)
            .map(|i| seg(&format!("S{i}"), 10, if i == 10 { 0 } else { 5 }))
            .collect();
        assert_eq!(
            Service::new("x", segs).expect_err("too many").code,
            "too_many_segments"
        );
    }

    #[test]
    fn duplicate_keys_name_the_second_one() {
        let err = Service::new("x", vec![seg("A", 10, 5), seg("A", 10, 0)]).expect_err("dup");
        assert_eq!(err.field, "segments[1].key");
        assert_eq!(err.code, "duplicate_segment_key");
    }

    #[test]
    fn durations_outside_5_to_600_are_rejected() {
        let err = Service::new("x", vec![seg("A", 4, 0)]).expect_err("short");
        assert_eq!(err.field, "segments[0].duration_minutes");
        assert!(Service::new("x", vec![seg("A", 601, 0)]).is_err());
        assert!(Service::new("x", vec![seg("A", 5, 0)]).is_ok());
        assert!(Service::new("x", vec![seg("A", 600, 0)]).is_ok());
    }

    #[test]
    fn gap_range_must_not_be_inverted() {
        let mut a = seg("A", 10, 30);
        a.gap_after_max_minutes = Some(20);
        let err = Service::new("x", vec![a, seg("B", 10, 0)]).expect_err("inverted");
        assert_eq!(err.field, "segments[0].gap_after_max_minutes");
        assert_eq!(err.code, "gap_range_inverted");
    }

    #[test]
    fn last_segment_cannot_have_a_gap() {
        let err = Service::new("x", vec![seg("A", 10, 0), seg("B", 10, 5)]).expect_err("gap");
        assert_eq!(err.field, "segments[1].gap_after_minutes");
        assert_eq!(err.code, "gap_after_last_segment");
    }
}
