//! `POST /appointments/{appointment_id}/reschedule`: moves an appointment to a new time (and, if asked,
//! to other staff) keeping its id. Planned and pre-flighted like a new booking; the store
//! swaps the plan in one transaction, judged against every other appointment and live hold
//! but not the appointment's own current time; the sync engine then moves each segment's
//! Cal.com booking exactly once (`sync/engine/moves.rs`).

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SubsecRound, Utc};
use phasebook_domain::plan::{assign_staff, parse_time_zone};
use phasebook_domain::preflight::{Booking, check_booking};
use phasebook_domain::sync::reschedule::{RescheduleRefusal, may_reschedule};
use phasebook_domain::{PlannedSegment, SegmentKey, StaffId, StartTime, plan_appointment};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, parse_json};
use crate::idempotency::{self, json_response};
use crate::routes::appointments::{SegmentAssignment, live_hold};
use crate::routes::booking::{load_service_context, load_staff};
use crate::routes::prefer;
use crate::routes::views::AppointmentView;
use crate::state::AppState;
use crate::store::reschedule::{AppointmentMove, MoveOutcome};

/// How long a move waits for a sync run of the same appointment to end.
const WAIT_FOR_RUNNING_SYNC: Duration = Duration::from_secs(10);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(reschedule_appointment))
}

/// A move. Segments keep their staff members unless `staff_id` or `segments` says
/// otherwise.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleAppointment {
    /// RFC 3339 with an offset, or a local date-time read in `time_zone`. Required unless
    /// `hold_id` is given (then, if given, it must be the hold's start).
    #[serde(default)]
    pub start: Option<String>,
    /// IANA time zone; defaults to the appointment's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Performs every segment from now on, unless `segments` assigns another.
    #[serde(default)]
    pub staff_id: Option<String>,
    /// Per-segment staff assignments, by segment key.
    #[serde(default)]
    pub segments: Vec<SegmentAssignment>,
    /// Moves to exactly the times of this hold (`POST /holds`, same service); the hold
    /// ends as booked by this appointment.
    #[serde(default)]
    pub hold_id: Option<String>,
}

fn refused(refusal: RescheduleRefusal) -> ApiError {
    let (slug, title, detail) = match refusal {
        RescheduleRefusal::Cancelled => (
            "appointment-cancelled",
            "Appointment cancelled",
            "The appointment was cancelled and cannot be moved; book a new one.",
        ),
        RescheduleRefusal::Started => (
            "appointment-started",
            "Appointment started",
            "The appointment has begun (or is over) and its time cannot change any more.",
        ),
    };
    ApiError::Typed {
        status: StatusCode::CONFLICT,
        slug,
        title,
        detail: detail.to_string(),
        field: None,
        retry_after: None,
    }
}

fn sync_running() -> ApiError {
    ApiError::Typed {
        status: StatusCode::SERVICE_UNAVAILABLE,
        slug: "sync-in-progress",
        title: "Sync in progress",
        detail: "The appointment's Cal.com sync is running and did not end in time; send the same request again.".to_string(),
        field: None,
        retry_after: Some(1),
    }
}

