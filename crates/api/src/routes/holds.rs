//! `POST /holds`, `GET /holds/{hold_id}` and `DELETE /holds/{hold_id}`: keep an option's staffed time
//! for a few minutes while the caller decides. A hold passes the same pre-flight as a
//! booking, blocks the time with the same database guard, and reserves each segment in
//! Cal.com so Cal.com's own booking page stops offering it. `POST /appointments` with
//! `hold_id` turns it into the appointment.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use phasebook_domain::availability::check_gaps;
use phasebook_domain::plan::{assign_staff, parse_time_zone};
use phasebook_domain::preflight::{Booking, check_booking};
use phasebook_domain::{PlannedSegment, SegmentKey, StaffId, StartTime, plan_appointment};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path};
use crate::routes::booking::{load_service_context, load_staff, tenant_connection};
use crate::routes::services::parse_service_id;
use crate::state::AppState;
use crate::store::holds::{Hold, HoldSegment, HoldStatus, HoldToClear};

pub const DEFAULT_TTL_SECONDS: u32 = 300;
pub const MIN_TTL_SECONDS: u32 = 10;
pub const MAX_TTL_SECONDS: u32 = 900;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_hold))
        .routes(routes!(get_hold, release_hold))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateHold {
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub service_id: String,
    #[schema(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub staff_id: String,
    /// RFC 3339 with an offset, or a local date-time read in `time_zone`.
    pub start: String,
    /// IANA time zone; defaults to the staff member's.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// 10 to 900 (default 300).
    #[serde(default)]
    #[schema(minimum = 10, maximum = 900)]
    pub ttl_seconds: Option<u32>,
    /// The option's segment starts, when an availability option stretched a gap; each gap
    /// must stay within the service's range. Without it every gap is at its minimum.
    #[serde(default)]
    pub segments: Vec<HoldSegmentRequest>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldSegmentRequest {
    #[schema(min_length = 1, max_length = 16, pattern = "^[A-Za-z0-9._-]+$")]
    pub key: String,
    pub starts_at: DateTime<Utc>,
    /// Ignored beyond a check: a held segment is performed by the hold's staff member.
    #[serde(default)]
    pub staff_id: Option<String>,
    #[serde(default)]
    pub ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldSegmentView {
    pub key: String,
    pub staff_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// Cal.com's reservation of this segment's slot; null when Cal.com could not be reached
    /// (the hold still blocks the time in phasebook).
    pub calcom_reservation_uid: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HoldView {
    pub id: Uuid,
    pub service_id: String,
    pub staff_id: String,
    pub time_zone: String,
    /// `held`, `expired`, `released` or `booked`.
    pub status: String,
    pub expires_at: DateTime<Utc>,
    /// The appointment the hold became.
    pub appointment_id: Option<Uuid>,
    pub segments: Vec<HoldSegmentView>,
}

impl HoldView {
    pub fn of(hold: &Hold, now: DateTime<Utc>) -> Self {
        let status = match hold.status {
            HoldStatus::Held if hold.expires_at <= now => "expired",
            other => other.as_str(),
        };
        Self {
            id: hold.hold_id,
            service_id: hold.service_id.to_string(),
            staff_id: hold.staff_id.to_string(),
            time_zone: hold.time_zone.clone(),
            status: status.to_string(),
            expires_at: hold.expires_at,
            appointment_id: hold.appointment_id,
            segments: hold
                .segments
                .iter()
                .map(|s| HoldSegmentView {
                    key: s.segment.key.to_string(),
                    staff_id: s.segment.staff_id.to_string(),
                    starts_at: s.segment.starts_at,
                    ends_at: s.segment.ends_at,
                    calcom_reservation_uid: s.calcom_reservation_uid.clone(),
                })
                .collect(),
        }
    }
}

fn ttl(value: Option<u32>) -> Result<u32, ApiError> {
    let ttl = value.unwrap_or(DEFAULT_TTL_SECONDS);
    if (MIN_TTL_SECONDS..=MAX_TTL_SECONDS).contains(&ttl) {
        Ok(ttl)
    } else {
        Err(ApiError::validation(
            "ttl_seconds",
            "ttl_out_of_range",
            format!("ttl_seconds must be {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}, got {ttl}"),
        ))
    }
}

/// The segments of a hold request: the given starts (checked against the service's gaps)
/// or the plan with every gap at its minimum.
fn hold_plan(
    service: &phasebook_domain::Service,
    staff_id: &StaffId,
    start: DateTime<Utc>,
    given: &[HoldSegmentRequest],
) -> Result<Vec<PlannedSegment>, ApiError> {
    let assigned = assign_staff(service, staff_id, &[])?;
    if given.is_empty() {
        return Ok(plan_appointment(service, start, &assigned));
    }
    let mut plan = Vec::with_capacity(given.len());
    for (i, (spec, request)) in service.segments().iter().zip(given).enumerate() {
        let key =
            SegmentKey::parse(&request.key).map_err(|e| e.within(&format!("segments[{i}].key")))?;
        if key != spec.key {
            return Err(ApiError::validation(
                format!("segments[{i}].key"),
                "segments_mismatch",
                format!("segment {i} of the service is {}, not {key}", spec.key),
            ));
        }
        if request
            .staff_id
            .as_deref()
            .is_some_and(|s| s != staff_id.as_str())
        {
            return Err(ApiError::validation(
                format!("segments[{i}].staff_id"),
                "segments_mismatch",
                "a hold is for one staff member: every segment's staff_id must be staff_id",
            ));
        }
        let starts_at = request.starts_at.trunc_subsecs(3);
        let ends_at = starts_at + Duration::minutes(i64::from(spec.duration_minutes));
        if request.ends_at.is_some_and(|e| e != ends_at) {
            return Err(ApiError::validation(
                format!("segments[{i}].ends_at"),
                "segments_mismatch",
                format!(
                    "segment {} lasts {} minutes",
                    spec.key, spec.duration_minutes
                ),
            ));
        }
        plan.push(PlannedSegment {
            key,
            staff_id: staff_id.clone(),
            starts_at,
            ends_at,
        });
    }
    if plan.first().map(|s| s.starts_at) != Some(start) {
        return Err(ApiError::validation(
            "segments[0].starts_at",
            "segments_mismatch",
            "the first segment must start at start",
        ));
    }
    check_gaps(service, &plan)?;
    Ok(plan)
}

/// Holds an option (agent, ops): `409` when its time is taken, `422` for every pre-flight
/// refusal. Nothing is stored when it is refused.
#[utoipa::path(post, path = "/holds", tag = "holds",
    request_body = CreateHold,
    responses(
        (status = 201, body = HoldView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "The time is taken by an appointment or another live hold"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Pre-flight refusal or invalid request (names `field`)")
    ))]
async fn create_hold(
    State(state): State<AppState>,
    caller: Caller,
    Json(request): Json<CreateHold>,
) -> Result<(StatusCode, axum::Json<HoldView>), ApiError> {
    caller.require(Permission::BookAppointments)?;
    let now = Utc::now().trunc_subsecs(3);
    let tenant_id = caller.tenant_id;
    let service_id = parse_service_id(&request.service_id)?;
    let staff_id = StaffId::parse(&request.staff_id).map_err(|e| e.within("staff_id"))?;
    let start = StartTime::parse(&request.start)?;
    let ttl = ttl(request.ttl_seconds)?;
    let context = load_service_context(&state, tenant_id, &service_id).await?;
    let staff = load_staff(&state, tenant_id, &staff_id, "staff_id").await?;
    let zone = parse_time_zone(request.time_zone.as_deref().unwrap_or(&staff.time_zone))?;
    let starts_at = start.resolve(zone)?.trunc_subsecs(3);
    let service = &context.service.service;
    let plan = hold_plan(service, &staff_id, starts_at, &request.segments)?;
    check_booking(
        &Booking {
            service_id: &service_id,
            staff_id: &staff_id,
            plan: &plan,
            performers: &context.performers,
            mapped: &context.mapped(),
            unverified: &context.unverified(),
            horizon_days: context.settings.horizon_days,
        },
        now,
    )?;
    let segments = plan
        .into_iter()
        .map(|segment| {
            let event_type_id = context
                .bookable(&segment.key, &segment.staff_id)
                .unwrap_or_default();
            HoldSegment {
                segment,
                event_type_id: phasebook_domain::EventTypeId(event_type_id),
                calcom_reservation_uid: None,
            }
        })
        .collect();
    let mut hold = Hold {
        hold_id: Uuid::now_v7(),
        tenant_id,
        service_id,
        staff_id,
        time_zone: zone.name().to_string(),
        status: HoldStatus::Held,
        expires_at: now + Duration::seconds(i64::from(ttl)),
        appointment_id: None,
        created_at: now,
        segments,
    };
    let store = state.db.booking();
    store.create_hold(&hold, now).await?;
    state.free_time.invalidate(tenant_id);
    metrics::counter!("phasebook_holds_created_total").increment(1);
    tracing::info!(hold_id = %hold.hold_id, segments = hold.segments.len(), "hold created");

    // Cal.com reservations only hide the slots from Cal.com's own booking page; phasebook's
    // guard already holds the time, so a failed reservation is logged, not fatal.
    let minutes = ttl.div_ceil(60);
    if let Ok(tenant) = tenant_connection(&state, tenant_id).await
        && let Ok(client) = state.free_time.clients().get(&tenant)
    {
        let reservations = hold.segments.iter().map(|s| {
            let client = client.clone();
            let request = calcom_client::ReserveSlot {
                event_type_id: s.event_type_id.0,
                slot_start: s.segment.starts_at,
                slot_duration: None,
                reservation_duration: Some(minutes),
            };
            async move { client.reserve_slot(&request).await }
        });
        let results = futures::future::join_all(reservations).await;
        for (segment, result) in hold.segments.iter_mut().zip(results) {
            match result {
                Ok(reservation) => {
                    store
                        .set_reservation_uid(
                            hold.hold_id,
                            segment.segment.key.as_str(),
                            &reservation.reservation_uid,
                        )
                        .await?;
                    segment.calcom_reservation_uid = Some(reservation.reservation_uid);
                }
                Err(err) => tracing::warn!(
                    hold_id = %hold.hold_id,
                    segment = %segment.segment.key,
                    error_kind = err.kind(),
                    "could not reserve the segment's slot in Cal.com"
                ),
            }
        }
    }
    Ok((StatusCode::CREATED, axum::Json(HoldView::of(&hold, now))))
}

fn parse_hold_id(id: &str) -> Result<Uuid, ApiError> {
    crate::extract::path_uuid("hold_id", id)
}

/// One hold and how it stands (`expired` once past `expires_at`).
#[utoipa::path(get, path = "/holds/{hold_id}", tag = "holds",
    params(("hold_id" = Uuid, Path)),
    responses(
        (status = 200, body = HoldView),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn get_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<HoldView>, ApiError> {
    caller.require(Permission::Read)?;
    let hold = state
        .db
        .booking()
        .get_hold(caller.tenant_id, parse_hold_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound { what: "hold" })?;
    Ok(axum::Json(HoldView::of(&hold, Utc::now())))
}

/// Releases a hold (agent, ops): its time is free at once and its Cal.com reservations are
/// deleted. Releasing again, or releasing a booked hold, changes nothing.
#[utoipa::path(delete, path = "/holds/{hold_id}", tag = "holds",
    params(("hold_id" = Uuid, Path)),
    responses(
        (status = 200, body = HoldView),
        (status = 404, body = Problem, content_type = "application/problem+json")
    ))]
async fn release_hold(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<HoldView>, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let now = Utc::now().trunc_subsecs(3);
    let hold = state
        .db
        .booking()
        .release_hold(caller.tenant_id, parse_hold_id(&id)?, now)
        .await?
        .ok_or(ApiError::NotFound { what: "hold" })?;
    state.free_time.invalidate(caller.tenant_id);
    clear_reservations_of(&state, &hold, now).await;
    Ok(axum::Json(HoldView::of(&hold, now)))
}

/// Deletes an ended hold's Cal.com reservations now; what fails is left to the sweep.
pub(crate) async fn clear_reservations_of(state: &AppState, hold: &Hold, now: DateTime<Utc>) {
    if hold.is_live(now) {
        return;
    }
    let target = HoldToClear {
        tenant_id: hold.tenant_id,
        hold_id: hold.hold_id,
        reservation_uids: hold
            .segments
            .iter()
            .filter_map(|s| s.calcom_reservation_uid.clone())
            .collect(),
    };
    if let Err(err) = clear_reservations(state, &target, now).await {
        tracing::warn!(hold_id = %hold.hold_id, error = %err, "reservations left to the sweep");
    }
}

/// Deletes every Cal.com reservation of an ended hold and records that it is done. A
/// reservation Cal.com no longer knows (it expired) counts as deleted.
pub async fn clear_reservations(
    state: &AppState,
    target: &HoldToClear,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if !target.reservation_uids.is_empty() {
        let tenant = tenant_connection(state, target.tenant_id).await?;
        let client = state
            .free_time
            .clients()
            .get(&tenant)
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        for uid in &target.reservation_uids {
            match client.delete_reservation(uid).await {
                Ok(()) | Err(calcom_client::CalcomError::NotFound { .. }) => {}
                Err(err) => return Err(ApiError::Unavailable(err.to_string())),
            }
        }
    }
    state
        .db
        .booking()
        .mark_reservations_cleared(target.hold_id, now)
        .await?;
    Ok(())
}

/// One pass of the reservation sweep: ended and expired holds lose their Cal.com
/// reservations. Returns how many holds were cleared.
pub async fn sweep_reservations(state: &AppState, now: DateTime<Utc>) -> Result<usize, ApiError> {
    let due = state.db.booking().holds_to_clear(now, 100).await?;
    let mut cleared = 0;
    for target in &due {
        match clear_reservations(state, target, now).await {
            Ok(()) => cleared += 1,
            Err(err) => {
                tracing::warn!(hold_id = %target.hold_id, error = %err, "reservation sweep will retry");
            }
        }
    }
    Ok(cleared)
}

/// Runs [`sweep_reservations`] every `every` until the token is cancelled (the worker
/// process's reservation sweep).
pub async fn sweep_reservations_every(
    state: AppState,
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let sweep =
            calcom_client::Priority::Background.scope(sweep_reservations(&state, Utc::now()));
        match sweep.await {
            Ok(0) => {}
            Ok(n) => tracing::info!(holds = n, "Cal.com reservations of ended holds deleted"),
            Err(err) => tracing::warn!(error = %err, "reservation sweep failed"),
        }
    }
}
