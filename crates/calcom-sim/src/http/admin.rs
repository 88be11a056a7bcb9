//! The `/__sim/…` admin API: seed, reset, faults, rate limit, webhook target and direct
//! inserts. It sits outside the gate (no auth, no faults, not counted) so a test can always
//! set up and inspect the sim, whatever faults it injected.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;

use crate::Sim;
use crate::config::{Faults, RateLimitConfig, WebhookConfig};
use crate::seed::{Seed, SeedBooking, SeedReservation};

pub(super) fn router() -> Router<Sim> {
    Router::new()
        .route("/__sim/state", get(admin_state))
        .route("/__sim/seed", post(admin_seed))
        .route("/__sim/reset", post(admin_reset))
        .route("/__sim/faults", put(admin_faults).get(admin_get_faults))
        .route("/__sim/rate-limit", put(admin_rate_limit))
        .route("/__sim/webhook", put(admin_webhook))
        .route("/__sim/bookings", post(admin_insert_booking))
        .route("/__sim/bookings/{uid}", delete(admin_remove_booking))
        .route("/__sim/reservations", post(admin_insert_reservation))
}

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn admin_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(admin_error(
            StatusCode::BAD_REQUEST,
            format!("invalid body: {e}"),
        ))
    })
}

async fn admin_state(AxState(sim): AxState<Sim>) -> Response {
    axum::Json(sim.state()).into_response()
}

async fn admin_seed(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: Seed = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.seed(seed) {
        Ok(()) => (StatusCode::CREATED, axum::Json(json!({"seeded": true}))).into_response(),
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn admin_reset(AxState(sim): AxState<Sim>) -> Response {
    sim.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn admin_faults(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Faults>(&body) {
        Ok(f) => {
            sim.set_faults(f.clone());
            axum::Json(f).into_response()
        }
        Err(r) => *r,
    }
}

async fn admin_get_faults(AxState(sim): AxState<Sim>) -> Response {
    axum::Json(sim.faults()).into_response()
}

/// Body: a `RateLimitConfig` (`{limit, windowMs, blockMs}`) or `null` to switch it off.
async fn admin_rate_limit(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Option<RateLimitConfig>>(&body) {
        Ok(rl) => {
            sim.set_rate_limit(rl);
            axum::Json(json!({"rateLimit": rl})).into_response()
        }
        Err(r) => *r,
    }
}

/// Body: `{url, secret?}` or `null` to stop sending.
async fn admin_webhook(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Option<WebhookConfig>>(&body) {
        Ok(w) => {
            sim.set_webhook(w.clone());
            axum::Json(json!({"webhook": w})).into_response()
        }
        Err(r) => *r,
    }
}

async fn admin_insert_booking(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: SeedBooking = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.insert_booking(seed) {
        Ok(b) => (StatusCode::CREATED, axum::Json(b)).into_response(),
        Err(e) => admin_error(e.status, e.message),
    }
}

async fn admin_insert_reservation(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: SeedReservation = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.insert_reservation(seed) {
        Ok(r) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Err(e) => admin_error(e.status, e.message),
    }
}

async fn admin_remove_booking(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> Response {
    match sim.remove_booking(&uid) {
        Some(b) => axum::Json(b).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, format!("no booking {uid}")),
    }
}
