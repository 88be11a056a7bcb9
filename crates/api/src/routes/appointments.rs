//! `POST /appointments` (with `Idempotency-Key`), `GET /appointments/{appointment_id}`,
//! `GET /appointments` (filters and cursor pagination) and `POST /appointments/{appointment_id}/cancel`.
//! The domain plans the segments; the store writes appointment, segments and outbox job
//! in one transaction.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SubsecRound, Utc};
use phasebook_domain::appointment::{email_lookup_form, parse_cancellation_reason, parse_notes};
use phasebook_domain::phone::{Country, normalise_phone};
use phasebook_domain::plan::{assign_staff, parse_time_zone};
use phasebook_domain::preflight::{Booking, check_booking, check_contact};
use phasebook_domain::sync::AppointmentSyncStatus;
use phasebook_domain::{
    Customer, PlannedSegment, SegmentKey, StaffId, StartTime, plan_appointment,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, MAX_BODY_BYTES, Path, Query, parse_json, path_uuid};
use crate::idempotency;
use crate::routes::booking::load_booking_context;
use crate::routes::prefer;
use crate::routes::services::parse_service_id;
use crate::routes::views::AppointmentView;
use crate::state::AppState;
use crate::store::holds::{HoldConversion, HoldStatus};
use crate::store::{
    AppointmentQuery, IdempotencyClaim, IdempotentResponse, KeyedAnswer, NewAppointment, Role,
};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_appointment, list_appointments))
        .routes(routes!(get_appointment, update_appointment))
        .routes(routes!(cancel_appointment))
}

/// A booking request.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppointment {
    /// Required unless `hold_id` is given (then it must match the hold's).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub service_id: Option<String>,
    /// Performs every segment unless `segments` assigns another staff member. Required
    /// unless `hold_id` is given (then it must match the hold's).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub staff_id: Option<String>,
    /// RFC 3339 with an offset, or a local date-time (`2026-05-04T09:00`) read in
    /// `time_zone`. A local time skipped or repeated by a DST change is refused. Required
    /// unless `hold_id` is given (then, if given, it must be the hold's start).
    #[serde(default)]
    pub start: Option<String>,
    /// Books exactly the times of this hold (`POST /holds`); `410 hold-expired` after it
    /// expired.
    #[serde(default)]
    #[schema(format = Uuid)]
    pub hold_id: Option<String>,
    /// IANA time zone; defaults to the staff member's.
    #[serde(default)]
    pub time_zone: Option<String>,
    pub customer: CustomerRequest,
    #[serde(default)]
    pub notes: Option<String>,
    /// Per-segment staff assignments, by segment key.
    #[serde(default)]
    pub segments: Vec<SegmentAssignment>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerRequest {
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// International (`+4915123456789`, `0049…`) or, when the tenant has a country, a
    /// national number; stored in E.164. An e-mail address or a phone number is required.
    #[serde(default)]
    pub phone: Option<String>,
}

impl std::fmt::Debug for CustomerRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerRequest { <redacted> }")
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentAssignment {
    #[schema(min_length = 1, max_length = 16, pattern = "^[A-Za-z0-9._-]+$")]
    pub key: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub staff_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppointmentPage {
    pub items: Vec<AppointmentView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn record_appointment_id(id: Uuid) {
    tracing::Span::current().record("appointment_id", tracing::field::display(id));
}

fn required<'a>(value: &'a Option<String>, field: &str) -> Result<&'a str, ApiError> {
    value.as_deref().ok_or_else(|| {
        ApiError::validation(
            field,
            "required",
            format!("{field} is required unless hold_id is given"),
        )
    })
}

fn hold_problem(
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
) -> ApiError {
    ApiError::Typed {
        status,
        slug,
        title,
        detail,
        field: Some("hold_id".to_string()),
        retry_after: None,
    }
}