/// Plans the move: the rules are the domain's (planning, pre-flight).
async fn plan_move(
    state: &AppState,
    caller: &Caller,
    id: Uuid,
    request: &RescheduleAppointment,
    now: DateTime<Utc>,
) -> Result<AppointmentMove, ApiError> {
    let not_found = || ApiError::NotFound {
        what: "appointment",
    };
    let current = state
        .store
        .get_appointment(caller.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    may_reschedule(current.status, current.starts_at, now).map_err(refused)?;
    let hold = match request.hold_id.as_deref() {
        None => None,
        Some(raw) => {
            let hold = live_hold(state, caller, raw, now).await?;
            if hold.service_id != current.service_id {
                return Err(ApiError::validation(
                    "hold_id",
                    "hold_mismatch",
                    "the hold is for another service than the appointment's",
                ));
            }
            Some(hold)
        }
    };
    let staff_id = match (&hold, &request.staff_id) {
        (_, Some(given)) => StaffId::parse(given).map_err(|e| e.within("staff_id"))?,
        (Some(h), None) => h.staff_id.clone(),
        (None, None) => current.staff_id.clone(),
    };
    let context = load_service_context(state, caller.tenant_id, &current.service_id).await?;
    // Refuses an unknown staff member with the same answer as a booking.
    load_staff(state, caller.tenant_id, &staff_id, "staff_id").await?;
    let mut overrides = request
        .segments
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok((
                SegmentKey::parse(&s.key).map_err(|e| e.within(&format!("segments[{i}].key")))?,
                StaffId::parse(&s.staff_id)
                    .map_err(|e| e.within(&format!("segments[{i}].staff_id")))?,
            ))
        })
        .collect::<Result<Vec<_>, phasebook_domain::FieldError>>()?;
    // Nothing said about staff: every segment keeps the staff member it has.
    if request.staff_id.is_none() && request.segments.is_empty() && hold.is_none() {
        overrides = current
            .segments
            .iter()
            .filter(|s| s.staff_id != staff_id)
            .map(|s| (s.key.clone(), s.staff_id.clone()))
            .collect();
    }
    for (i, (_, other)) in overrides.iter().enumerate() {
        if other != &staff_id
            && state
                .store
                .get_staff(caller.tenant_id, other)
                .await?
                .is_none()
        {
            return Err(ApiError::validation(
                format!("segments[{i}].staff_id"),
                "unknown_staff",
                format!("there is no staff member {other:?}"),
            ));
        }
    }
    let (time_zone, segments) = match &hold {
        Some(hold) => {
            if hold.staff_id != staff_id || !request.segments.is_empty() {
                return Err(ApiError::validation(
                    "hold_id",
                    "hold_mismatch",
                    "staff_id and segments come from the hold; leave them out",
                ));
            }
            let planned: Vec<PlannedSegment> =
                hold.segments.iter().map(|s| s.segment.clone()).collect();
            if let Some(start) = &request.start {
                let zone =
                    parse_time_zone(request.time_zone.as_deref().unwrap_or(&hold.time_zone))?;
                let at = StartTime::parse(start)?.resolve(zone)?.trunc_subsecs(3);
                if planned.first().map(|s| s.starts_at) != Some(at) {
                    return Err(ApiError::validation(
                        "start",
                        "hold_mismatch",
                        "start differs from the hold's; leave it out or send the hold's",
                    ));
                }
            }
            (hold.time_zone.clone(), planned)
        }
        None => {
            let zone_name = request
                .time_zone
                .clone()
                .unwrap_or_else(|| current.time_zone.clone());
            let zone = parse_time_zone(&zone_name)?;
            let start = request.start.as_deref().ok_or_else(|| {
                ApiError::validation(
                    "start",
                    "required",
                    "start is required unless hold_id is given",
                )
            })?;
            let starts_at = StartTime::parse(start)?.resolve(zone)?.trunc_subsecs(3);
            let assigned = assign_staff(&context.service.service, &staff_id, &overrides)?;
            let planned = plan_appointment(&context.service.service, starts_at, &assigned);
            (zone.name().to_string(), planned)
        }
    };
    check_booking(
        &Booking {
            service_id: &current.service_id,
            staff_id: &staff_id,
            plan: &segments,
            performers: &context.performers,
            mapped: &context.mapped(),
            unverified: &context.unverified(),
            horizon_days: context.settings.horizon_days,
        },
        now,
    )?;
    Ok(AppointmentMove {
        tenant_id: caller.tenant_id,
        appointment_id: id,
        staff_id,
        time_zone,
        segments,
        // The hold's time passes to the appointment inside the move's own transaction: a
        // move that is refused keeps the caller's hold.
        hold_id: hold.as_ref().map(|h| h.hold_id),
        now,
    })
}

