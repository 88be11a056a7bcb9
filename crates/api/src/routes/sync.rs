//! The sync engine's HTTP surface: an appointment's sync picture with its attempt log,
//! the ops resync, the tenant's sync health, and the signed Cal.com webhook receiver.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use calcom_client::CalcomError;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use phasebook_domain::sync::{
    CalcomAnswer, CalcomChange, ChangeVerdict, ReviewSubject, change_confirmed, judge_calcom_change,
};
use phasebook_domain::{CalcomUserId, EventTypeId};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Path, Query, RawBody};
use crate::state::AppState;
use crate::store::StoreError;
use crate::store::sync::{BookedSegment, SyncHealth, SyncStore, SyncView};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(get_sync))
        .routes(routes!(resync))
        .routes(routes!(resync_many))
        .routes(routes!(sync_health))
        .routes(routes!(calcom_webhook))
}

fn internal(err: StoreError) -> ApiError {
    ApiError::from(err)
}

/// An appointment's sync status, per segment, with one row per call made to Cal.com.
#[utoipa::path(get, path = "/appointments/{appointment_id}/sync", tag = "sync",
    params(("appointment_id" = Uuid, Path, description = "The appointment")),
    responses(
        (status = 200, body = SyncView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn get_sync(
    State(state): State<AppState>,
    caller: Caller,
    Path(appointment_id): Path<Uuid>,
) -> Result<axum::Json<SyncView>, ApiError> {
    caller.require(Permission::Read)?;
    state
        .sync
        .store()
        .sync_view(caller.tenant_id, appointment_id)
        .await
        .map_err(internal)?
        .map(axum::Json)
        .ok_or(ApiError::NotFound {
            what: "appointment",
        })
}

/// Retries an appointment's sync (ops). Safe to repeat: event maps are re-validated,
/// booked segments are checked in Cal.com (a missing one is booked again), only what is not
/// booked is retried, and nothing is ever booked twice.
#[utoipa::path(post, path = "/resync/{appointment_id}", tag = "sync",
    params(("appointment_id" = Uuid, Path, description = "The appointment")),
    responses(
        (status = 202, body = SyncView, description = "The resync is queued; the body is the sync status now"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
pub(crate) async fn resync(
    State(state): State<AppState>,
    caller: Caller,
    Path(appointment_id): Path<Uuid>,
) -> Result<(StatusCode, axum::Json<SyncView>), ApiError> {
    caller.require(Permission::Operate)?;
    let store = state.sync.store();
    store
        .request_sync(caller.tenant_id, appointment_id, Utc::now(), true)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound {
            what: "appointment",
        })?;
    state.sync.wake();
    tracing::info!(appointment_id = %appointment_id, "resync requested");
    let view = store
        .sync_view(caller.tenant_id, appointment_id)
        .await
        .map_err(internal)?
        .ok_or(ApiError::NotFound {
            what: "appointment",
        })?;
    Ok((StatusCode::ACCEPTED, axum::Json(view)))
}

/// Which appointments a bulk resync retries.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResyncFilter {
    /// `calcom_unavailable`: every appointment in review only because Cal.com could not be
    /// reached or kept failing (nothing for a person to fix), e.g. after an outage.
    #[param(inline)]
    pub reason: ResyncReason,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    CalcomUnavailable,
}

/// What a bulk resync queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncQueued {
    pub queued: usize,
    pub appointment_ids: Vec<Uuid>,
}

/// Retries every appointment matching the filter (ops), as `POST /resync/{id}` would one
/// by one; safe to repeat.
#[utoipa::path(post, path = "/resync", tag = "sync",
    params(ResyncFilter),
    responses(
        (status = 202, body = ResyncQueued),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Missing or unknown `reason`")
    ))]
async fn resync_many(
    State(state): State<AppState>,
    caller: Caller,
    Query(filter): Query<ResyncFilter>,
) -> Result<(StatusCode, axum::Json<ResyncQueued>), ApiError> {
    caller.require(Permission::Operate)?;
    let ResyncReason::CalcomUnavailable = filter.reason;
    let store = state.sync.store();
    let ids = store
        .reviews_waiting_for_calcom(caller.tenant_id)
        .await
        .map_err(internal)?;
    let now = Utc::now();
    for &id in &ids {
        store
            .request_sync(caller.tenant_id, id, now, true)
            .await
            .map_err(internal)?;
    }
    if !ids.is_empty() {
        state.sync.wake();
    }
    tracing::info!(
        queued = ids.len(),
        "bulk resync of appointments waiting for Cal.com"
    );
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(ResyncQueued {
            queued: ids.len(),
            appointment_ids: ids,
        }),
    ))
}

/// Counts by sync status, the success rate of Cal.com calls over 24 h, the oldest due job
/// and how many appointments need a person.
#[utoipa::path(get, path = "/sync/health", tag = "sync",
    responses(
        (status = 200, body = SyncHealth),
        (status = 401, body = Problem, content_type = "application/problem+json")
    ))]