/// The hold a request names by `hold_id`, when it still holds its time.
pub(crate) async fn live_hold(
    state: &AppState,
    caller: &Caller,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<crate::store::holds::Hold, ApiError> {
    let id = Uuid::parse_str(raw.trim()).map_err(|_| {
        ApiError::validation(
            "hold_id",
            "invalid_hold_id",
            "hold_id is the id POST /holds answered",
        )
    })?;
    let hold = state
        .db
        .booking()
        .get_hold(caller.tenant_id, id)
        .await?
        .ok_or(ApiError::NotFound { what: "hold" })?;
    match hold.status {
        HoldStatus::Held if hold.expires_at <= now => Err(hold_expired()),
        HoldStatus::Held => Ok(hold),
        other => Err(hold_ended(other)),
    }
}

pub(crate) fn hold_expired() -> ApiError {
    hold_problem(
        StatusCode::GONE,
        "hold-expired",
        "Hold expired",
        "The hold is past its expires_at and blocks nothing any more; search again and hold a new option.".to_string(),
    )
}

pub(crate) fn hold_ended(status: HoldStatus) -> ApiError {
    match status {
        HoldStatus::Booked => hold_problem(
            StatusCode::CONFLICT,
            "hold-already-booked",
            "Hold already booked",
            "The hold was already turned into an appointment (its appointment_id is on GET /holds/{hold_id}).".to_string(),
        ),
        _ => hold_problem(
            StatusCode::GONE,
            "hold-released",
            "Hold released",
            "The hold was released and blocks nothing any more; search again and hold a new option.".to_string(),
        ),
    }
}

/// Turns a booking request into a planned appointment: the rules are the domain's
/// (planning, pre-flight); this only loads what they need. With `hold_id` the plan is the
/// hold's, to the millisecond.
async fn plan(
    state: &AppState,
    caller: &Caller,
    request: CreateAppointment,
    now: DateTime<Utc>,
) -> Result<(NewAppointment, Option<Uuid>), ApiError> {
    let hold = match request.hold_id.as_deref() {
        None => None,
        Some(raw) => Some(live_hold(state, caller, raw, now).await?),
    };
    let service_id = match (&hold, &request.service_id) {
        (Some(h), None) => h.service_id.clone(),
        (_, given) => parse_service_id(required(given, "service_id")?)?,
    };
    let staff_id = match (&hold, &request.staff_id) {
        (Some(h), None) => h.staff_id.clone(),
        (_, given) => {
            StaffId::parse(required(given, "staff_id")?).map_err(|e| e.within("staff_id"))?
        }
    };
    // Every staff member the request names is read with the service, in one statement;
    // a malformed override is reported below, in its turn.
    let mut named = vec![staff_id.clone()];
    named.extend(
        request
            .segments
            .iter()
            .filter_map(|s| StaffId::parse(&s.staff_id).ok())
            .filter(|id| id != &staff_id),
    );
    let context = load_booking_context(state, caller.tenant_id, &service_id, &named).await?;
    let country = context
        .settings
        .country
        .as_deref()
        .map(Country::parse)
        .transpose()
        .map_err(|e| ApiError::Internal(format!("stored tenant country: {e}")))?;
    let phone = request
        .customer
        .phone
        .as_deref()
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| normalise_phone(p, country))
        .transpose()
        .map_err(|e| e.within("customer"))?;
    let customer = Customer::new(
        &request.customer.name,
        request.customer.email.as_deref(),
        phone.as_deref(),
    )
    .map_err(|e| e.within("customer"))?;
    let notes = parse_notes(request.notes.as_deref())?;
    let overrides = request
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

    let staff = context.staff_member(&staff_id, "staff_id")?;
    for (i, (_, other)) in overrides.iter().enumerate() {
        if other != &staff_id && !context.has_staff(other) {
            return Err(ApiError::validation(
                format!("segments[{i}].staff_id"),
                "unknown_staff",
                format!("there is no staff member {other:?}"),
            ));
        }
    }
    let (time_zone, segments, checked_at) = match &hold {
        Some(hold) => {
            let mismatch = |field: &str, what: &str| {
                ApiError::validation(
                    field,
                    "hold_mismatch",
                    format!("{what} differs from the hold's; leave it out or send the hold's"),
                )
            };
            if hold.service_id != service_id {
                return Err(mismatch("service_id", "service_id"));
            }
            if hold.staff_id != staff_id {
                return Err(mismatch("staff_id", "staff_id"));
            }
            if !request.segments.is_empty() {
                return Err(mismatch("segments", "segments"));
            }
            let planned: Vec<PlannedSegment> =
                hold.segments.iter().map(|s| s.segment.clone()).collect();
            if let Some(start) = &request.start {
                let zone =
                    parse_time_zone(request.time_zone.as_deref().unwrap_or(&hold.time_zone))?;
                let at = StartTime::parse(start)?.resolve(zone)?.trunc_subsecs(3);
                if planned.first().map(|s| s.starts_at) != Some(at) {
                    return Err(mismatch("start", "start"));
                }
            }
            // The hold passed the timing checks when it was made; staff and maps are
            // checked again in case they changed since.
            (hold.time_zone.clone(), planned, hold.created_at)
        }
        None => {
            let zone_name = request.time_zone.clone().unwrap_or(staff.time_zone.clone());
            let zone = parse_time_zone(&zone_name)?;
            // Instants are kept to the millisecond, the precision both backends store.
            let starts_at = StartTime::parse(required(&request.start, "start")?)?
                .resolve(zone)?
                .trunc_subsecs(3);
            let assigned = assign_staff(&context.service.service, &staff_id, &overrides)?;
            let segments = plan_appointment(&context.service.service, starts_at, &assigned);
            (zone.name().to_string(), segments, now)
        }
    };
    check_booking(
        &Booking {
            service_id: &service_id,
            staff_id: &staff_id,
            plan: &segments,
            performers: &context.performers,
            mapped: &context.mapped(),
            unverified: &context.unverified(),
            horizon_days: context.settings.horizon_days,
        },
        checked_at,
    )?;
    check_contact(customer.email().is_some(), customer.phone().is_some())?;
    Ok((
        NewAppointment {
            appointment_id: Uuid::now_v7(),
            tenant_id: caller.tenant_id,
            service_id,
            staff_id,
            time_zone,
            customer,
            notes,
            segments,
            created_at: now,
            awaited: false,
        },
        hold.map(|h| h.hold_id),
    ))
}

