//! The event-map audit: which (service, segment, staff) cells must be judged, and how
//! serious each one's state is, with the fix in one sentence. Apart from resolution because
//! resolution answers "can this host be booked on this event type" for one map, while the
//! audit judges the whole grid of maps (missing ones included) on top of those answers.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::resolution::{Refusal, Resolution, ResolutionKind};
use crate::{EventTypeId, SegmentKey, ServiceId, StaffId};

/// How bad an audit finding is. Ordered so that the worst sorts last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Ok,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

/// One audit finding: a stable code, what was found, and the fix in one sentence (empty
/// when nothing needs doing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub fix: String,
}

/// A service's segments, as the audit needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSegments {
    pub service_id: ServiceId,
    pub segments: Vec<SegmentKey>,
}

/// Why a (service, segment, staff) cell is in the audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Coverage {
    /// A map exists.
    Mapped,
    /// The staff member has maps for other segments of this service but not this one:
    /// an appointment would half-sync.
    MissingWhileOthersMapped { mapped: Vec<SegmentKey> },
    /// Nobody has any map for this service: every staff member is listed, since the
    /// service cannot be synced for anyone.
    ServiceUnmapped,
    /// The staff member performs the service (their `services` list says so) but has no
    /// map for any of its segments: every booking for them would fail to sync.
    PerformerUnmapped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCell {
    pub service_id: ServiceId,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub coverage: Coverage,
}

/// Every cell the audit must judge. "Staff that can perform a service" is every staff
/// member with at least one map for it; for a service with no maps at all every staff
/// member is listed (nothing says who performs it, and nobody can be booked for it).
/// Output is ordered by service, segment order, staff.
pub fn audit_cells(
    services: &[ServiceSegments],
    staff: &[StaffId],
    maps: &[(ServiceId, SegmentKey, StaffId)],
) -> Vec<AuditCell> {
    let mut mapped: BTreeMap<(&ServiceId, &StaffId), BTreeSet<&SegmentKey>> = BTreeMap::new();
    for (service, segment, member) in maps {
        mapped.entry((service, member)).or_default().insert(segment);
    }
    let mut sorted_staff: Vec<&StaffId> = staff.iter().collect();
    sorted_staff.sort();
    sorted_staff.dedup();
    let mut cells = Vec::new();
    for service in services {
        let performers: Vec<&StaffId> = sorted_staff
            .iter()
            .copied()
            .filter(|m| mapped.contains_key(&(&service.service_id, *m)))
            .collect();
        let unmapped = performers.is_empty();
        let listed = if unmapped {
            sorted_staff.clone()
        } else {
            performers
        };
        for segment in &service.segments {
            for member in &listed {
                let own = mapped.get(&(&service.service_id, *member));
                let coverage = match own {
                    None => Coverage::ServiceUnmapped,
                    Some(keys) if keys.contains(segment) => Coverage::Mapped,
                    Some(keys) => Coverage::MissingWhileOthersMapped {
                        mapped: service
                            .segments
                            .iter()
                            .filter(|k| keys.contains(k))
                            .cloned()
                            .collect(),
                    },
                };
                cells.push(AuditCell {
                    service_id: service.service_id.clone(),
                    segment_key: segment.clone(),
                    staff_id: (*member).clone(),
                    coverage,
                });
            }
        }
    }
    cells
}

/// [`audit_cells`] plus every (service, segment, staff) cell of a declared performer
/// (`performers` holds (service, staff) pairs) that the maps alone do not list: a performer
/// with no map is an error, not an absence.
pub fn audit_cells_with_performers(
    services: &[ServiceSegments],
    staff: &[StaffId],
    maps: &[(ServiceId, SegmentKey, StaffId)],
    performers: &[(ServiceId, StaffId)],
) -> Vec<AuditCell> {
    let mut cells = audit_cells(services, staff, maps);
    for service in services {
        let mut declared: Vec<&StaffId> = performers
            .iter()
            .filter(|(s, m)| s == &service.service_id && staff.contains(m))
            .map(|(_, m)| m)
            .collect();
        declared.sort();
        declared.dedup();
        for member in declared {
            let listed = cells
                .iter()
                .any(|c| c.service_id == service.service_id && &c.staff_id == member);
            if listed {
                continue;
            }
            for segment in &service.segments {
                cells.push(AuditCell {
                    service_id: service.service_id.clone(),
                    segment_key: segment.clone(),
                    staff_id: member.clone(),
                    coverage: Coverage::PerformerUnmapped,
                });
            }
        }
    }
    let order = |c: &AuditCell| {
        let service = services.iter().position(|s| s.service_id == c.service_id);
        let segment = services
            .iter()
            .find(|s| s.service_id == c.service_id)
            .and_then(|s| s.segments.iter().position(|k| k == &c.segment_key));
        (service, segment, c.staff_id.clone())
    };
    cells.sort_by_key(order);
    cells
}

