//! A small scripted Cal.com stand-in for the sync engine's tests: bookings in memory, the
//! managed-parent refusal, Cal.com's "host busy" answer, and faults queued per create
//! (5xx, lost answer, 429) or per cancel (lost answer).

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};

/// What the stand-in does with the next create.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// 503 without creating anything.
    Server,
    /// Creates the booking, then answers too late (the client times out).
    Lost,
    /// 429 with a one-second reset.
    RateLimited,
}

#[derive(Default)]
pub struct Calcom {
    pub bookings: Vec<Value>,
    pub faults: VecDeque<Fault>,
    /// Event type ids that are managed parents.
    pub parents: Vec<i64>,
    /// Cancels that are executed but answered too late.
    pub lose_cancels: usize,
    pub creates: usize,
}

pub type Shared = Arc<Mutex<Calcom>>;

fn envelope(data: Value) -> Json<Value> {
    Json(json!({"status": "success", "data": data}))
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"status": "error", "error": {"code": "BadRequestException", "message": message}})),
    )
        .into_response()
}

async fn create(State(cal): State<Shared>, Json(body): Json<Value>) -> Response {
    let fault = {
        let mut c = cal.lock().expect("lock");
        c.creates += 1;
        c.faults.pop_front()
    };
    let event_type = body["eventTypeId"].as_i64().unwrap_or_default();
    match fault {
        Some(Fault::Server) => return error(StatusCode::SERVICE_UNAVAILABLE, "upstream down"),
        Some(Fault::RateLimited) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("X-RateLimit-Reset-Default", "1")],
                Json(json!({"status": "error", "error": {"code": "ThrottlerException", "message": "CustomThrottlerGuard - Too many requests. Please try again later."}})),
            )
                .into_response();
        }
        _ => {}
    }
    let start: DateTime<Utc> = body["start"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default();
    let booking = {
        let mut c = cal.lock().expect("lock");
        if c.parents.contains(&event_type) {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "Event type with id={event_type} is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users."
                ),
            );
        }
        let busy = c.bookings.iter().any(|b| {
            b["eventTypeId"] == json!(event_type)
                && b["start"] == json!(start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
                && b["status"] == "accepted"
        });
        if busy {
            return error(
                StatusCode::BAD_REQUEST,
                "User either already has booking at this time or is not available",
            );
        }
        let id = c.bookings.len() as i64 + 1;
        let booking = json!({
            "id": id,
            "uid": format!("uid-{id}"),
            "title": "t",
            "status": "accepted",
            "start": start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "end": (start + TimeDelta::minutes(30)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventTypeId": event_type,
            "metadata": body["metadata"].clone(),
        });
        c.bookings.push(booking.clone());
        booking
    };
    if fault == Some(Fault::Lost) {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    (StatusCode::CREATED, envelope(booking)).into_response()
}

async fn list(
    State(cal): State<Shared>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Json<Value> {
    let c = cal.lock().expect("lock");
    let event_type: Option<i64> = q.get("eventTypeId").and_then(|v| v.parse().ok());
    let found: Vec<Value> = c
        .bookings
        .iter()
        .filter(|b| event_type.is_none_or(|e| b["eventTypeId"] == json!(e)))
        .cloned()
        .collect();
    Json(
        json!({"status": "success", "data": found, "pagination": {"totalItems": found.len(), "hasNextPage": false}}),
    )
}

async fn cancel(State(cal): State<Shared>, Path(uid): Path<String>) -> Response {
    let (answer, lose) = {
        let mut c = cal.lock().expect("lock");
        let lose = c.lose_cancels > 0;
        if lose {
            c.lose_cancels -= 1;
        }
        let Some(b) = c.bookings.iter_mut().find(|b| b["uid"] == json!(uid)) else {
            return error(StatusCode::NOT_FOUND, "Booking not found");
        };
        if b["status"] == "cancelled" {
            return error(
                StatusCode::BAD_REQUEST,
                "This booking has already been cancelled.",
            );
        }
        b["status"] = json!("cancelled");
        (b.clone(), lose)
    };
    if lose {
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    envelope(answer).into_response()
}

async fn get_booking(State(cal): State<Shared>, Path(uid): Path<String>) -> Response {
    let c = cal.lock().expect("lock");
    match c.bookings.iter().find(|b| b["uid"] == json!(uid)) {
        Some(b) => envelope(b.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "Booking not found"),
    }
}

/// Every id is an individual 30-minute event type of user 7 (`anna`).
async fn event_type(Path(id): Path<i64>) -> Json<Value> {
    envelope(
        json!({"id": id, "slug": format!("seg-{id}"), "title": "Segment", "lengthInMinutes": 30, "ownerId": 7, "hosts": []}),
    )
}

pub async fn spawn_calcom(cal: Shared) -> String {
    let app = Router::new()
        .route("/v2/bookings", post(create).get(list))
        .route("/v2/bookings/{uid}/cancel", post(cancel))
        .route("/v2/event-types/{id}", get(event_type))
        .route("/v2/bookings/{uid}", get(get_booking))
        .with_state(cal);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}
