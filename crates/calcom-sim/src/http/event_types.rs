//! `/v2/event-types` (personal) and `/v2/teams/{teamId}/event-types` (team, including
//! managed parents answered with their children). One file because both read and write
//! the same records and share the output shapes.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ApiResult, optional_user, parse_body, parse_id, required_user, success};
use crate::Sim;
use crate::error::{CalError, NO_AUTH};
use crate::model::{HostRecord, SchedulingType};
use crate::store::TeamEventTypeInput;

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/v2/event-types", get(list_event_types))
        .route(
            "/v2/event-types/{id}",
            get(get_event_type).patch(update_event_type),
        )
        .route(
            "/v2/teams/{team_id}/event-types",
            get(list_team_event_types).post(create_team_event_type),
        )
        .route(
            "/v2/teams/{team_id}/event-types/{id}",
            get(get_team_event_type).patch(update_team_event_type),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypesQuery {
    username: Option<String>,
    event_slug: Option<String>,
}

async fn list_event_types(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<EventTypesQuery>,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let Some(username) = q.username else {
        // Without a username Cal.com lists the caller's own types.
        let caller = caller.ok_or_else(|| CalError::unauthorized(NO_AUTH))?;
        let data = sim.with_data(|d| {
            d.event_types
                .values()
                .filter(|e| e.owner_id == Some(caller) && e.team_id.is_none())
                .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
                .map(|e| d.personal_output(e))
                .collect::<Vec<_>>()
        });
        return Ok(success(StatusCode::OK, json!(data)));
    };
    let data = sim.with_data(|d| {
        let Some(user) = d.usernames.get(&username).copied() else {
            return Vec::new();
        };
        d.event_types
            .values()
            .filter(|e| e.owner_id == Some(user) && e.team_id.is_none())
            .filter(|e| !e.hidden || caller == Some(user))
            .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
            .map(|e| d.personal_output(e))
            .collect::<Vec<_>>()
    });
    Ok(success(StatusCode::OK, json!(data)))
}

async fn get_event_type(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let id = parse_id(&id, "numeric string")?;
    let data = sim
        .with_data(|d| {
            d.event_types
                .get(&id)
                .filter(|e| e.owner_id == Some(caller))
                .map(|e| d.personal_output(e))
        })
        .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
    Ok(success(StatusCode::OK, data))
}

async fn update_event_type(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let id = parse_id(&id, "numeric string")?;
    let body = parse_body(&body)?;
    let data = sim.with_data_mut(|d| {
        d.update_personal_event_type(id, caller, &body)?;
        d.event_types
            .get(&id)
            .map(|e| d.personal_output(e))
            .ok_or_else(CalError::internal)
    })?;
    Ok(success(StatusCode::OK, data))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamEventTypesQuery {
    event_slug: Option<String>,
}

async fn list_team_event_types(
    AxState(sim): AxState<Sim>,
    Path(team_id): Path<String>,
    Query(q): Query<TeamEventTypesQuery>,
) -> ApiResult {
    let team_id = parse_id(&team_id, "numeric string")?;
    let data = sim.with_data(|d| {
        d.event_types
            .values()
            .filter(|e| e.team_id == Some(team_id))
            .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
            .map(|e| d.team_output(e))
            .collect::<Vec<_>>()
    });
    Ok(success(StatusCode::OK, json!(data)))
}

async fn get_team_event_type(
    AxState(sim): AxState<Sim>,
    Path((team_id, id)): Path<(String, String)>,
) -> ApiResult {
    let team_id = parse_id(&team_id, "numeric string")?;
    let id = parse_id(&id, "numeric string")?;
    let data = sim
        .with_data(|d| {
            d.event_types
                .get(&id)
                .filter(|e| e.team_id == Some(team_id))
                .map(|e| d.team_output(e))
        })
        .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
    Ok(success(StatusCode::OK, data))
}

fn parse_team_input(body: &Map<String, Value>) -> Result<TeamEventTypeInput, CalError> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let int = |k: &str| -> Result<Option<i64>, CalError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| CalError::bad_request(format!("{k} must be an integer number"))),
        }
    };
    let scheduling_type = match body.get("schedulingType").and_then(Value::as_str) {
        Some(raw) => Some(SchedulingType::parse(raw).ok_or_else(|| {
            CalError::bad_request(
                "schedulingType must be one of the following values: collective, roundRobin, managed",
            )
        })?),
        None => None,
    };
    let hosts = match body.get("hosts") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|h| {
                    h.get("userId")
                        .and_then(Value::as_i64)
                        .map(|user_id| HostRecord {
                            user_id,
                            mandatory: h.get("mandatory").and_then(Value::as_bool),
                            priority: h.get("priority").and_then(Value::as_str).map(str::to_owned),
                        })
                        .ok_or_else(|| CalError::bad_request("hosts.userId must be a number"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(CalError::bad_request("hosts must be an array")),
    };
    let length = int("lengthInMinutes")?;
    if length.is_some_and(|l| l < 1) {
        return Err(CalError::bad_request(
            "lengthInMinutes must not be less than 1",
        ));
    }
    Ok(TeamEventTypeInput {
        title: text("title"),
        slug: text("slug"),
        length_in_minutes: length,
        scheduling_type,
        hosts,
        assign_all_team_members: body.get("assignAllTeamMembers").and_then(Value::as_bool),
        description: text("description"),
        hidden: body.get("hidden").and_then(Value::as_bool),
        minimum_booking_notice: int("minimumBookingNotice")?,
        before_event_buffer: int("beforeEventBuffer")?,
        after_event_buffer: int("afterEventBuffer")?,
        slot_interval: int("slotInterval")?,
        booking_window: crate::store::parse_booking_window(body.get("bookingWindow"))?,
    })
}

/// Managed answers are `[parent, child…]`; others a single object (FACTS 5.3).
fn team_answer(sim: &Sim, ids: &[i64], status: StatusCode) -> Response {
    let (items, managed) = sim.with_data(|d| {
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| d.event_types.get(id))
            .map(|e| d.team_output(e))
            .collect();
        let managed = ids
            .first()
            .and_then(|id| d.event_types.get(id))
            .is_some_and(|e| e.is_managed_parent());
        (items, managed)
    });
    if managed {
        success(status, json!(items))
    } else {
        success(status, items.into_iter().next().unwrap_or(Value::Null))
    }
}

async fn create_team_event_type(
    AxState(sim): AxState<Sim>,
    Path(team_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    let input = parse_team_input(&parse_body(&body)?)?;
    let ids = sim.with_data_mut(|d| d.create_team_event_type(team_id, caller, input))?;
    Ok(team_answer(&sim, &ids, StatusCode::CREATED))
}

async fn update_team_event_type(
    AxState(sim): AxState<Sim>,
    Path((team_id, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    let id = parse_id(&id, "numeric string")?;
    let input = parse_team_input(&parse_body(&body)?)?;
    let ids = sim.with_data_mut(|d| d.update_team_event_type(team_id, id, caller, input))?;
    Ok(team_answer(&sim, &ids, StatusCode::OK))
}