/// What a stored map says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMap {
    pub event_type_id: EventTypeId,
    pub bookable_event_type_id: EventTypeId,
    pub kind: Option<ResolutionKind>,
}

/// What re-checking the map's configured event type against Cal.com gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recheck {
    Resolved(Resolution),
    Refused(Refusal),
    /// Cal.com could not be asked (unreachable, rate limited, key refused): the reason.
    Unverified(String),
}

/// The verdict for a cell with no map.
pub fn unmapped_verdict(cell: &AuditCell) -> Verdict {
    let provision = format!(
        "phasebook provision --service {} --staff {}",
        cell.service_id, cell.staff_id
    );
    match &cell.coverage {
        Coverage::MissingWhileOthersMapped { mapped } => Verdict {
            severity: Severity::Error,
            code: "segment-unmapped",
            message: format!(
                "Segment {} of service {} has no event map for {} while {} {}, so an \
                 appointment would only half sync.",
                cell.segment_key,
                cell.service_id,
                cell.staff_id,
                if mapped.len() == 1 {
                    "segment"
                } else {
                    "segments"
                },
                if mapped.len() == 1 {
                    format!("{} does", join_keys(mapped))
                } else {
                    format!("{} do", join_keys(mapped))
                }
            ),
            fix: format!(
                "Map it with PUT /event-maps/{}/{}/{} or run `{provision}`.",
                cell.service_id, cell.segment_key, cell.staff_id
            ),
        },
        Coverage::ServiceUnmapped => Verdict {
            severity: Severity::Error,
            code: "service-unmapped",
            message: format!(
                "Service {} has no event maps at all, so no appointment for it can sync.",
                cell.service_id
            ),
            fix: format!(
                "Run `{provision}` for each staff member who performs it, or map its segments \
                 with PUT /event-maps."
            ),
        },
        Coverage::PerformerUnmapped => Verdict {
            severity: Severity::Error,
            code: "performer-unmapped",
            message: format!(
                "{} performs service {} but segment {} has no event map for them, so their \
                 appointments cannot sync.",
                cell.staff_id, cell.service_id, cell.segment_key
            ),
            fix: format!(
                "Map it with PUT /event-maps/{}/{}/{}, run `{provision}`, or remove {} from \
                 the staff member's services.",
                cell.service_id, cell.segment_key, cell.staff_id, cell.service_id
            ),
        },
        // A mapped cell reaching here is a caller bug; say so rather than panic.
        Coverage::Mapped => Verdict {
            severity: Severity::Error,
            code: "map-missing",
            message: format!(
                "The event map for segment {} of service {} and {} could not be read.",
                cell.segment_key, cell.service_id, cell.staff_id
            ),
            fix: "Run the audit again; if it persists, re-PUT the map.".to_string(),
        },
    }
}

/// The verdict for a stored map given what Cal.com says now.
/// A map marked unverified (its segment's length or its staff member's Cal.com user changed
/// after it was checked) refuses bookings until it is stored again, whatever Cal.com says
/// now: the audit says so, unless the re-check already found a worse problem.
pub fn unverified_map_verdict(
    recheck: Verdict,
    unverified_reason: Option<&str>,
    map_path: &str,
) -> Verdict {
    match unverified_reason {
        Some(reason) if recheck.severity < Severity::Error => Verdict {
            severity: Severity::Error,
            code: "segment-map-unverified",
            message: format!(
                "Bookings on this map are refused until it is checked again: {reason}"
            ),
            fix: format!(
                "Store the map again with PUT {map_path} (Cal.com's answer now: {}).",
                recheck.message
            ),
        },
        _ => recheck,
    }
}

