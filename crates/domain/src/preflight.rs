//! Pre-flight: every reason a booking or a hold would be refused, decided before phasebook
//! says yes. Each refusal has its own stable `type` slug and names the request field, so a
//! voice agent can tell the caller what to change. A refused request stores nothing.

use chrono::{DateTime, Duration, Utc};

use crate::{PlannedSegment, SegmentKey, ServiceId, StaffId};

/// How far ahead a tenant takes bookings unless configured otherwise.
pub const DEFAULT_HORIZON_DAYS: u32 = 365;
/// The longest horizon a tenant may configure (ten years).
pub const MAX_HORIZON_DAYS: u32 = 3650;

/// Why a request cannot be booked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A staff member assigned to the appointment does not perform the service.
    NotPerformer {
        staff_id: StaffId,
        service_id: ServiceId,
        field: String,
    },
    /// A segment's staff member has no verified event map, so the segment cannot sync.
    SegmentUnmapped {
        service_id: ServiceId,
        segment: SegmentKey,
        staff_id: StaffId,
    },
    /// A segment's staff member has an event map that must be checked again (its segment's
    /// length or the staff member's Cal.com user changed after it was checked).
    SegmentMapUnverified {
        service_id: ServiceId,
        segment: SegmentKey,
        staff_id: StaffId,
        reason: String,
    },
    /// Neither an e-mail address nor a phone number: Cal.com refuses such an attendee.
    NoContact,
    StartInPast {
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    },
    BeyondHorizon {
        start: DateTime<Utc>,
        latest: DateTime<Utc>,
        horizon_days: u32,
    },
}

impl Refusal {
    /// The stable problem `type` slug.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::NotPerformer { .. } => "staff-does-not-perform-service",
            Self::SegmentUnmapped { .. } => "segment-unmapped",
            Self::SegmentMapUnverified { .. } => "segment-map-unverified",
            Self::NoContact => "customer-unreachable",
            Self::StartInPast { .. } => "start-in-past",
            Self::BeyondHorizon { .. } => "start-beyond-horizon",
        }
    }

    pub fn title(&self) -> &'static str {
        match self {
            Self::NotPerformer { .. } => "Staff member does not perform this service",
            Self::SegmentUnmapped { .. } => "Segment has no event map",
            Self::SegmentMapUnverified { .. } => "Segment's event map must be checked again",
            Self::NoContact => "Customer cannot be reached",
            Self::StartInPast { .. } => "Start is in the past",
            Self::BeyondHorizon { .. } => "Start is beyond the booking horizon",
        }
    }

    /// The request field at fault.
    pub fn field(&self) -> String {
        match self {
            Self::NotPerformer { field, .. } => field.clone(),
            Self::SegmentUnmapped { .. } | Self::SegmentMapUnverified { .. } => {
                "staff_id".to_string()
            }
            Self::NoContact => "customer".to_string(),
            Self::StartInPast { .. } | Self::BeyondHorizon { .. } => "start".to_string(),
        }
    }

    /// A sentence that says what is wrong and how to fix it.
    pub fn detail(&self) -> String {
        match self {
            Self::NotPerformer {
                staff_id,
                service_id,
                ..
            } => format!(
                "{staff_id} does not perform service {service_id}; pick a staff member who does (GET /availability lists them), or add {service_id} to their services with PUT /staff/{staff_id}."
            ),
            Self::SegmentUnmapped {
                service_id,
                segment,
                staff_id,
            } => format!(
                "Segment {segment} of service {service_id} has no verified event map for {staff_id}, so it could not be booked in Cal.com; fix it with PUT /event-maps/{service_id}/{segment}/{staff_id}."
            ),
            Self::SegmentMapUnverified {
                service_id,
                segment,
                staff_id,
                reason,
            } => format!(
                "Segment {segment} of service {service_id} cannot be booked for {staff_id} until its event map is checked again: {reason}"
            ),
            Self::NoContact => "The customer needs an e-mail address or a phone number in international form (+4915123456789): Cal.com refuses an attendee with neither.".to_string(),
            Self::StartInPast { start, now } => format!(
                "The start {} is before now ({}); pick a later time.",
                start.to_rfc3339(),
                now.to_rfc3339()
            ),
            Self::BeyondHorizon {
                start,
                latest,
                horizon_days,
            } => format!(
                "The start {} is more than {horizon_days} days ahead (latest {}); pick an earlier time.",
                start.to_rfc3339(),
                latest.to_rfc3339()
            ),
        }
    }
}