/// Plans and stores the move, waiting for a running sync of the appointment to end first.
async fn reschedule(
    state: AppState,
    caller: Caller,
    id: Uuid,
    request: RescheduleAppointment,
) -> Result<Response, ApiError> {
    let now = Utc::now().trunc_subsecs(3);
    let mut change = plan_move(&state, &caller, id, &request, now).await?;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_RUNNING_SYNC;
    loop {
        match state.db.reschedules().move_appointment(&change).await? {
            MoveOutcome::Moved { revision } => {
                state.free_time.invalidate(caller.tenant_id);
                state.sync.wake();
                metrics::counter!("phasebook_appointments_rescheduled_total").increment(1);
                tracing::info!(revision, "appointment rescheduled");
                break;
            }
            MoveOutcome::NotFound => {
                return Err(ApiError::NotFound {
                    what: "appointment",
                });
            }
            MoveOutcome::Refused(refusal) => return Err(refused(refusal)),
            MoveOutcome::SyncRunning if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                change.now = Utc::now().trunc_subsecs(3);
            }
            MoveOutcome::SyncRunning => return Err(sync_running()),
        }
    }
    let appointment = state
        .store
        .get_appointment(caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound {
            what: "appointment",
        })?;
    let body = serde_json::to_vec(&AppointmentView::from(&appointment)).unwrap_or_default();
    Ok(json_response(StatusCode::OK, body))
}

/// Moves an appointment (agent, ops): same id, new times, `revision` one higher. With
/// `Idempotency-Key`, a retry with the same body gets the first answer again with
/// `Idempotent-Replayed: true`. In Cal.com every segment is moved exactly once.
#[utoipa::path(post, path = "/appointments/{appointment_id}/reschedule", tag = "appointments",
    params(
        ("appointment_id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Unique per move; kept 24 h"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 10): answer once the Cal.com sync is final or after N seconds")
    ),
    request_body = RescheduleAppointment,
    responses(
        (status = 200, body = AppointmentView),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such appointment or hold"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Double booking (another appointment or a hold holds the new time; names `conflicting_appointment_id`), `appointment-cancelled`, `appointment-started`, or the same Idempotency-Key is in flight"),
        (status = 410, body = Problem, content_type = "application/problem+json", description = "`hold-expired` or `hold-released`"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid request (names `field`) or a pre-flight refusal with its own `type`, as on create"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "`sync-in-progress`: the appointment's sync did not end within 10 s; retry")
    ))]
pub(crate) async fn reschedule_appointment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let id = crate::extract::path_uuid("appointment_id", &id)?;
    tracing::Span::current().record("appointment_id", tracing::field::display(id));
    let key = idempotency::key_from(&headers)?;
    let wait = prefer::requested_wait(&headers);
    // The key is scoped to this appointment's moves: the same key on another appointment
    // is another request.
    let hash =
        idempotency::request_hash(&serde_json::json!({"reschedule": id.to_string(), "body": body}));
    let request: RescheduleAppointment =
        parse_json(&serde_json::to_vec(&body).unwrap_or_default())?;
    let Some(key) = key else {
        let response = reschedule(state.clone(), caller, id, request)
            .await
            .unwrap_or_else(IntoResponse::into_response);
        return Ok(prefer::answer(&state, caller.tenant_id, wait, response).await);
    };
    if let Some(replayed) =
        idempotency::claim(&state, caller.tenant_id, &key, &hash, Utc::now()).await?
    {
        return Ok(replayed);
    }
    // Runs to the end even if the client goes away, so the key ends settled.
    let task_state = state.clone();
    let span = tracing::Span::current();
    let outcome = tokio::spawn(tracing::Instrument::instrument(
        reschedule(task_state, caller, id, request),
        span,
    ))
    .await
    .unwrap_or_else(|err| Err(ApiError::Internal(format!("reschedule task failed: {err}"))));
    let response = match outcome {
        Ok(response) => {
            // A move's answer is pinned as sent: read it once, keep the bytes, send them.
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .map_err(|e| ApiError::Internal(format!("reading the answer: {e}")))?;
            let status = parts.status;
            idempotency::settle(&state, caller.tenant_id, &key, status, bytes.to_vec()).await;
            Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(err) => {
            idempotency::settle(
                &state,
                caller.tenant_id,
                &key,
                err.status(),
                err.body_bytes(),
            )
            .await;
            err.into_response()
        }
    };
    Ok(prefer::answer(&state, caller.tenant_id, wait, response).await)
}
