//! `Prefer: wait=N` on `POST /appointments` (RFC 7240): answer once the sync reached a final
//! state (synced, needs review, cancelled) or after N seconds (at most 10), whichever comes
//! first, and say which: `Preference-Applied: wait=N` and
//! `Phasebook-Sync-Finished: true|false`, with the appointment as it stands then.

use std::time::Duration;

use axum::body::{Body, to_bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use uuid::Uuid;

use crate::extract::MAX_BODY_BYTES;
use crate::idempotency::IDEMPOTENT_REPLAYED;
use crate::routes::views::AppointmentView;
use crate::state::AppState;

/// The longest wait a caller may ask for, in seconds.
pub const MAX_WAIT_SECONDS: u64 = 10;
/// Tells whether the sync reached a final state within the wait.
pub const SYNC_FINISHED_HEADER: &str = "phasebook-sync-finished";

/// The wait asked for by `Prefer: wait=N`, capped at [`MAX_WAIT_SECONDS`]; `None` without it.
pub fn requested_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|pref| {
            let (name, value) = pref.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| value.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .next()
        .map(|n| n.min(MAX_WAIT_SECONDS))
}

/// The answer, held for the sync outcome when `Prefer: wait=N` asked for it.
pub async fn answer(
    state: &AppState,
    tenant_id: Uuid,
    wait: Option<u64>,
    response: Response,
) -> Response {
    match wait {
        Some(seconds) => answer_after_wait(state, tenant_id, response, seconds).await,
        None => response,
    }
}

/// Holds a `201 Created` until the appointment's sync is final or `seconds` passed, then
/// answers with the appointment as it is at that moment. Anything else passes unchanged,
/// a replayed answer too: it is the key's first answer, byte for byte.
async fn answer_after_wait(
    state: &AppState,
    tenant_id: Uuid,
    response: Response,
    seconds: u64,
) -> Response {
    // A booking (201) or a move (200) of one appointment.
    if !matches!(response.status(), StatusCode::CREATED | StatusCode::OK)
        || response.headers().contains_key(IDEMPOTENT_REPLAYED)
    {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES * 16).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let id = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str()).map(str::to_string))
        .and_then(|id| Uuid::parse_str(&id).ok());
    let Some(id) = id else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    state.sync.wake();
    let outcome = state
        .sync
        .wait_for_outcome(tenant_id, id, Duration::from_secs(seconds))
        .await;
    let finished = matches!(&outcome, Ok(Some(o)) if o.finished);
    let body = match state.store.get_appointment(tenant_id, id).await {
        Ok(Some(appointment)) => {
            serde_json::to_vec(&AppointmentView::from(&appointment)).unwrap_or(bytes.to_vec())
        }
        _ => bytes.to_vec(),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    if let Ok(applied) = HeaderValue::from_str(&format!("wait={seconds}")) {
        parts.headers.insert("preference-applied", applied);
    }
    parts.headers.insert(
        SYNC_FINISHED_HEADER,
        HeaderValue::from_static(if finished { "true" } else { "false" }),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefer(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("prefer", HeaderValue::from_str(value).expect("header"));
        headers
    }

    #[test]
    fn wait_is_read_and_capped() {
        assert_eq!(requested_wait(&prefer("wait=3")), Some(3));
        assert_eq!(requested_wait(&prefer("respond-async, wait=100")), Some(10));
        assert_eq!(requested_wait(&prefer("return=minimal")), None);
        assert_eq!(requested_wait(&HeaderMap::new()), None);
    }
}