async fn sync_health(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<SyncHealth>, ApiError> {
    caller.require(Permission::Read)?;
    state
        .sync
        .store()
        .sync_health(caller.tenant_id, Utc::now())
        .await
        .map(axum::Json)
        .map_err(internal)
}

/// The header Cal.com signs webhooks with (hex HMAC-SHA256 of the raw body).
pub const SIGNATURE_HEADER: &str = "x-cal-signature-256";

/// What the receiver did with a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookOutcome {
    /// `flagged` (an appointment now needs review), `cancelled` (a cancelled appointment's
    /// booking is confirmed gone) or `ignored` (not about a booking of ours, or nothing to do).
    pub outcome: &'static str,
    pub appointment_id: Option<Uuid>,
    pub segment_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    trigger_event: String,
    #[serde(default)]
    payload: Payload,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    uid: Option<String>,
    booking_id: Option<i64>,
    start_time: Option<String>,
    cancellation_reason: Option<String>,
    reschedule_uid: Option<String>,
    reschedule_id: Option<i64>,
}

/// Verifies `signature` (lower-case hex) against the raw body, in constant time.
pub fn signature_matches(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = hex::decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

/// Records what a change made in Cal.com means for the segment; answers the outcome's name.
async fn apply_verdict(
    store: &dyn SyncStore,
    tenant_id: Uuid,
    segment: &BookedSegment,
    verdict: ChangeVerdict,
    new_booking: Option<(&str, Option<i64>)>,
    now: DateTime<Utc>,
) -> Result<&'static str, ApiError> {
    match verdict {
        ChangeVerdict::CancelConfirmed { record } => {
            if record {
                store
                    .mark_segment_cancelled(
                        tenant_id,
                        segment.appointment_id,
                        &segment.segment_key,
                        now,
                    )
                    .await
                    .map_err(internal)?;
            }
            Ok("cancelled")
        }
        ChangeVerdict::Review(reason) => {
            store
                .review_segment(
                    tenant_id,
                    segment.appointment_id,
                    &segment.segment_key,
                    &reason,
                    new_booking,
                    now,
                )
                .await
                .map_err(internal)?;
            tracing::warn!(appointment_id = %segment.appointment_id, segment = %segment.segment_key, "booking changed in Cal.com; appointment flagged for review");
            Ok("flagged")
        }
    }
}

fn subject(segment: &BookedSegment) -> ReviewSubject {
    ReviewSubject {
        appointment_id: segment.appointment_id,
        service_id: segment.service_id.clone(),
        segment_key: segment.segment_key.clone(),
        staff_id: segment.staff_id.clone(),
        calcom_username: segment.calcom_username.clone().unwrap_or_default(),
        calcom_user_id: CalcomUserId(segment.calcom_user_id.unwrap_or_default()),
        event_type_id: None::<EventTypeId>,
        starts_at: segment.starts_at,
        time_zone: segment.time_zone.parse().ok(),
    }
}

/// Asks Cal.com about the booking a webhook names, with the tenant's own key.
async fn ask_calcom(state: &AppState, tenant_id: Uuid, uid: Option<&str>) -> CalcomAnswer {
    let Some(uid) = uid.filter(|u| !u.is_empty()) else {
        return CalcomAnswer::Gone;
    };
    let tenant = match state.db.event_maps().tenant_calcom(tenant_id).await {
        Ok(Some(tenant)) => tenant,
        _ => return CalcomAnswer::Unknown,
    };
    let Ok(client) = crate::event_maps::shared_client_for(&tenant, state.sync.budgets(), false)
    else {
        return CalcomAnswer::Unknown;
    };
    match client.get_booking(uid).await {
        Ok(booking) => CalcomAnswer::Booking(crate::sync::engine::observe(&booking)),
        Err(CalcomError::NotFound { .. }) => CalcomAnswer::Gone,
        Err(err) => {
            tracing::warn!(tenant_id = %tenant_id, error = %err, "could not confirm a webhook with Cal.com; believing it");
            CalcomAnswer::Unknown
        }
    }
}

/// Receives Cal.com's webhooks for one tenant. A booking of ours cancelled in Cal.com
/// flags its appointment for review (or, if the appointment is cancelled too, confirms the
/// cancel); a booking moved in Cal.com points the segment at the new booking and flags the
/// appointment, since the calendar no longer matches it.
#[utoipa::path(post, path = "/webhooks/calcom/{tenant_id}", tag = "sync",
    params(("tenant_id" = Uuid, Path, description = "The tenant the webhook was registered for")),
    request_body(content = Object, description = "Cal.com's webhook delivery, signed in `X-Cal-Signature-256`"),
    security(()),
    responses(
        (status = 200, body = WebhookOutcome),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json")
    ))]