/// How a create holds the request's `Idempotency-Key`.
enum KeyUse {
    None,
    /// Claimed in flight before the create (a hold's booking): the booking's transaction
    /// completes it, and a refusal settles it after.
    Claimed(String),
    /// Claimed by the create's own write with its 201 pinned, or by the refusal's answer.
    WithWrite {
        key: String,
        request_hash: String,
    },
}

/// Plans and stores the appointment, pinning the outcome to the request's key when it has
/// one (see [`KeyUse`]). A 5xx pins nothing so a retry can succeed.
async fn create(
    state: AppState,
    caller: Caller,
    request: CreateAppointment,
    key: KeyUse,
    awaited: bool,
) -> Response {
    let now = Utc::now().trunc_subsecs(3);
    let outcome = match plan(&state, &caller, request, now).await {
        Ok((mut new, hold_id)) => {
            new.awaited = awaited;
            record_appointment_id(new.appointment_id);
            let body =
                serde_json::to_vec(&AppointmentView::from(&new.as_created())).unwrap_or_default();
            let pinned = IdempotentResponse {
                status: StatusCode::CREATED.as_u16(),
                body,
            };
            let stored = match (hold_id, &key) {
                (None, KeyUse::WithWrite { key, request_hash }) => {
                    let answer = KeyedAnswer {
                        key,
                        request_hash,
                        response: &pinned,
                    };
                    state
                        .store
                        .create_appointment(&new, Some(answer))
                        .await
                        .map_err(ApiError::from)
                }
                (None, _) => state
                    .store
                    .create_appointment(&new, None)
                    .await
                    .map_err(ApiError::from),
                (Some(hold_id), _) => {
                    let claimed = match &key {
                        KeyUse::Claimed(key) => Some((key.as_str(), &pinned)),
                        _ => None,
                    };
                    book_hold(&state, caller.tenant_id, hold_id, &new, claimed).await
                }
            };
            match stored.map(|claim| idempotency::taken(&state, claim)) {
                Ok(Ok(None)) => {
                    state.free_time.invalidate(caller.tenant_id);
                    state.sync.wake();
                    metrics::counter!("phasebook_appointments_created_total").increment(1);
                    tracing::info!(segments = new.segments.len(), "appointment created");
                    return idempotency::json_response(StatusCode::CREATED, pinned.body);
                }
                // The key was taken: nothing was written, and the key answers.
                Ok(Ok(Some(replayed))) => return replayed,
                Ok(Err(err)) | Err(err) => err,
            }
        }
        Err(err) => err,
    };
    if let ApiError::DoubleBooking {
        conflicting_appointment_id,
    } = &outcome
    {
        metrics::counter!("phasebook_appointments_double_booking_total").increment(1);
        let conflicting = conflicting_appointment_id.map(|id| id.to_string());
        tracing::info!(
            conflicting_appointment_id = conflicting.as_deref(),
            "double booking refused"
        );
    }
    match &key {
        KeyUse::None => {}
        KeyUse::Claimed(key) => {
            idempotency::settle(
                &state,
                caller.tenant_id,
                key,
                outcome.status(),
                outcome.body_bytes(),
            )
            .await;
        }
        KeyUse::WithWrite { key, request_hash } => {
            let refusal = IdempotentResponse {
                status: outcome.status().as_u16(),
                body: outcome.body_bytes(),
            };
            let answer = KeyedAnswer {
                key,
                request_hash,
                response: &refusal,
            };
            if let Some(first) =
                idempotency::pin_refusal(&state, caller.tenant_id, answer, now).await
            {
                return first;
            }
        }
    }
    outcome.into_response()
}

