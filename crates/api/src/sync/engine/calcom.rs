//! The engine's Cal.com calls: each asks Cal.com one thing and translates the answer into
//! what the sync rules look at. Nothing here decides; the engine acts on the answers and
//! the domain decides.

use calcom_client::{
    Attendee, Booking, BookingMetadata, BookingStatus, CalcomClient, CalcomError, CreateBooking,
    ListBookings, MAX_BOOKINGS_PAGE,
};
use chrono::{DateTime, TimeDelta, Utc};
use phasebook_domain::EventTypeId;
use phasebook_domain::sync::reschedule::METADATA_REVISION;
use phasebook_domain::sync::{
    BookingIdentity, BookingSeen, CalcomFailure, MAX_RESCHEDULE_HOPS, METADATA_APPOINTMENT,
    METADATA_SEGMENT, METADATA_TENANT, ObservedBooking, successor,
};
use serde_json::Value;

use super::classify;
use crate::store::sync::AppointmentWork;

/// How many result pages a reconcile reads at most (250 bookings each, one event type, two
/// days): more would mean something else is badly wrong, and the segment is retried later.
const MAX_RECONCILE_PAGES: u32 = 8;

/// Bookings per page when looking for our own booking in the way of a create.
const IN_THE_WAY_PAGE: u32 = 100;
/// At most this many pages: past them the "busy" answer stands as Cal.com gave it.
const IN_THE_WAY_PAGES: u32 = 5;

/// Every booking that may be the segment's: the stored one and each booking Cal.com moved
/// it to (following `rescheduledToUid`), then every booking of `event_type` within a day of
/// the planned start (every status).
pub(super) async fn find_bookings(
    client: &CalcomClient,
    stored_uid: Option<&str>,
    event_type: EventTypeId,
    start: DateTime<Utc>,
) -> Result<Vec<Booking>, CalcomError> {
    let mut out = Vec::new();
    let mut next = stored_uid.map(str::to_owned);
    for _ in 0..=MAX_RESCHEDULE_HOPS {
        let Some(uid) = next.take() else { break };
        match client.get_booking(&uid).await {
            Ok(booking) => {
                next = successor(&observe(&booking)).map(str::to_owned);
                out.push(booking);
            }
            // Deleted in Cal.com: the listing below finds whatever else is ours.
            Err(CalcomError::NotFound { .. }) => break,
            Err(err) => return Err(err),
        }
    }
    for page in 0..MAX_RECONCILE_PAGES {
        let query = ListBookings {
            event_type_id: Some(event_type.0),
            after_start: Some(start - TimeDelta::days(1)),
            // The end Cal.com stores is start + the event type's length, which may differ
            // from ours: bound by a day and match the start exactly instead.
            before_end: Some(start + TimeDelta::days(1)),
            take: Some(MAX_BOOKINGS_PAGE),
            skip: Some(page * MAX_BOOKINGS_PAGE),
            ..ListBookings::default()
        };
        let listed = client.list_bookings(&query).await?;
        let more = listed.has_next_page;
        out.extend(listed.bookings);
        if !more {
            return Ok(out);
        }
    }
    Err(CalcomError::OutcomeUnknown {
        reason: format!(
            "more than {} bookings of event type {event_type} around one day; could not finish the reconcile",
            MAX_RECONCILE_PAGES * MAX_BOOKINGS_PAGE
        ),
    })
}

