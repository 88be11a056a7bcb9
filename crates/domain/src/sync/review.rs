//! Review subjects and the review reasons a person reads when a human must act: every text
//! names who, what and how to fix it, so the wording lives in one place.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use super::{CalcomFailure, Operation, OwnBookingInTheWay};
use crate::{CalcomUserId, EventTypeId, SegmentKey, StaffId};

/// The segment a review reason is about, with the names a person needs to find it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewSubject {
    pub appointment_id: Uuid,
    pub service_id: String,
    pub segment_key: SegmentKey,
    pub staff_id: StaffId,
    pub calcom_username: String,
    pub calcom_user_id: CalcomUserId,
    pub event_type_id: Option<EventTypeId>,
    pub starts_at: DateTime<Utc>,
    /// The salon's zone, to show the time as the salon reads it.
    pub time_zone: Option<Tz>,
}

impl ReviewSubject {
    pub(crate) fn when(&self) -> String {
        let utc = self.starts_at.format("%Y-%m-%d %H:%M UTC").to_string();
        match self.time_zone {
            Some(zone) => format!(
                "{} {} ({utc})",
                self.starts_at.with_timezone(&zone).format("%Y-%m-%d %H:%M"),
                zone.name()
            ),
            None => utc,
        }
    }

    fn segment(&self) -> String {
        format!(
            "segment {} of appointment {} at {}",
            self.segment_key,
            self.appointment_id,
            self.when()
        )
    }

    fn user(&self) -> String {
        format!(
            "Cal.com user {} (id {}, staff {})",
            self.calcom_username, self.calcom_user_id, self.staff_id
        )
    }

    fn event_type(&self) -> String {
        match self.event_type_id {
            Some(id) => format!("event type {id}"),
            None => "its event type".to_string(),
        }
    }

    pub(crate) fn resync(&self) -> String {
        format!("POST /resync/{}", self.appointment_id)
    }

    fn map_path(&self) -> String {
        format!(
            "PUT /event-maps/{}/{}/{}",
            self.service_id, self.segment_key, self.staff_id
        )
    }
}

fn said(failure: &CalcomFailure) -> String {
    match failure.http_status {
        Some(status) => format!("Cal.com answered HTTP {status}: \"{}\"", failure.message),
        None => format!("{} ({})", failure.message, failure.kind),
    }
}

/// The managed parent cannot be booked and the host has no child of it.
pub fn managed_parent_without_child_reason(subject: &ReviewSubject, parent: EventTypeId) -> String {
    format!(
        "Event type {parent} is a managed parent that Cal.com will not book, and {} has no child event type of it, so {} is not booked; fix: assign the host to event type {parent} through Cal.com's team event-type endpoints so Cal.com creates the child (or map an individual event type with {}), then {}.",
        subject.user(),
        subject.segment(),
        subject.map_path(),
        subject.resync()
    )
}

/// Cal.com refused a segment whose start has already passed: no resync can book the past.
pub(super) fn start_passed_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "The start of {} has passed, so Cal.com will not book it for {} ({}); fix: cancel the appointment (POST /appointments/{}/cancel) and book a new time.",
        subject.segment(),
        subject.user(),
        said(failure),
        subject.appointment_id
    )
}

/// The event type's minimum notice or booking window refuses the start.
pub(super) fn booking_window_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refuses {} for {} because the start is too soon or too far ahead for {}'s minimum booking notice or booking window ({}); fix: widen those settings of the event type in Cal.com, then {}; or cancel the appointment and book a time inside them.",
        subject.segment(),
        subject.user(),
        subject.event_type(),
        said(failure),
        subject.resync()
    )
}

/// The time is taken by a booking phasebook itself made.
pub(super) fn own_booking_in_the_way_reason(
    subject: &ReviewSubject,
    other: &OwnBookingInTheWay,
    failure: &CalcomFailure,
) -> String {
    if other.appointment_id == subject.appointment_id {
        return format!(
            "{} collides with this appointment's own booking {} of segment {} in Cal.com, which could not be moved out of the way ({}); fix: {} converges every segment on its planned time.",
            subject.segment(),
            other.calcom_booking_uid,
            other.segment_key,
            said(failure),
            subject.resync()
        );
    }
    format!(
        "{} collides with phasebook's own booking {} for segment {} of appointment {}, which stands at that time in Cal.com for {} (it was moved there in Cal.com) ({}); fix: POST /resync/{} puts that booking back at its planned time, then {}; or move one of the two appointments.",
        subject.segment(),
        other.calcom_booking_uid,
        other.segment_key,
        other.appointment_id,
        subject.user(),
        said(failure),
        other.appointment_id,
        subject.resync()
    )
}