/// Books the appointment in the hold's time, clearing the hold's Cal.com reservations
/// once it is booked.
async fn book_hold(
    state: &AppState,
    tenant_id: Uuid,
    hold_id: Uuid,
    new: &NewAppointment,
    claimed: Option<(&str, &IdempotentResponse)>,
) -> Result<IdempotencyClaim, ApiError> {
    match state
        .db
        .booking()
        .create_appointment_from_hold(hold_id, new, claimed)
        .await
    {
        Ok(HoldConversion::Booked) => {
            let cleanup = state.clone();
            tokio::spawn(async move {
                if let Ok(Some(hold)) = cleanup.db.booking().get_hold(tenant_id, hold_id).await {
                    crate::routes::holds::clear_reservations_of(&cleanup, &hold, Utc::now()).await;
                }
            });
            Ok(IdempotencyClaim::Claimed)
        }
        Ok(HoldConversion::Expired) => Err(hold_expired()),
        Ok(HoldConversion::Ended(status)) => Err(hold_ended(status)),
        Ok(HoldConversion::Missing) => Err(ApiError::NotFound { what: "hold" }),
        Err(err) => Err(ApiError::from(err)),
    }
}

/// Books an appointment (agent, ops). With `Idempotency-Key`, a retry with the same body
/// gets the first response again, byte for byte, with `Idempotent-Replayed: true`.
#[utoipa::path(post, path = "/appointments", tag = "appointments",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "Unique per booking attempt; kept 24 h"),
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 10): answer once the Cal.com sync is final or after N seconds; `Preference-Applied` echoes the wait and `Phasebook-Sync-Finished` says whether the sync finished")
    ),
    request_body = CreateAppointment,
    responses(
        (status = 201, body = AppointmentView),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json", description = "No such hold"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "Double booking (names `conflicting_appointment_id`), the hold was already booked, or the same Idempotency-Key is in flight"),
        (status = 410, body = Problem, content_type = "application/problem+json", description = "`hold-expired` or `hold-released`: the hold blocks nothing any more"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid request (names `field`); a pre-flight refusal with its own `type`: `staff-does-not-perform-service`, `segment-unmapped`, `customer-unreachable`, `start-in-past`, `start-beyond-horizon`; or Idempotency-Key reused with another body")
    ))]
