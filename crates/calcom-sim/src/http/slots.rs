//! `/v2/slots` and `/v2/slots/reservations`: free slots of an event type and the holds on
//! them. Together because a reservation's only effect is on the slots answer.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use chrono::{Duration, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use super::{ApiResult, optional_user, parse_body, success};
use crate::Sim;
use crate::error::CalError;
use crate::store::{ReserveInput, slots_output};
use crate::time::parse_instant;

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/v2/slots", get(get_slots))
        .route("/v2/slots/reservations", post(reserve_slot))
        .route(
            "/v2/slots/reservations/{uid}",
            get(get_reservation)
                .patch(update_reservation)
                .delete(delete_reservation),
        )
}

async fn get_slots(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let bad_range = || {
        CalError::bad_request(
            "Invalid time range given - check the 'start' and 'end' query parameters.",
        )
    };
    let start = q
        .get("start")
        .and_then(|s| parse_instant(s))
        .ok_or_else(bad_range)?;
    let mut end = q
        .get("end")
        .and_then(|s| parse_instant(s))
        .ok_or_else(bad_range)?;
    // An end at exactly midnight means the whole of that day (FACTS 6).
    if end.time() == chrono::NaiveTime::MIN {
        end += Duration::seconds(86_399);
    }
    if end < start {
        return Err(bad_range());
    }
    let tz: Tz = match q.get("timeZone") {
        Some(z) => z
            .parse()
            .map_err(|_| CalError::bad_request("timeZone must be a valid IANA time-zone"))?,
        None => chrono_tz::UTC,
    };
    let duration = match q.get("duration") {
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| CalError::bad_request("duration must be an integer number"))?,
        ),
        None => None,
    };
    let range = q.get("format").map(String::as_str) == Some("range");
    let now = Utc::now();
    let slots = sim.with_data(|d| {
        let et_id = match q.get("eventTypeId") {
            Some(raw) => Some(
                raw.parse::<i64>()
                    .map_err(|_| CalError::bad_request("eventTypeId must be an integer number"))?,
            ),
            None => match (q.get("eventTypeSlug"), q.get("username"), q.get("teamSlug")) {
                (Some(slug), Some(user), _) => d.usernames.get(user).and_then(|u| {
                    d.event_types
                        .values()
                        .find(|e| e.owner_id == Some(*u) && &e.slug == slug)
                        .map(|e| e.id)
                }),
                (Some(slug), None, Some(team)) => {
                    d.teams.values().find(|t| &t.slug == team).and_then(|t| {
                        d.event_types
                            .values()
                            .find(|e| e.team_id == Some(t.id) && &e.slug == slug)
                            .map(|e| e.id)
                    })
                }
                _ => {
                    return Err(CalError::bad_request(
                        "Either eventTypeId or eventTypeSlug + username or eventTypeSlug + teamSlug must be provided",
                    ));
                }
            },
        };
        let et = et_id
            .and_then(|id| d.event_types.get(&id))
            .ok_or_else(|| {
                CalError::not_found(format!(
                    "Event Type with id {} not found",
                    et_id.map_or_else(|| "unknown".to_owned(), |i| i.to_string())
                ))
            })?;
        Ok(d.slots(
            et,
            start,
            end,
            duration,
            q.get("bookingUidToReschedule").map(String::as_str),
            now,
            &tz,
        ))
    })?;
    Ok(success(StatusCode::OK, slots_output(&slots, &tz, range)))
}

/// The reservation body (`ReserveSlotInput_2024_09_04`); Cal.com's global pipe drops
/// unknown properties.
fn parse_reserve_input(body: &Map<String, Value>) -> Result<ReserveInput, CalError> {
    let int = |k: &str| -> Result<Option<i64>, CalError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| CalError::bad_request(format!("{k} must be a positive number"))),
        }
    };
    Ok(ReserveInput {
        event_type_id: int("eventTypeId")?
            .ok_or_else(|| CalError::bad_request("eventTypeId must be a number"))?,
        slot_start: body
            .get("slotStart")
            .and_then(Value::as_str)
            .and_then(parse_instant)
            .ok_or_else(|| CalError::bad_request("Invalid start date"))?,
        slot_duration: int("slotDuration")?,
        reservation_duration: int("reservationDuration")?,
    })
}

async fn reserve_slot(AxState(sim): AxState<Sim>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let input = parse_reserve_input(&parse_body(&body)?)?;
    if input.reservation_duration.is_some() && caller.is_none() {
        return Err(CalError::unauthorized(
            "reservationDuration can only be used for authenticated requests - use access token, api key or OAuth credentials",
        ));
    }
    let now = Utc::now();
    let record = sim.with_data_mut(|d| {
        if let Some(caller) = caller
            && input.reservation_duration.is_some()
            && d.event_types.contains_key(&input.event_type_id)
            && !d.may_set_reservation_duration(caller, input.event_type_id)
        {
            return Err(CalError::forbidden(
                "authenticated user is not owner of event type, does not have memberships in common with owner of the event type, nor does belong to event type's team or org.",
            ));
        }
        d.reserve(&input, now)
    })?;
    Ok(success(StatusCode::CREATED, record.output()))
}

/// An unknown uid is a 200 with `data: null` (the output type is nullable).
async fn get_reservation(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> ApiResult {
    let record = sim.with_data(|d| d.reservations.get(&uid).cloned());
    Ok(success(
        StatusCode::OK,
        record.map_or(Value::Null, |r| r.output()),
    ))
}

async fn update_reservation(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input = parse_reserve_input(&parse_body(&body)?)?;
    let now = Utc::now();
    let record = sim.with_data_mut(|d| d.update_reservation(&uid, &input, now))?;
    Ok(success(StatusCode::OK, record.output()))
}

/// Cal.com deletes with `deleteMany`: an unknown uid is a 200 as well.
async fn delete_reservation(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> ApiResult {
    sim.with_data_mut(|d| d.reservations.remove(&uid));
    Ok((StatusCode::OK, axum::Json(json!({"status": "success"}))).into_response())
}
