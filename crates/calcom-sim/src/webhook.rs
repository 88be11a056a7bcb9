//! Booking webhooks as Cal.com sends them: one JSON POST per trigger, signed with
//! `X-Cal-Signature-256` = hex HMAC-SHA256 of the raw body (FACTS 8), sent in the
//! background so the booking answer never waits for the subscriber.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::model::BookingRecord;
use crate::time::iso;

/// Value of the signature header when the webhook has no secret.
pub const NO_SECRET: &str = "no-secret-provided";
pub const SIGNATURE_HEADER: &str = "X-Cal-Signature-256";

/// One attempted delivery, kept in the sim's state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDelivery {
    pub trigger_event: String,
    pub booking_uid: String,
    pub url: String,
    /// The exact body sent (what the signature covers).
    pub body: String,
    pub signature: String,
    /// The subscriber's HTTP status, once it answered.
    pub response_status: Option<u16>,
    /// Why the delivery failed, if it did.
    pub error: Option<String>,
    pub sent_at: DateTime<Utc>,
}

/// Lower-case hex HMAC-SHA256 of `body` keyed with `secret`, or `no-secret-provided`.
pub fn sign(secret: Option<&str>, body: &[u8]) -> String {
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return NO_SECRET.to_owned();
    };
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm cannot run.
        Err(_) => NO_SECRET.to_owned(),
    }
}

/// `+00:00` style, as the cancel path formats times.
fn offset_utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn person(b: &BookingRecord) -> (Value, Vec<Value>) {
    let organizer = b
        .hosts
        .first()
        .map(|h| {
            json!({
                "id": h.id, "name": h.name, "email": h.email, "username": h.username,
                "timeZone": h.time_zone, "language": {"locale": "en"}, "timeFormat": "h:mma",
                "utcOffset": utc_offset_minutes(&h.time_zone, &b.start),
            })
        })
        .unwrap_or(Value::Null);
    let attendees = b
        .attendees
        .iter()
        .map(|a| {
            json!({
                "name": a.name, "email": a.email, "timeZone": a.time_zone,
                "phoneNumber": a.phone_number, "language": {"locale": a.language},
                "utcOffset": utc_offset_minutes(&a.time_zone, &b.start),
            })
        })
        .collect();
    (organizer, attendees)
}

fn utc_offset_minutes(zone: &str, at: &DateTime<Utc>) -> i64 {
    use chrono::Offset;
    zone.parse::<chrono_tz::Tz>()
        .map(|tz| i64::from(at.with_timezone(&tz).offset().fix().local_minus_utc()) / 60)
        .unwrap_or(0)
}

fn responses(b: &BookingRecord) -> Value {
    let mut r = Map::new();
    if let Some(a) = b.attendees.first() {
        r.insert(
            "name".into(),
            json!({"label": "your_name", "value": a.name}),
        );
        if let Some(email) = &a.email {
            r.insert(
                "email".into(),
                json!({"label": "email_address", "value": email}),
            );
        }
    }
    if let Some(notes) = b.booking_fields_responses.get("notes") {
        r.insert(
            "notes".into(),
            json!({"label": "additional_notes", "value": notes}),
        );
    }
    Value::Object(r)
}

/// BOOKING_CREATED; with `previous` it is BOOKING_RESCHEDULED for the new booking `b`.
pub(crate) fn created_payload(
    b: &BookingRecord,
    event_title: &str,
    previous: Option<&BookingRecord>,
) -> Value {
    let (organizer, attendees) = person(b);
    let mut payload = json!({
        "type": b.event_type_slug,
        "title": b.title,
        "description": "",
        "additionalNotes": b.booking_fields_responses.get("notes").cloned().unwrap_or(json!("")),
        "startTime": iso(&b.start).replace(".000Z", "Z"),
        "endTime": iso(&b.end).replace(".000Z", "Z"),
        "organizer": organizer,
        "attendees": attendees,
        "responses": responses(b),
        "userFieldsResponses": {},
        "location": "",
        "uid": b.uid,
        "bookingId": b.id,
        "eventTypeId": b.event_type_id,
        "eventTitle": event_title,
        "eventDescription": "",
        "length": b.duration_minutes(),
        "price": 0,
        "currency": "usd",
        "status": "ACCEPTED",
        "metadata": b.metadata,
    });
    let trigger = if let Some(old) = previous {
        payload["rescheduleUid"] = json!(old.uid);
        payload["rescheduleId"] = json!(old.id);
        payload["rescheduleStartTime"] = json!(iso(&old.start).replace(".000Z", "Z"));
        payload["rescheduleEndTime"] = json!(iso(&old.end).replace(".000Z", "Z"));
        payload["rescheduledBy"] = json!(b.rescheduled_by_email);
        "BOOKING_RESCHEDULED"
    } else {
        "BOOKING_CREATED"
    };
    json!({"triggerEvent": trigger, "createdAt": iso(&Utc::now()), "payload": payload})
}

/// BOOKING_CANCELLED: the calendar-event core, without the booking's metadata.
pub(crate) fn cancelled_payload(b: &BookingRecord, event_title: &str) -> Value {
    let (organizer, attendees) = person(b);
    json!({
        "triggerEvent": "BOOKING_CANCELLED",
        "createdAt": iso(&Utc::now()),
        "payload": {
            "type": b.event_type_slug,
            "title": b.title,
            "description": "",
            "startTime": offset_utc(&b.start),
            "endTime": offset_utc(&b.end),
            "organizer": organizer,
            "attendees": attendees,
            "responses": responses(b),
            "uid": b.uid,
            "bookingId": b.id,
            "eventTypeId": b.event_type_id,
            "eventTitle": event_title,
            "length": b.duration_minutes(),
            "cancellationReason": b.cancellation_reason,
            "cancelledBy": b.cancelled_by_email,
            "status": "CANCELLED",
        }
    })
}