async fn create_appointment(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Result<Response, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let key = idempotency::key_from(&headers)?;
    let wait = prefer::requested_wait(&headers);
    let hash = idempotency::request_hash(&body);
    let request: CreateAppointment = parse_json(&serde_json::to_vec(&body).unwrap_or_default())?;

    let Some(key) = key else {
        let response = create(state.clone(), caller, request, KeyUse::None, wait.is_some()).await;
        return Ok(prefer::answer(&state, caller.tenant_id, wait, response).await);
    };
    // A hold's booking reads and takes the hold in its own transaction, so its key is
    // claimed in flight first; any other create claims its key with the write.
    let claimed_first = request.hold_id.is_some();
    if claimed_first
        && let Some(replayed) =
            idempotency::claim(&state, caller.tenant_id, &key, &hash, Utc::now()).await?
    {
        return Ok(replayed);
    }
    let key_use = if claimed_first {
        KeyUse::Claimed(key.clone())
    } else {
        KeyUse::WithWrite {
            key: key.clone(),
            request_hash: hash,
        }
    };
    // The work runs to completion in its own task even if the client disconnects, so a
    // claimed key always ends completed or released rather than stuck in flight.
    let tenant_id = caller.tenant_id;
    let span = tracing::Span::current();
    let wait_state = state.clone();
    let task = tokio::spawn(tracing::Instrument::instrument(
        create(state, caller, request, key_use, wait.is_some()),
        span,
    ));
    match task.await {
        Ok(response) => Ok(prefer::answer(&wait_state, tenant_id, wait, response).await),
        Err(err) => {
            if claimed_first {
                idempotency::release(&wait_state, tenant_id, &key).await;
            }
            Err(ApiError::Internal(format!(
                "appointment task failed: {err}"
            )))
        }
    }
}

/// One appointment with its segments and sync status.
#[utoipa::path(get, path = "/appointments/{appointment_id}", tag = "appointments",
    params(("appointment_id" = Uuid, Path)),
    responses(
        (status = 200, body = AppointmentView),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn get_appointment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<AppointmentView>, ApiError> {
    caller.require(Permission::Read)?;
    let not_found = || ApiError::NotFound {
        what: "appointment",
    };
    let id = path_uuid("appointment_id", &id)?;
    record_appointment_id(id);
    let appointment = state
        .store
        .get_appointment(caller.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    Ok(axum::Json(AppointmentView::from(&appointment)))
}

/// A change to the customer's contact details or the notes. A field left out stays as it
/// is; an empty string removes an e-mail, a phone or the notes. Bookings already made in
/// Cal.com keep the details they were made with; segments booked after the change (a
/// resync of a segment in review, say) carry the new ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAppointment {
    #[serde(default)]
    pub customer: Option<CustomerUpdate>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// The customer's details to replace; each one optional.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    /// E.164, e.g. `+4915123456789`.
    #[serde(default)]
    pub phone: Option<String>,
}

impl std::fmt::Debug for CustomerUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CustomerUpdate { <redacted> }")
    }
}

/// Corrects the customer's contact details or the notes (agent, ops), e.g. before a resync
/// of a segment Cal.com refused for the attendee's details.
#[utoipa::path(patch, path = "/appointments/{appointment_id}", tag = "appointments",
    params(("appointment_id" = Uuid, Path)),
    request_body = UpdateAppointment,
    responses(
        (status = 200, body = AppointmentView),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid value (names `field`)")
    ))]
async fn update_appointment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Json(body): Json<serde_json::Value>,
) -> Result<axum::Json<AppointmentView>, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let not_found = || ApiError::NotFound {
        what: "appointment",
    };
    let id = path_uuid("appointment_id", &id)?;
    record_appointment_id(id);
    let request: UpdateAppointment = parse_json(&serde_json::to_vec(&body).unwrap_or_default())?;
    let current = state
        .store
        .get_appointment(caller.tenant_id, id)
        .await?
        .ok_or_else(not_found)?;
    let customer = match &request.customer {
        Some(update) => current
            .customer
            .amended(
                update.name.as_deref(),
                update.email.as_deref(),
                update.phone.as_deref(),
            )
            .map_err(|e| e.within("customer"))?,
        None => current.customer.clone(),
    };
    let notes = match &request.notes {
        Some(notes) => parse_notes(Some(notes))?,
        None => current.notes.clone(),
    };
    let appointment = state
        .store
        .update_appointment_details(
            caller.tenant_id,
            id,
            &customer,
            notes.as_deref(),
            Utc::now().trunc_subsecs(3),
        )
        .await?
        .ok_or_else(not_found)?;
    tracing::info!("appointment details updated");
    Ok(axum::Json(AppointmentView::from(&appointment)))
}

