//! `/v2/bookings`: the create pipe (Cal.com's field whitelist and checks), get, list with
//! filters, cancel and reschedule. The request parsing lives here, next to the handlers it
//! feeds; the booking rules themselves are in the store.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::Utc;
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::{
    ApiResult, RaceWindow, bearer, optional_user, parse_body, pipe_error, required_user, success,
};
use crate::Sim;
use crate::error::{CalError, LIST_NO_AUTH};
use crate::model::{AttendeeRecord, BookingRecord};
use crate::store::{BookingFilter, NewBooking};
use crate::time::parse_instant;

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/v2/bookings", post(create_booking).get(list_bookings))
        .route("/v2/bookings/{uid}", get(get_booking))
        .route("/v2/bookings/{uid}/cancel", post(cancel_booking))
        .route("/v2/bookings/{uid}/reschedule", post(reschedule_booking))
}

const BOOKING_FIELDS: [&str; 17] = [
    "start",
    "attendee",
    "eventTypeId",
    "eventTypeSlug",
    "username",
    "teamSlug",
    "organizationSlug",
    "bookingFieldsResponses",
    "metadata",
    "lengthInMinutes",
    "guests",
    "location",
    "meetingUrl",
    "routing",
    "emailVerificationCode",
    "instant",
    "recurrenceCount",
];