async fn calcom_webhook(
    State(state): State<AppState>,
    Path(tenant_id): Path<Uuid>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<axum::Json<WebhookOutcome>, ApiError> {
    let store = state.sync.store();
    // An unknown tenant has no secrets and is refused exactly like a bad signature, so the
    // answer does not tell a stranger which tenants exist. During a rotation's grace period
    // the previous secret is accepted too.
    let secrets = state
        .db
        .keys()
        .webhook_secrets(tenant_id, Utc::now())
        .await?;
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !secrets.iter().any(|secret| {
        signature_matches(
            secrecy::ExposeSecret::expose_secret(secret),
            &body,
            signature,
        )
    }) {
        tracing::warn!(tenant_id = %tenant_id, "webhook refused: unknown tenant or bad signature");
        return Err(ApiError::Unauthorized);
    }
    let delivery: Delivery =
        serde_json::from_slice(&body).map_err(|e| ApiError::MalformedRequest {
            detail: format!("not a Cal.com webhook delivery: {e}"),
            field: None,
        })?;
    // Any booking change in Cal.com changes its free time: availability reads it afresh.
    state.free_time.invalidate(tenant_id);
    let ignored = || WebhookOutcome {
        outcome: "ignored",
        appointment_id: None,
        segment_key: None,
    };
    let now = Utc::now();
    let payload = &delivery.payload;
    let outcome = match delivery.trigger_event.as_str() {
        "BOOKING_CANCELLED" => {
            let found = store
                .find_booked_segment(tenant_id, payload.uid.as_deref(), payload.booking_id)
                .await
                .map_err(internal)?
                .filter(not_our_own_move);
            match found {
                Some(segment) => {
                    let key = segment.segment_key.to_string();
                    let booking_uid = segment
                        .calcom_booking_uid
                        .as_deref()
                        .or(payload.uid.as_deref())
                        .unwrap_or_default();
                    let change = CalcomChange::Cancelled {
                        booking_uid,
                        cancellation_reason: payload.cancellation_reason.as_deref(),
                    };
                    let answer = ask_calcom(&state, tenant_id, payload.uid.as_deref()).await;
                    let outcome = if change_confirmed(&change, &answer) {
                        let verdict = judge_calcom_change(
                            segment.desired,
                            segment.status,
                            &subject(&segment),
                            change,
                        );
                        apply_verdict(store.as_ref(), tenant_id, &segment, verdict, None, now)
                            .await?
                    } else {
                        tracing::warn!(appointment_id = %segment.appointment_id, segment = %segment.segment_key, "webhook says cancelled but Cal.com still holds the booking; ignored");
                        "ignored"
                    };
                    WebhookOutcome {
                        outcome,
                        appointment_id: Some(segment.appointment_id),
                        segment_key: Some(key),
                    }
                }
                None => ignored(),
            }
        }
        "BOOKING_RESCHEDULED" => {
            let found = store
                .find_booked_segment(
                    tenant_id,
                    payload.reschedule_uid.as_deref(),
                    payload.reschedule_id,
                )
                .await
                .map_err(internal)?
                .filter(not_our_own_move);
            let new_start = payload
                .start_time
                .as_deref()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|s| s.with_timezone(&Utc));
            match (found, payload.uid.as_deref()) {
                (Some(segment), Some(new_uid)) => {
                    let key = segment.segment_key.to_string();
                    let change = CalcomChange::Rescheduled {
                        new_uid,
                        new_start: new_start.unwrap_or(segment.starts_at),
                    };
                    let answer = ask_calcom(&state, tenant_id, Some(new_uid)).await;
                    let outcome = if change_confirmed(&change, &answer) {
                        let verdict = judge_calcom_change(
                            segment.desired,
                            segment.status,
                            &subject(&segment),
                            change,
                        );
                        let new_booking = Some((new_uid, payload.booking_id));
                        apply_verdict(
                            store.as_ref(),
                            tenant_id,
                            &segment,
                            verdict,
                            new_booking,
                            now,
                        )
                        .await?
                    } else {
                        tracing::warn!(appointment_id = %segment.appointment_id, segment = %segment.segment_key, "webhook says moved but Cal.com has no such booking; ignored");
                        "ignored"
                    };
                    WebhookOutcome {
                        outcome,
                        appointment_id: Some(segment.appointment_id),
                        segment_key: Some(key),
                    }
                }
                _ => ignored(),
            }
        }
        _ => ignored(),
    };
    Ok(axum::Json(outcome))
}

/// Loop safety: while phasebook itself moves a segment's booking (a reschedule), Cal.com's
/// webhooks about the old booking are the echo of that move, not a change made by someone
/// else; once the move is recorded the old uid names no segment any more.
fn not_our_own_move(segment: &BookedSegment) -> bool {
    if segment.moving_from.is_some() {
        tracing::info!(appointment_id = %segment.appointment_id, segment = %segment.segment_key, "webhook about a booking phasebook is moving; ignored");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_on_the_raw_body() {
        let secret = "whsec";
        let body = br#"{"triggerEvent":"BOOKING_CANCELLED"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        assert!(signature_matches(secret, body, &good));
        assert!(!signature_matches(secret, b"{}", &good));
        assert!(!signature_matches("other", body, &good));
        assert!(!signature_matches(secret, body, "no-secret-provided"));
    }
}