/// The host is busy or the time cannot be booked.
pub fn slot_unavailable_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "{} is busy or unavailable for {} on {} ({}); fix: free that time in the host's Cal.com calendar (another booking, a blocked calendar or working hours), then {}; or cancel the appointment and book a time the host has free.",
        subject.user(),
        subject.segment(),
        subject.event_type(),
        said(failure),
        subject.resync()
    )
}

pub(super) fn event_type_not_found_reason(
    subject: &ReviewSubject,
    failure: &CalcomFailure,
) -> String {
    format!(
        "{} no longer exists or is not visible with this salon's Cal.com API key, so {} for {} is not booked ({}); fix: map an existing event type with {}, then {}.",
        capitalise(&subject.event_type()),
        subject.segment(),
        subject.user(),
        said(failure),
        subject.map_path(),
        subject.resync()
    )
}

pub(super) fn unauthorized_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refused this salon's API key when booking {} on {} for {} ({}); fix: give the tenant a valid Cal.com API key with access to that event type, then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.resync()
    )
}

pub(super) fn rejected_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com rejected the booking of {} on {} for {} ({}); fix what the message names: the event type's settings in Cal.com, or the customer's details with PATCH /appointments/{}; then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.appointment_id,
        subject.resync()
    )
}

pub(super) fn cancel_refused_reason(subject: &ReviewSubject, failure: &CalcomFailure) -> String {
    format!(
        "Cal.com refused to cancel the booking of {} for {} ({}); fix: cancel it by hand in Cal.com or repair the tenant's API key, then {}.",
        subject.segment(),
        subject.user(),
        said(failure),
        subject.resync()
    )
}

pub(super) fn exhausted_reason(
    subject: &ReviewSubject,
    operation: Operation,
    attempts: u32,
    failure: &CalcomFailure,
) -> String {
    let what = match operation {
        Operation::Create => "booking",
        Operation::Cancel => "cancelling the booking of",
    };
    format!(
        "Gave up {what} {} on {} for {} after {attempts} attempts; last error: {}; fix: check Cal.com's status and the event type, then {}.",
        subject.segment(),
        subject.event_type(),
        subject.user(),
        said(failure),
        subject.resync()
    )
}

/// The segment's (service, segment, staff) has no event map.
pub fn missing_event_map_reason(subject: &ReviewSubject) -> String {
    format!(
        "There is no event map for {} with staff {}, so it cannot be booked in Cal.com; fix: map an event type of {} with {}, then {}.",
        subject.segment(),
        subject.staff_id,
        subject.user(),
        subject.map_path(),
        subject.resync()
    )
}

/// The segment's Cal.com booking was cancelled on Cal.com's side.
pub fn cancelled_in_calcom_reason(
    subject: &ReviewSubject,
    booking_uid: &str,
    cancellation_reason: Option<&str>,
) -> String {
    let why = cancellation_reason
        .filter(|r| !r.trim().is_empty())
        .map(|r| format!(" (reason given: \"{r}\")"))
        .unwrap_or_default();
    format!(
        "The Cal.com booking {booking_uid} of {} for {} was cancelled in Cal.com{why}, so that time is no longer blocked; fix: {} to book it again, or cancel the appointment.",
        subject.segment(),
        subject.user(),
        subject.resync()
    )
}

/// The segment's Cal.com booking was moved on Cal.com's side.
pub fn rescheduled_in_calcom_reason(
    subject: &ReviewSubject,
    new_uid: &str,
    new_start: DateTime<Utc>,
) -> String {
    format!(
        "The Cal.com booking of {} for {} was moved in Cal.com to {} (new booking {new_uid}), so the calendar no longer matches the appointment; fix: {} puts the planned time back (it books the planned time and cancels booking {new_uid}), or cancel the appointment.",
        subject.segment(),
        subject.user(),
        new_start.format("%Y-%m-%d %H:%M UTC"),
        subject.resync()
    )
}

fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
