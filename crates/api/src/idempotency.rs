//! `Idempotency-Key` on the routes that book or move: the first request with a key claims
//! it, its answer is pinned, and a retry with the same key and body gets that answer again,
//! byte for byte, with `Idempotent-Replayed: true`. A create claims its key in the very
//! statement that writes the appointment, its 201 pinned (a refusal is pinned instead);
//! a concurrent duplicate waits for that statement and replays its answer. The other
//! routes claim the key in flight first, pin the answer with their write or right after a
//! refusal, and answer a concurrent duplicate 409. A 5xx pins nothing, so a retry can
//! succeed. Keys are kept 24 h (`store::IDEMPOTENCY_TTL`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, problem_response};
use crate::state::AppState;
use crate::store::{IdempotencyClaim, IdempotentResponse, KeyedAnswer};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
const MAX_KEY_CHARS: usize = 255;

/// The request's key: `None` without the header, a 422 naming the header when it is empty,
/// too long or not visible ASCII.
pub fn key_from(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.chars().count() <= MAX_KEY_CHARS)
        .ok_or_else(|| {
            ApiError::validation(
                "Idempotency-Key",
                "invalid_idempotency_key",
                format!(
                    "the Idempotency-Key header must be 1 to {MAX_KEY_CHARS} visible ASCII characters"
                ),
            )
        })?;
    Ok(Some(key.to_string()))
}

/// A body hash that ignores key order and whitespace, so a client that re-serialises the
/// same request still matches its key.
pub fn request_hash(value: &serde_json::Value) -> String {
    fn canonical(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(v) = map.get(key) {
                        canonical(v, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(value, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Claims `key` for this request. `Ok(None)`: the request is now the key's owner and must
/// [`settle`] it. `Ok(Some(answer))`: the key's first answer, to be sent again. A key in
/// flight is a 409, a key used with another body a 422.
pub async fn claim(
    state: &AppState,
    tenant_id: Uuid,
    key: &str,
    hash: &str,
    now: DateTime<Utc>,
) -> Result<Option<Response>, ApiError> {
    let claim = state
        .store
        .claim_idempotency_key(tenant_id, key, hash, now)
        .await?;
    taken(state, claim)
}

/// What the request answers after presenting its key: `Ok(None)` when the key is now the
/// request's; the key's first answer again when it holds one; 409 while another request
/// with the key is in flight; 422 when the key was used with another body.
pub fn taken(state: &AppState, claim: IdempotencyClaim) -> Result<Option<Response>, ApiError> {
    match claim {
        IdempotencyClaim::Claimed => {}
        IdempotencyClaim::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
        IdempotencyClaim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        IdempotencyClaim::Completed(pinned) => return Ok(Some(replay(pinned))),
    }
    // Expired keys are purged here, opportunistically, about once per hundred claims.
    if rand::random_ratio(1, 100) {
        let store = state.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.purge_expired_idempotency_keys(Utc::now()).await {
                tracing::warn!(error = %err, "could not purge expired idempotency keys");
            }
        });
    }
    Ok(None)
}

/// Pins a refusal as the key's first answer, for a request that claims its key with its
/// write and was refused before writing. `None`: the refusal is the answer; otherwise the
/// key was taken by an earlier request with it, and this is what the key answers. A 5xx
/// pins nothing, so a retry can succeed.
pub async fn pin_refusal(
    state: &AppState,
    tenant_id: Uuid,
    answer: KeyedAnswer<'_>,
    now: DateTime<Utc>,
) -> Option<Response> {
    if StatusCode::from_u16(answer.response.status).is_ok_and(|s| s.is_server_error()) {
        return None;
    }
    match state.store.pin_first_answer(tenant_id, answer, now).await {
        Ok(claim) => match taken(state, claim) {
            Ok(replayed) => replayed,
            Err(refused) => Some(refused.into_response()),
        },
        Err(err) => {
            tracing::error!(error = %err, "could not pin the answer to the idempotency key");
            None
        }
    }
}

/// Ends the claim with the request's answer: a 5xx releases the key, anything else is
/// pinned. A failure here is logged: the answer itself was already decided.
pub async fn settle(
    state: &AppState,
    tenant_id: Uuid,
    key: &str,
    status: StatusCode,
    body: Vec<u8>,
) {
    let settled = if status.is_server_error() {
        state.store.release_idempotency_key(tenant_id, key).await
    } else {
        state
            .store
            .complete_idempotency_key(
                tenant_id,
                key,
                &IdempotentResponse {
                    status: status.as_u16(),
                    body,
                },
            )
            .await
    };
    if let Err(err) = settled {
        tracing::error!(error = %err, "could not settle idempotency key");
    }
}

/// Lets a claimed key go when the request's task died before it could settle.
pub async fn release(state: &AppState, tenant_id: Uuid, key: &str) {
    if let Err(err) = state.store.release_idempotency_key(tenant_id, key).await {
        tracing::error!(error = %err, "could not release idempotency key");
    }
}

fn replay(pinned: IdempotentResponse) -> Response {
    let status = StatusCode::from_u16(pinned.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = if status.is_success() {
        json_response(status, pinned.body)
    } else {
        problem_response(status, pinned.body)
    };
    response
        .headers_mut()
        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    response
}

/// A JSON answer from bytes already serialised (pinned answers are replayed as stored).
pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_hash_ignores_key_order_and_spacing() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"a":1,"b":{"c":[1,2]}}"#).expect("json");
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "b": {"c": [1, 2]}, "a": 1 }"#).expect("json");
        let c: serde_json::Value =
            serde_json::from_str(r#"{"a":2,"b":{"c":[1,2]}}"#).expect("json");
        assert_eq!(request_hash(&a), request_hash(&b));
        assert_ne!(request_hash(&a), request_hash(&c));
    }
}