pub fn mapped_verdict(stored: &StoredMap, recheck: &Recheck) -> Verdict {
    match recheck {
        Recheck::Unverified(reason) => Verdict {
            severity: Severity::Warning,
            code: "unverified",
            message: format!(
                "Event type {} could not be checked in Cal.com: {reason}.",
                stored.event_type_id
            ),
            fix: "Check the tenant's Cal.com key and connectivity, then run the audit again."
                .to_string(),
        },
        Recheck::Refused(refusal) => Verdict {
            severity: Severity::Error,
            code: refusal.code(),
            message: refusal.detail(),
            fix: refusal.fix(),
        },
        Recheck::Resolved(now) if now.bookable_event_type_id != stored.bookable_event_type_id => {
            Verdict {
                severity: Severity::Error,
                code: "bookable-changed",
                message: format!(
                    "The map books event type {} but Cal.com now resolves {} to {}.",
                    stored.bookable_event_type_id, stored.event_type_id, now.bookable_event_type_id
                ),
                fix: "PUT the map again so the current bookable event type is stored.".to_string(),
            }
        }
        Recheck::Resolved(now)
            if now.kind == ResolutionKind::RoundRobinHost && now.other_hosts > 0 =>
        {
            Verdict {
                severity: Severity::Warning,
                code: "round-robin-shared",
                message: format!(
                    "Event type {} is round robin with {} other host(s): Cal.com may give the \
                     booking to one of them.",
                    stored.event_type_id, now.other_hosts
                ),
                fix: "Map an event type with this staff member as the only host (e.g. `phasebook \
                      provision`)."
                    .to_string(),
            }
        }
        Recheck::Resolved(_) => Verdict {
            severity: Severity::Ok,
            code: "ok",
            message: format!(
                "Event type {} is bookable as {}.",
                stored.event_type_id, stored.bookable_event_type_id
            ),
            fix: String::new(),
        },
    }
}