/// What the staff and timing checks need, gathered by the caller.
#[derive(Debug, Clone)]
pub struct Booking<'a> {
    pub service_id: &'a ServiceId,
    /// The staff member the request names; other segment staff come from `segments` overrides.
    pub staff_id: &'a StaffId,
    pub plan: &'a [PlannedSegment],
    /// Staff who perform the service.
    pub performers: &'a [StaffId],
    /// (segment, staff) pairs with a verified event map for this service.
    pub mapped: &'a [(SegmentKey, StaffId)],
    /// (segment, staff, why) for maps that exist but must be checked again; they are not in
    /// `mapped`.
    pub unverified: &'a [(SegmentKey, StaffId, String)],
    pub horizon_days: u32,
}

/// The staff and timing checks, in the order a caller can act on them: who, what, when.
pub fn check_booking(booking: &Booking<'_>, now: DateTime<Utc>) -> Result<(), Refusal> {
    for (i, segment) in booking.plan.iter().enumerate() {
        if !booking.performers.contains(&segment.staff_id) {
            return Err(Refusal::NotPerformer {
                staff_id: segment.staff_id.clone(),
                service_id: booking.service_id.clone(),
                field: if &segment.staff_id == booking.staff_id {
                    "staff_id".to_string()
                } else {
                    format!("segments[{i}].staff_id")
                },
            });
        }
    }
    for segment in booking.plan {
        if !booking
            .mapped
            .iter()
            .any(|(key, who)| key == &segment.key && who == &segment.staff_id)
        {
            if let Some((_, _, reason)) = booking
                .unverified
                .iter()
                .find(|(key, who, _)| key == &segment.key && who == &segment.staff_id)
            {
                return Err(Refusal::SegmentMapUnverified {
                    service_id: booking.service_id.clone(),
                    segment: segment.key.clone(),
                    staff_id: segment.staff_id.clone(),
                    reason: reason.clone(),
                });
            }
            return Err(Refusal::SegmentUnmapped {
                service_id: booking.service_id.clone(),
                segment: segment.key.clone(),
                staff_id: segment.staff_id.clone(),
            });
        }
    }
    if let Some(first) = booking.plan.first() {
        check_start(first.starts_at, now, booking.horizon_days)?;
    }
    Ok(())
}

/// The start is not in the past and not beyond the horizon.
pub fn check_start(
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    horizon_days: u32,
) -> Result<(), Refusal> {
    if start < now {
        return Err(Refusal::StartInPast { start, now });
    }
    let latest = latest_start(now, horizon_days);
    if start > latest {
        return Err(Refusal::BeyondHorizon {
            start,
            latest,
            horizon_days,
        });
    }
    Ok(())
}

/// The latest start a tenant with this horizon accepts.
pub fn latest_start(now: DateTime<Utc>, horizon_days: u32) -> DateTime<Utc> {
    now + Duration::days(i64::from(horizon_days))
}