/// A cancellation; the body is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelAppointment {
    /// Why the caller cancelled: one line, at most 500 characters. Sent to Cal.com as the
    /// cancellation reason and shown in `GET /appointments/{appointment_id}/sync`.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Cancels locally (agent, ops): the staff member's time is free at once, and the sync
/// worker cancels every Cal.com booking the appointment owns. Safe to repeat (a repeat
/// keeps the first reason).
#[utoipa::path(post, path = "/appointments/{appointment_id}/cancel", tag = "appointments",
    params(("appointment_id" = Uuid, Path)),
    request_body(content = Option<CancelAppointment>, description = "Optional"),
    responses(
        (status = 200, body = AppointmentView),
        (status = 400, body = Problem, content_type = "application/problem+json", description = "Malformed JSON"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid `reason`")
    ))]
pub(crate) async fn cancel_appointment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    crate::extract::RawBody(body): crate::extract::RawBody,
) -> Result<axum::Json<AppointmentView>, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let not_found = || ApiError::NotFound {
        what: "appointment",
    };
    let id = path_uuid("appointment_id", &id)?;
    record_appointment_id(id);
    let request: CancelAppointment = if body.iter().all(u8::is_ascii_whitespace) {
        CancelAppointment::default()
    } else {
        parse_json(&body)?
    };
    let reason = parse_cancellation_reason(request.reason.as_deref())?;
    let appointment = state
        .store
        .cancel_appointment_with_reason(
            caller.tenant_id,
            id,
            reason.as_deref(),
            Utc::now().trunc_subsecs(3),
        )
        .await?
        .ok_or_else(not_found)?;
    state.free_time.invalidate(caller.tenant_id);
    state.sync.wake();
    tracing::info!("appointment cancelled");
    Ok(axum::Json(AppointmentView::from(&appointment)))
}

/// Query parameters of `GET /appointments`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only appointments with this sync status.
    #[param(schema_with = sync_status_schema)]
    pub sync_status: Option<String>,
    /// Only appointments that do (true) or do not (false) need a human.
    #[param(value_type = Option<bool>)]
    pub requires_manual_review: Option<String>,
    /// Only appointments this staff member works on (any segment).
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub staff_id: Option<String>,
    /// Only appointments ending after this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub from: Option<String>,
    /// Only appointments starting before this instant (RFC 3339).
    #[param(value_type = Option<DateTime<Utc>>)]
    pub to: Option<String>,
    /// Only this caller's appointments: international (`+41791234567`, encoded `%2B41…`,
    /// or `0041…`) or national (`0791234567`, read with the tenant's country); compared in
    /// E.164.
    pub customer_phone: Option<String>,
    /// Only this caller's appointments; compared ignoring case.
    pub customer_email: Option<String>,
    /// The `next_cursor` of the previous page; an empty one is refused (422).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
    /// Page size, 1 to 200 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 200)]
    pub limit: Option<String>,
}

/// `sync_status` as the enum the code accepts.
fn sync_status_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(AppointmentSyncStatus::ALL.iter().map(|s| s.as_str())))
        .build()
}

const CURSOR_VERSION: &str = "v1";

fn encode_cursor(starts_at: DateTime<Utc>, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{CURSOR_VERSION}:{}:{id}",
        starts_at.timestamp_millis()
    ))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let invalid = || {
        ApiError::validation(
            "cursor",
            "invalid_cursor",
            "the cursor is not one this API returned; start again without it",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some(CURSOR_VERSION), Some(ms), Some(id)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid());
    };
    let starts_at = ms
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(invalid)?;
    Ok((starts_at, Uuid::parse_str(id).map_err(|_| invalid())?))
}

fn parse_instant(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::validation(
                field,
                "invalid_instant",
                format!("{field} must be RFC 3339 with an offset, e.g. 2026-05-04T00:00:00Z"),
            )
        })
}