const LANGUAGES: [&str; 43] = [
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "es-419", "et", "eu", "fi", "fr",
    "he", "hr", "hu", "id", "it", "iw", "ja", "km", "ko", "lv", "nl", "no", "pl", "pt", "pt-BR",
    "ro", "ru", "sk", "sr", "sv", "ta", "th", "tr", "uk", "vi", "zh-CN", "zh-TW", "az",
];

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn valid_phone(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Cal.com's `validate-metadata`: ≤ 50 keys, keys ≤ 40 chars, values a string ≤ 500 chars,
/// a number or a boolean (FACTS 2.1). The message wording is the sim's.
fn validate_metadata(meta: &Value) -> Result<Map<String, Value>, CalError> {
    let Value::Object(map) = meta else {
        return Err(pipe_error("metadata", "metadata must be an object"));
    };
    if map.len() > 50 {
        return Err(pipe_error(
            "metadata",
            "Metadata can have at most 50 keys, each key up to 40 characters and string values up to 500 characters",
        ));
    }
    for (k, v) in map {
        if k.chars().count() > 40 {
            return Err(pipe_error(
                "metadata",
                &format!("Metadata key '{k}' is longer than 40 characters"),
            ));
        }
        match v {
            Value::String(s) if s.chars().count() > 500 => {
                return Err(pipe_error(
                    "metadata",
                    &format!("Metadata value of key '{k}' is longer than 500 characters"),
                ));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(pipe_error(
                    "metadata",
                    &format!("Metadata value of key '{k}' must be a string, number or boolean"),
                ));
            }
        }
    }
    Ok(map.clone())
}

fn parse_attendee(v: Option<&Value>) -> Result<AttendeeRecord, CalError> {
    let Some(Value::Object(a)) = v else {
        return Err(pipe_error("attendee", "attendee must be an object"));
    };
    for key in a.keys() {
        if !["name", "email", "timeZone", "phoneNumber", "language"].contains(&key.as_str()) {
            return Err(pipe_error(
                "attendee",
                &format!("property {key} should not exist"),
            ));
        }
    }
    let text = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = text("name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| pipe_error("attendee", "name must be a string"))?;
    let time_zone = text("timeZone")
        .ok_or_else(|| pipe_error("attendee", "timeZone must be a valid IANA time-zone"))?;
    if time_zone.parse::<Tz>().is_err() {
        return Err(pipe_error(
            "attendee",
            "timeZone must be a valid IANA time-zone",
        ));
    }
    let email = text("email");
    let phone = text("phoneNumber");
    if email.is_none() && phone.is_none() {
        return Err(pipe_error(
            "attendee",
            "Attendee must have at least one contact method: email or phoneNumber",
        ));
    }
    if let Some(e) = &email
        && !valid_email(e)
    {
        return Err(pipe_error("attendee", "email must be an email"));
    }
    if let Some(p) = &phone
        && !valid_phone(p)
    {
        return Err(pipe_error(
            "attendee",
            "phoneNumber must be a valid phone number",
        ));
    }
    let language = text("language").unwrap_or_else(|| "en".to_owned());
    if !LANGUAGES.contains(&language.as_str()) {
        return Err(pipe_error(
            "attendee",
            &format!(
                "language must be one of the following values: {}",
                LANGUAGES.join(", ")
            ),
        ));
    }
    Ok(AttendeeRecord {
        name,
        email,
        time_zone,
        language,
        phone_number: phone,
    })
}

/// The address Cal.com stores for an attendee who gave only a phone number: the number
/// without its `+`, at `sms.cal.com` (`packages/lib/contructEmailFromPhoneNumber.ts` in
/// calcom/cal.com; the v2 e2e test `team-bookings.e2e-spec.ts` expects
/// `919876543210@sms.cal.com` for `+919876543210`). Newer upstream keeps only the digits;
/// for the E.164 numbers the pipe accepts both give the same address.
fn sms_placeholder_email(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}@sms.cal.com")
}

/// The create-booking pipe: whitelist + forbidNonWhitelisted, then field checks.
fn parse_new_booking(sim: &Sim, body: &Map<String, Value>) -> Result<NewBooking, CalError> {
    for key in body.keys() {
        if !BOOKING_FIELDS.contains(&key.as_str()) {
            return Err(pipe_error(key, &format!("property {key} should not exist")));
        }
    }
    let start = body
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .ok_or_else(|| pipe_error("start", "start must be a valid ISO 8601 date string"))?;
    let attendee = parse_attendee(body.get("attendee"))?;
    let metadata = match body.get("metadata") {
        Some(m) => validate_metadata(m)?,
        None => Map::new(),
    };
    let event_type_id = match body.get("eventTypeId") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| pipe_error("eventTypeId", "eventTypeId must be an integer number"))?,
        None => {
            let slug = body.get("eventTypeSlug").and_then(Value::as_str);
            let username = body.get("username").and_then(Value::as_str);
            let team = body.get("teamSlug").and_then(Value::as_str);
            let found = sim.with_data(|d| match (slug, username, team) {
                (Some(slug), Some(user), _) => d.usernames.get(user).and_then(|uid| {
                    d.event_types
                        .values()
                        .find(|e| e.owner_id == Some(*uid) && e.slug == slug)
                        .map(|e| e.id)
                }),
                (Some(slug), None, Some(team)) => {
                    d.teams.values().find(|t| t.slug == team).and_then(|t| {
                        d.event_types
                            .values()
                            .find(|e| e.team_id == Some(t.id) && e.slug == slug)
                            .map(|e| e.id)
                    })
                }
                _ => None,
            });
            match (slug, found) {
                (Some(slug), None) => {
                    return Err(CalError::not_found(format!(
                        "Event type with slug {slug} not found"
                    )));
                }
                (Some(_), Some(id)) => id,
                (None, _) => {
                    return Err(CalError::bad_request(
                        "Either eventTypeId or eventTypeSlug + username or eventTypeSlug + teamSlug must be provided",
                    ));
                }
            }
        }
    };
    if body.contains_key("lengthInMinutes") {
        return Err(CalError::bad_request(
            "Can't specify 'lengthInMinutes' because event type does not have multiple possible lengths. Please, remove the 'lengthInMinutes' field from the request.",
        ));
    }
    let mut fields = match body.get("bookingFieldsResponses") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(pipe_error(
                "bookingFieldsResponses",
                "bookingFieldsResponses must be an object",
            ));
        }
        None => Map::new(),
    };
    fields.insert("name".into(), json!(attendee.name));
    if let Some(e) = &attendee.email {
        fields.insert("email".into(), json!(e));
    }
    if let Some(p) = &attendee.phone_number {
        fields.insert("attendeePhoneNumber".into(), json!(p));
    }
    let mut attendee = attendee;
    if attendee.email.is_none() {
        attendee.email = attendee.phone_number.as_deref().map(sms_placeholder_email);
    }
    Ok(NewBooking {
        start,
        event_type_id,
        attendee,
        metadata,
        booking_fields_responses: fields,
    })
}