fn join_keys(keys: &[SegmentKey]) -> String {
    keys.iter()
        .map(SegmentKey::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_ids::{key, sid, staff};

    fn colour() -> ServiceSegments {
        ServiceSegments {
            service_id: sid("colour"),
            segments: vec![key("A"), key("B")],
        }
    }

    #[test]
    fn audit_lists_only_performers_and_flags_half_mapped_staff() {
        let maps = vec![
            (sid("colour"), key("A"), staff("anna")),
            (sid("colour"), key("B"), staff("anna")),
            (sid("colour"), key("A"), staff("ben")),
        ];
        let cells = audit_cells(
            &[colour()],
            &[staff("ben"), staff("anna"), staff("cleo")],
            &maps,
        );
        let summary: Vec<_> = cells
            .iter()
            .map(|c| (c.segment_key.as_str(), c.staff_id.as_str(), &c.coverage))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("A", "anna", &Coverage::Mapped),
                ("A", "ben", &Coverage::Mapped),
                ("B", "anna", &Coverage::Mapped),
                (
                    "B",
                    "ben",
                    &Coverage::MissingWhileOthersMapped {
                        mapped: vec![key("A")]
                    }
                ),
            ]
        );
        let v = unmapped_verdict(&cells[3]);
        assert_eq!(v.severity, Severity::Error);
        assert_eq!(v.code, "segment-unmapped");
        assert!(v.message.contains("while segment A does,"), "{}", v.message);
        assert!(v.message.contains("half sync"));
        assert!(v.fix.contains("provision --service colour --staff ben"));
    }

    #[test]
    fn a_declared_performer_without_maps_is_an_error_cell_for_every_segment() {
        let maps = vec![(sid("colour"), key("A"), staff("anna"))];
        let cells = audit_cells_with_performers(
            &[colour()],
            &[staff("anna"), staff("ben")],
            &maps,
            &[(sid("colour"), staff("ben"))],
        );
        let ben: Vec<_> = cells
            .iter()
            .filter(|c| c.staff_id == staff("ben"))
            .collect();
        assert_eq!(ben.len(), colour().segments.len());
        assert!(
            ben.iter()
                .all(|c| c.coverage == Coverage::PerformerUnmapped)
        );
        assert_eq!(unmapped_verdict(ben[0]).code, "performer-unmapped");
        assert!(
            unmapped_verdict(ben[0])
                .fix
                .contains("PUT /event-maps/colour/")
        );
    }

    #[test]
    fn audit_lists_every_staff_member_for_a_service_nobody_maps() {
        let cells = audit_cells(&[colour()], &[staff("anna"), staff("ben")], &[]);
        assert_eq!(cells.len(), 4);
        assert!(
            cells
                .iter()
                .all(|c| c.coverage == Coverage::ServiceUnmapped)
        );
        let v = unmapped_verdict(&cells[0]);
        assert_eq!(v.severity, Severity::Error);
        assert_eq!(v.code, "service-unmapped");
    }

    #[test]
    fn mapped_cell_given_to_unmapped_verdict_is_an_error_not_a_panic() {
        let cell = AuditCell {
            service_id: sid("colour"),
            segment_key: key("A"),
            staff_id: staff("anna"),
            coverage: Coverage::Mapped,
        };
        assert_eq!(unmapped_verdict(&cell).severity, Severity::Error);
    }

    fn stored(bookable: i64) -> StoredMap {
        StoredMap {
            event_type_id: EventTypeId(100),
            bookable_event_type_id: EventTypeId(bookable),
            kind: Some(ResolutionKind::ManagedParentChild),
        }
    }

    fn resolved(bookable: i64, kind: ResolutionKind, other_hosts: usize) -> Recheck {
        Recheck::Resolved(Resolution {
            event_type_id: EventTypeId(100),
            bookable_event_type_id: EventTypeId(bookable),
            kind,
            other_hosts,
        })
    }

    #[test]
    fn mapped_and_unchanged_is_ok() {
        let v = mapped_verdict(
            &stored(101),
            &resolved(101, ResolutionKind::ManagedParentChild, 0),
        );
        assert_eq!(v.severity, Severity::Ok);
        assert!(v.fix.is_empty());
    }

    #[test]
    fn a_changed_child_is_an_error() {
        let v = mapped_verdict(
            &stored(101),
            &resolved(105, ResolutionKind::ManagedParentChild, 0),
        );
        assert_eq!(v.severity, Severity::Error);
        assert_eq!(v.code, "bookable-changed");
        assert!(v.message.contains("101") && v.message.contains("105"));
    }

    #[test]
    fn a_refusal_now_is_an_error_with_its_fix() {
        let refusal = Refusal::LengthMismatch {
            event_type_id: EventTypeId(100),
            length_minutes: 45,
            segment_minutes: 30,
        };
        let v = mapped_verdict(&stored(101), &Recheck::Refused(refusal.clone()));
        assert_eq!(v.severity, Severity::Error);
        assert_eq!(v.code, refusal.code());
        assert_eq!(v.fix, refusal.fix());
    }

    #[test]
    fn shared_round_robin_is_a_warning_and_sole_host_is_ok() {
        let v = mapped_verdict(
            &stored(100),
            &resolved(100, ResolutionKind::RoundRobinHost, 2),
        );
        assert_eq!(v.severity, Severity::Warning);
        assert_eq!(v.code, "round-robin-shared");
        let v = mapped_verdict(
            &stored(100),
            &resolved(100, ResolutionKind::RoundRobinHost, 0),
        );
        assert_eq!(v.severity, Severity::Ok);
        let v = mapped_verdict(
            &stored(100),
            &resolved(100, ResolutionKind::CollectiveHost, 2),
        );
        assert_eq!(v.severity, Severity::Ok);
    }

    #[test]
    fn a_map_marked_unverified_is_an_error_until_stored_again() {
        let ok = Verdict {
            severity: Severity::Ok,
            code: "ok",
            message: "fine".into(),
            fix: String::new(),
        };
        let v = unverified_map_verdict(ok.clone(), Some("now 45 minutes"), "/event-maps/c/A/anna");
        assert_eq!(v.severity, Severity::Error);
        assert_eq!(v.code, "segment-map-unverified");
        assert!(v.message.contains("now 45 minutes") && v.fix.contains("/event-maps/c/A/anna"));
        assert_eq!(unverified_map_verdict(ok.clone(), None, "/x"), ok);
        let refused = Verdict {
            severity: Severity::Error,
            code: "event-type-not-found",
            message: "gone".into(),
            fix: "map another".into(),
        };
        assert_eq!(
            unverified_map_verdict(refused.clone(), Some("changed"), "/x"),
            refused,
            "the worse finding stays"
        );
    }

    #[test]
    fn unverifiable_is_a_warning() {
        let v = mapped_verdict(&stored(101), &Recheck::Unverified("timed out".into()));
        assert_eq!(v.severity, Severity::Warning);
        assert!(v.message.contains("timed out"));
    }

    #[test]
    fn severity_orders_worst_last() {
        assert!(Severity::Error > Severity::Warning && Severity::Warning > Severity::Ok);
        assert_eq!(Severity::Warning.as_str(), "warning");
    }
}