/// The phone number of a caller lookup in E.164. A `+` left unencoded in a query string
/// arrives as a space, so a leading space before digits is read as the `+` it was.
fn lookup_phone(raw: &str, country: Option<Country>) -> Result<String, ApiError> {
    let raw = match raw.strip_prefix(' ') {
        Some(rest) if rest.trim_start().starts_with(|c: char| c.is_ascii_digit()) => {
            format!("+{}", rest.trim_start())
        }
        _ => raw.to_string(),
    };
    normalise_phone(&raw, country).map_err(|mut e| {
        e.field = "customer_phone".to_string();
        ApiError::Validation(e)
    })
}

fn to_query(params: ListParams, country: Option<Country>) -> Result<AppointmentQuery, ApiError> {
    let sync_status = params
        .sync_status
        .map(|s| {
            AppointmentSyncStatus::parse(&s).ok_or_else(|| {
                ApiError::validation(
                    "sync_status",
                    "invalid_sync_status",
                    format!(
                        "{s:?} is not a sync status; expected one of {}",
                        AppointmentSyncStatus::ALL
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )
            })
        })
        .transpose()?;
    let requires_manual_review = params
        .requires_manual_review
        .map(|v| match v.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(ApiError::validation(
                "requires_manual_review",
                "invalid_boolean",
                "requires_manual_review must be true or false",
            )),
        })
        .transpose()?;
    let staff_id = params
        .staff_id
        .map(|s| StaffId::parse(&s).map_err(|e| ApiError::Validation(e.within("staff_id"))))
        .transpose()?;
    let from = params.from.map(|v| parse_instant("from", &v)).transpose()?;
    let to = params.to.map(|v| parse_instant("to", &v)).transpose()?;
    let limit = match params.limit {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_PAGE_SIZE).contains(l))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                )
            })?,
    };
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let customer_phone = params
        .customer_phone
        .as_deref()
        .map(|p| lookup_phone(p, country))
        .transpose()?;
    let customer_email = params
        .customer_email
        .as_deref()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(email_lookup_form);
    Ok(AppointmentQuery {
        sync_status,
        requires_manual_review,
        staff_id,
        from,
        to,
        customer_phone,
        customer_email,
        after,
        limit,
    })
}

/// Appointments in start order, filtered, one page at a time. `customer_phone` and
/// `customer_email` find a caller's appointments. An `agent` key sees only appointments
/// not yet over unless it sends `from`.
#[utoipa::path(get, path = "/appointments", tag = "appointments",
    params(ListParams),
    responses(
        (status = 200, body = AppointmentPage),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")
    ))]
async fn list_appointments(
    State(state): State<AppState>,
    caller: Caller,
    Query(params): Query<ListParams>,
) -> Result<axum::Json<AppointmentPage>, ApiError> {
    caller.require(Permission::Read)?;
    let country = match params.customer_phone {
        Some(_) => state
            .db
            .booking()
            .booking_settings(caller.tenant_id)
            .await?
            .and_then(|s| s.country)
            .map(|c| Country::parse(&c))
            .transpose()
            .map_err(|e| ApiError::Internal(format!("stored tenant country: {e}")))?,
        None => None,
    };
    let mut query = to_query(params, country)?;
    // A voice agent asks about what the caller has coming, not their history.
    if caller.role == Role::Agent && query.from.is_none() {
        query.from = Some(Utc::now());
    }
    let limit = query.limit as usize;
    // One extra row tells whether another page follows.
    query.limit += 1;
    let mut appointments = state
        .store
        .list_appointments(caller.tenant_id, &query)
        .await?;
    let next_cursor = if appointments.len() > limit {
        appointments.truncate(limit);
        appointments
            .last()
            .map(|a| encode_cursor(a.starts_at, a.appointment_id))
    } else {
        None
    };
    Ok(axum::Json(AppointmentPage {
        items: appointments.iter().map(AppointmentView::from).collect(),
        next_cursor,
    }))
}

/// The body limit also bounds what an idempotency key can pin.
const _: () = assert!(MAX_BODY_BYTES <= 1024 * 1024);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let at = DateTime::from_timestamp_millis(1_777_000_000_123).expect("instant");
        let id = Uuid::now_v7();
        assert_eq!(
            decode_cursor(&encode_cursor(at, id)).expect("decodes"),
            (at, id)
        );
        assert!(decode_cursor("nope").is_err());
    }
}