async fn create_booking(
    AxState(sim): AxState<Sim>,
    race: Option<axum::Extension<RaceWindow>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let body = parse_body(&body)?;
    let new = parse_new_booking(&sim, &body)?;
    let race = race.map(|r| r.0.0).unwrap_or_default();
    let now = Utc::now();
    // Cal.com reads the booking window's days in the booker's zone.
    let booker_tz: Tz = new.attendee.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let booking = if race.is_zero() {
        sim.with_data_mut(|d| {
            let plan = d.plan(new.event_type_id, new.start, now, None, &booker_tz)?;
            d.commit(plan, new, now, None)
        })?
    } else {
        // Cal.com checks availability and inserts in separate steps; a twin request in
        // between passes the check and is stopped only by the unique key.
        let plan =
            sim.with_data(|d| d.plan(new.event_type_id, new.start, now, None, &booker_tz))?;
        tokio::time::sleep(race).await;
        sim.with_data_mut(|d| d.commit(plan, new, now, None))?
    };
    let title = sim.event_title(booking.event_type_id);
    sim.send_webhook(
        &booking,
        crate::webhook::created_payload(&booking, &title, None),
    );
    Ok(success(StatusCode::CREATED, booking.output()))
}

fn not_found_booking(uid: &str) -> CalError {
    CalError::not_found(format!(
        "Booking with uid={uid} was not found in the database"
    ))
}

async fn get_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let booking = sim
        .with_data(|d| d.booking_by_uid(&uid).cloned())
        .ok_or_else(|| not_found_booking(&uid))?;
    Ok(success(StatusCode::OK, booking.output()))
}

fn query_instant(
    q: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<chrono::DateTime<Utc>>, CalError> {
    match q.get(key) {
        None => Ok(None),
        Some(raw) => parse_instant(raw).map(Some).ok_or_else(|| {
            CalError::bad_request(format!("{key} must be a valid ISO 8601 date string"))
        }),
    }
}

fn query_u32(q: &BTreeMap<String, String>, key: &str) -> Result<Option<u32>, CalError> {
    match q.get(key) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| CalError::bad_request(format!("{key} must be an integer number"))),
    }
}