/// An appointment needs a way to reach the customer: Cal.com refuses an attendee with
/// neither e-mail nor phone (FACTS.md 3).
pub fn check_contact(has_email: bool, has_phone: bool) -> Result<(), Refusal> {
    if has_email || has_phone {
        Ok(())
    } else {
        Err(Refusal::NoContact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{assign_staff, plan_appointment};
    use crate::service::tests::colouring;
    use chrono::TimeZone;

    fn id(s: &str) -> StaffId {
        StaffId::parse(s).expect("id")
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, h, 0, 0)
            .single()
            .expect("instant")
    }

    fn all_mapped(who: &StaffId) -> Vec<(SegmentKey, StaffId)> {
        colouring()
            .segments()
            .iter()
            .map(|s| (s.key.clone(), who.clone()))
            .collect()
    }

    fn check(
        staff: &StaffId,
        performers: &[StaffId],
        mapped: &[(SegmentKey, StaffId)],
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let service = colouring();
        let service_id = ServiceId::parse("colour").expect("id");
        let plan = plan_appointment(
            &service,
            start,
            &assign_staff(&service, staff, &[]).expect("staff"),
        );
        check_booking(
            &Booking {
                service_id: &service_id,
                staff_id: staff,
                plan: &plan,
                performers,
                mapped,
                unverified: &[],
                horizon_days: DEFAULT_HORIZON_DAYS,
            },
            now,
        )
    }

    #[test]
    fn a_map_that_must_be_checked_again_refuses_with_its_reason_not_as_unmapped() {
        let anna = id("anna");
        let service = colouring();
        let service_id = ServiceId::parse("colour").expect("id");
        let plan = plan_appointment(
            &service,
            at(10),
            &assign_staff(&service, &anna, &[]).expect("staff"),
        );
        let first = service.segments()[0].key.clone();
        let mapped: Vec<(SegmentKey, StaffId)> = all_mapped(&anna)
            .into_iter()
            .filter(|(key, _)| key != &first)
            .collect();
        let unverified = vec![(first.clone(), anna.clone(), "it changed".to_string())];
        let refusal = check_booking(
            &Booking {
                service_id: &service_id,
                staff_id: &anna,
                plan: &plan,
                performers: std::slice::from_ref(&anna),
                mapped: &mapped,
                unverified: &unverified,
                horizon_days: DEFAULT_HORIZON_DAYS,
            },
            at(8),
        )
        .expect_err("refused");
        assert_eq!(refusal.slug(), "segment-map-unverified");
        assert!(
            refusal.detail().contains("it changed"),
            "{}",
            refusal.detail()
        );
        assert!(refusal.detail().contains(first.as_str()));
    }

    #[test]
    fn a_performer_with_every_map_in_the_future_passes() {
        let anna = id("anna");
        assert_eq!(
            check(
                &anna,
                std::slice::from_ref(&anna),
                &all_mapped(&anna),
                at(10),
                at(8)
            ),
            Ok(())
        );
    }

    #[test]
    fn someone_who_does_not_perform_the_service_is_refused_on_staff_id() {
        let anna = id("anna");
        let err = check(&anna, &[id("ben")], &all_mapped(&anna), at(10), at(8)).expect_err("x");
        assert_eq!(err.slug(), "staff-does-not-perform-service");
        assert_eq!(err.field(), "staff_id");
    }

    #[test]
    fn a_missing_map_names_the_segment_and_the_put_that_fixes_it() {
        let anna = id("anna");
        let mut mapped = all_mapped(&anna);
        mapped.remove(1);
        let err = check(&anna, std::slice::from_ref(&anna), &mapped, at(10), at(8)).expect_err("x");
        assert_eq!(err.slug(), "segment-unmapped");
        assert!(err.detail().contains("Segment B"), "{}", err.detail());
        assert!(
            err.detail().contains("PUT /event-maps/colour/B/anna"),
            "{}",
            err.detail()
        );
    }

    #[test]
    fn past_and_far_future_starts_are_refused_on_start() {
        let anna = id("anna");
        let mapped = all_mapped(&anna);
        let past =
            check(&anna, std::slice::from_ref(&anna), &mapped, at(7), at(8)).expect_err("past");
        assert_eq!(
            (past.slug(), past.field().as_str()),
            ("start-in-past", "start")
        );
        let far = check(
            &anna,
            std::slice::from_ref(&anna),
            &mapped,
            at(10) + Duration::days(366),
            at(8),
        )
        .expect_err("far");
        assert_eq!(far.slug(), "start-beyond-horizon");
    }

    #[test]
    fn a_customer_needs_email_or_phone() {
        assert_eq!(check_contact(false, false), Err(Refusal::NoContact));
        assert!(check_contact(true, false).is_ok());
        assert!(check_contact(false, true).is_ok());
        assert_eq!(Refusal::NoContact.field(), "customer");
    }
}