/// The host's bookings within twelve hours of `start..end`. `None` when Cal.com could not
/// be read.
pub(super) async fn host_bookings_around(
    client: &CalcomClient,
    host: i64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<Vec<ObservedBooking>> {
    let mut found = Vec::new();
    // A busy salon day holds more bookings than one page: read on until the page that is
    // not full, so our own booking is found wherever it sorts.
    for page in 0..IN_THE_WAY_PAGES {
        let query = ListBookings {
            after_start: Some(start - TimeDelta::hours(12)),
            before_end: Some(end + TimeDelta::hours(12)),
            take: Some(IN_THE_WAY_PAGE),
            skip: Some(page * IN_THE_WAY_PAGE),
            ..ListBookings::default()
        };
        let listed = client.list_bookings(&query).await.ok()?;
        let full = listed.bookings.len() >= IN_THE_WAY_PAGE as usize;
        found.extend(
            listed
                .bookings
                .iter()
                .filter(|b| b.hosts.iter().any(|h| h.id == host))
                .map(observe),
        );
        if !full {
            break;
        }
    }
    Some(found)
}

/// What Cal.com answered a cancel with (the domain's [`CancelReply`]; `moves` reads it by
/// this name).
pub(super) use phasebook_domain::sync::CancelReply as Cancel;

pub(super) async fn cancel(client: &CalcomClient, uid: &str, reason: &str) -> Cancel {
    match client.cancel_booking(uid, reason).await {
        Ok(_) => Cancel::Cancelled,
        Err(err) if err.is_already_cancelled() => Cancel::AlreadyCancelled,
        Err(err @ CalcomError::NotFound { .. }) => Cancel::NotFound(classify(&err)),
        Err(err) => Cancel::Failed(classify(&err)),
    }
}

/// Where Cal.com moved a booking it answered "already cancelled" for: `Some(uid)` of the
/// booking it was rescheduled to, `None` when it went nowhere (or is gone).
pub(super) async fn moved_to(
    client: &CalcomClient,
    uid: &str,
) -> Result<Option<String>, CalcomFailure> {
    match client.get_booking(uid).await {
        Ok(old) => Ok(successor(&observe(&old)).map(str::to_owned)),
        Err(CalcomError::NotFound { .. }) => Ok(None),
        Err(err) => Err(classify(&err)),
    }
}

/// A booking Cal.com answered with, on the event type it was asked about.
pub(super) fn seen(booking: &Booking, event_type: EventTypeId) -> BookingSeen {
    BookingSeen {
        uid: booking.uid.clone(),
        id: booking.id,
        event_type,
    }
}

/// What Cal.com answered a create with.
pub(super) enum CreateAnswer {
    Booked(Booking),
    /// Booked, but for another length than asked: the booking blocks another span.
    OtherLength(Booking),
    Failed(CalcomFailure),
}

/// Creates the booking; `length` is the segment's.
pub(super) async fn create(
    client: &CalcomClient,
    request: &CreateBooking,
    length: TimeDelta,
) -> CreateAnswer {
    match client.create_booking(request).await {
        Ok(booking) if booking.end - booking.start != length => CreateAnswer::OtherLength(booking),
        Ok(booking) => CreateAnswer::Booked(booking),
        Err(err) => CreateAnswer::Failed(classify(&err)),
    }
}

/// The create request of one segment, carrying its identity in the metadata.
pub(super) fn create_request(
    work: &AppointmentWork,
    identity: &BookingIdentity,
    start: DateTime<Utc>,
    event_type: EventTypeId,
) -> Result<CreateBooking, CalcomError> {
    // A booking made after a move names the revision it was made for.
    let revision = (work.revision > 0).then(|| (METADATA_REVISION, work.revision.to_string()));
    let metadata = BookingMetadata::new(
        identity
            .metadata()
            .into_iter()
            .chain(revision)
            .map(|(k, v)| (k, Value::String(v))),
    )?;
    Ok(CreateBooking {
        start,
        event_type_id: event_type.0,
        attendee: Attendee {
            name: work.customer_name.clone(),
            email: work.customer_email.clone(),
            time_zone: work.time_zone.clone(),
            phone_number: work.customer_phone.clone(),
            language: None,
        },
        metadata,
        notes: work.notes.clone(),
    })
}

fn metadata_text(booking: &Booking, key: &str) -> Option<String> {
    match booking.metadata.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A Cal.com booking reduced to what the sync rules look at.
pub(crate) fn observe(booking: &Booking) -> ObservedBooking {
    ObservedBooking {
        id: booking.id,
        uid: booking.uid.clone(),
        event_type_id: booking
            .event_type_id
            .or_else(|| booking.event_type.as_ref().map(|e| e.id))
            .map(EventTypeId),
        start: booking.start,
        end: booking.end,
        cancelled: matches!(
            booking.status,
            BookingStatus::Cancelled | BookingStatus::Rejected
        ),
        tenant: metadata_text(booking, METADATA_TENANT),
        appointment: metadata_text(booking, METADATA_APPOINTMENT),
        segment: metadata_text(booking, METADATA_SEGMENT),
        rescheduled_to_uid: booking.rescheduled_to_uid.clone(),
    }
}