async fn list_bookings(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let caller = match bearer(&headers) {
        None => return Err(CalError::forbidden(LIST_NO_AUTH)),
        Some(_) => required_user(&sim, &headers)?,
    };
    let mut ids: Vec<i64> = Vec::new();
    if let Some(raw) = q.get("eventTypeId") {
        ids.push(raw.parse().map_err(|_| {
            CalError::bad_request(
                "eventTypeId must be a number conforming to the specified constraints",
            )
        })?);
    }
    if let Some(raw) = q.get("eventTypeIds") {
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            ids.push(
                part.trim()
                    .parse()
                    .map_err(|_| CalError::bad_request("eventTypeIds must be a list of numbers"))?,
            );
        }
    }
    let take = query_u32(&q, "take")?.unwrap_or(100);
    if !(1..=250).contains(&take) {
        return Err(CalError::bad_request("take must not be greater than 250"));
    }
    let skip = query_u32(&q, "skip")?.unwrap_or(0);
    let mut sort = None;
    for (key, field) in [
        ("sortStart", "start"),
        ("sortEnd", "end"),
        ("sortCreated", "created"),
        ("sortUpdatedAt", "updated"),
    ] {
        if let Some(order) = q.get(key) {
            sort = Some((field, order == "desc"));
        }
    }
    let filter = BookingFilter {
        event_type_ids: (!ids.is_empty()).then_some(ids),
        // A `+` in a query string arrives as a space (FACTS 4.1).
        attendee_email: q.get("attendeeEmail").map(|e| e.replace(' ', "+")),
        attendee_name: q.get("attendeeName").cloned(),
        booking_uid: q.get("bookingUid").cloned(),
        status: q
            .get("status")
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default(),
        after_start: query_instant(&q, "afterStart")?,
        before_end: query_instant(&q, "beforeEnd")?,
        after_created_at: query_instant(&q, "afterCreatedAt")?,
        before_created_at: query_instant(&q, "beforeCreatedAt")?,
        after_updated_at: query_instant(&q, "afterUpdatedAt")?,
        before_updated_at: query_instant(&q, "beforeUpdatedAt")?,
        sort,
    };
    let now = Utc::now();
    let (page, total): (Vec<BookingRecord>, usize) = sim.with_data(|d| {
        let all = d.list(caller, &filter, now);
        let total = all.len();
        (
            all.into_iter()
                .skip(skip as usize)
                .take(take as usize)
                .cloned()
                .collect(),
            total,
        )
    });
    let returned = page.len();
    let take_usize = take as usize;
    let total_pages = total.div_ceil(take_usize);
    let current_page = skip as usize / take_usize + 1;
    let remaining = total.saturating_sub(skip as usize + returned);
    let body = json!({
        "status": "success",
        "data": page.iter().map(BookingRecord::output).collect::<Vec<_>>(),
        "pagination": {
            "returnedItems": returned,
            "totalItems": total,
            "itemsPerPage": take,
            "remainingItems": remaining,
            "currentPage": current_page,
            "totalPages": total_pages,
            "hasNextPage": remaining > 0,
            "hasPreviousPage": skip > 0,
        },
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

async fn cancel_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let body = if body.is_empty() {
        Map::new()
    } else {
        parse_body(&body)?
    };
    let reason = body
        .get("cancellationReason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let now = Utc::now();
    let booking = sim.with_data_mut(|d| d.cancel(&uid, caller, reason, now))?;
    let title = sim.event_title(booking.event_type_id);
    sim.send_webhook(
        &booking,
        crate::webhook::cancelled_payload(&booking, &title),
    );
    Ok(success(StatusCode::OK, booking.output()))
}

async fn reschedule_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let body = parse_body(&body)?;
    for key in body.keys() {
        if ![
            "start",
            "rescheduledBy",
            "reschedulingReason",
            "emailVerificationCode",
            "seatUid",
        ]
        .contains(&key.as_str())
        {
            return Err(pipe_error(key, &format!("property {key} should not exist")));
        }
    }
    let start = body
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .ok_or_else(|| pipe_error("start", "start must be a valid ISO 8601 date string"))?;
    let reason = body
        .get("reschedulingReason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let by = body
        .get("rescheduledBy")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            caller.and_then(|c| sim.with_data(|d| d.users.get(&c).map(|u| u.email.clone())))
        });
    let now = Utc::now();
    let (old, new) = sim.with_data_mut(|d| {
        // A missing booking here is a plain Error in Cal.com: a 500 (FACTS 4.4).
        let old = d.booking_by_uid(&uid).cloned().ok_or_else(CalError::internal)?;
        if old.status == crate::model::BookingStatus::Cancelled {
            return Err(CalError::bad_request(match &old.rescheduled_to_uid {
                Some(next) => format!(
                    "Can't reschedule booking with uid={uid} because it has been cancelled and rescheduled already to booking with uid={next}. You need to reschedule the latest booking."
                ),
                None => format!(
                    "Can't reschedule booking with uid={uid} because it has been cancelled. Please book a new time instead."
                ),
            }));
        }
        let event_type_id = old.event_type_id.ok_or_else(CalError::internal)?;
        let attendee = old.attendees.first().cloned().ok_or_else(CalError::internal)?;
        let booker_tz: Tz = attendee.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let plan = d.plan(event_type_id, start, now, Some(&uid), &booker_tz)?;
        let new = NewBooking {
            start,
            event_type_id,
            attendee,
            metadata: old.metadata.clone(),
            booking_fields_responses: old.booking_fields_responses.clone(),
        };
        // Free the old slot first so a move that overlaps itself does not collide; put it
        // back if the insert fails.
        d.release_busy(&uid);
        let created =
            match d.commit(plan, new, now, Some((uid.clone(), reason.clone(), by.clone()))) {
                Ok(created) => created,
                Err(e) => {
                    d.restore_busy(&uid);
                    return Err(e);
                }
            };
        let old = d
            .mark_rescheduled(&uid, &created.uid, by.clone(), now)
            .unwrap_or(old);
        Ok((old, created))
    })?;
    let title = sim.event_title(new.event_type_id);
    sim.send_webhook(
        &new,
        crate::webhook::created_payload(&new, &title, Some(&old)),
    );
    Ok(success(StatusCode::CREATED, new.output()))
}
