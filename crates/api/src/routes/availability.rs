//! `GET /availability`: the options a caller can book, from Cal.com's free time for every
//! segment's bookable event type minus phasebook's own appointments and live holds. The
//! search is `phasebook_domain::availability::search`; this handler gathers its inputs.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, DurationRound, Utc};
use phasebook_domain::StaffId;
use phasebook_domain::availability::{self, AvailableOption, Span, StaffTime, WindowBound};
use phasebook_domain::plan::parse_time_zone;
use phasebook_domain::preflight::{Refusal, latest_start};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Permission};
use crate::error::{ApiError, Problem};
use crate::free_time::FreeTimeError;
use crate::routes::booking::{load_service_context, tenant_connection};
use crate::routes::services::parse_service_id;
use crate::state::AppState;

pub const DEFAULT_OPTIONS: u32 = 20;
/// How long one search may wait for Cal.com's free time.
pub const FREE_TIME_WAIT: std::time::Duration = std::time::Duration::from_secs(8);
pub const MAX_OPTIONS: u32 = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_availability))
}

/// Query parameters of `GET /availability` (documentation; parsed from the raw query so
/// `staff_id` may repeat).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AvailabilityParams {
    #[param(min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9._-]+$")]
    pub service_id: String,
    /// A date (`2026-05-04`, from its first instant) or a local date-time, in `time_zone`.
    pub from: String,
    /// A date (through its end) or a local date-time, in `time_zone`; at most 14 days after `from`.
    pub to: String,
    /// IANA time zone `from` and `to` are read in.
    #[param(min_length = 1)]
    pub time_zone: String,
    /// Repeatable; none means every staff member who performs the service.
    pub staff_id: Option<Vec<String>>,
    /// Options per page, 1 to 200 (default 20).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page; an empty one is refused (422).
    #[param(min_length = 1)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OptionSegmentView {
    pub key: String,
    pub staff_id: String,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

/// One bookable option: hold it with `POST /holds` (pass `segments` when a gap was stretched).
#[derive(Debug, Serialize, ToSchema)]
pub struct OptionView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub staff_id: String,
    pub segments: Vec<OptionSegmentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AvailabilityView {
    pub options: Vec<OptionView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<String>,
}

impl From<&AvailableOption> for OptionView {
    fn from(o: &AvailableOption) -> Self {
        Self {
            start: o.start,
            end: o.end,
            staff_id: o.staff_id.to_string(),
            segments: o
                .segments
                .iter()
                .map(|s| OptionSegmentView {
                    key: s.key.to_string(),
                    staff_id: s.staff_id.to_string(),
                    starts_at: s.starts_at,
                    ends_at: s.ends_at,
                })
                .collect(),
        }
    }
}

fn encode_cursor(o: &AvailableOption) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}:{}", o.start.timestamp(), o.staff_id))
}

fn decode_cursor(cursor: &str) -> Result<(DateTime<Utc>, StaffId), ApiError> {
    let invalid = || {
        ApiError::validation(
            "cursor",
            "invalid_cursor",
            "the cursor is not one this API returned; start again without it",
        )
    };
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?)
        .map_err(|_| invalid())?;
    let mut parts = text.splitn(3, ':');
    let (Some("v1"), Some(secs), Some(staff)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let start = secs
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .ok_or_else(invalid)?;
    Ok((start, StaffId::parse(staff).map_err(|_| invalid())?))
}

fn required<'a>(params: &'a HashMap<String, String>, name: &str) -> Result<&'a str, ApiError> {
    params
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| ApiError::validation(name, "required", format!("{name} is required")))
}

/// Options to book, in start order (agent, ops).
#[utoipa::path(get, path = "/availability", tag = "availability",
    params(AvailabilityParams),
    responses(
        (status = 200, body = AvailabilityView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json", description = "Invalid parameters, or a named staff member who does not perform the service or lacks an event map"),
        (status = 503, body = Problem, content_type = "application/problem+json", description = "`calcom-unavailable`: Cal.com could not be read and nothing is cached; see `Retry-After`")
    ))]
async fn get_availability(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<AvailabilityView>, ApiError> {
    caller.require(Permission::BookAppointments)?;
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.as_deref().unwrap_or(""))
        .map_err(|_| ApiError::MalformedRequest {
        detail: "the query string is not valid".to_string(),
        field: None,
    })?;
    let mut staff_filter: Vec<StaffId> = Vec::new();
    let mut params: HashMap<String, String> = HashMap::new();
    for (name, value) in pairs {
        match name.as_str() {
            "staff_id" => {
                for part in value.split(',').filter(|p| !p.trim().is_empty()) {
                    staff_filter
                        .push(StaffId::parse(part.trim()).map_err(|e| e.within("staff_id"))?);
                }
            }
            "service_id" | "from" | "to" | "time_zone" | "limit" | "cursor" => {
                params.insert(name, value);
            }
            other => {
                return Err(ApiError::validation(
                    other,
                    "unknown_parameter",
                    format!("{other} is not a parameter of GET /availability"),
                ));
            }
        }
    }
    let service_id = parse_service_id(required(&params, "service_id")?)?;
    let zone = parse_time_zone(required(&params, "time_zone")?)?;
    let from = WindowBound::parse("from", required(&params, "from")?)?;
    let to = WindowBound::parse("to", required(&params, "to")?)?;
    let requested = availability::window(from, to, zone)?;
    let limit = match params.get("limit") {
        None => DEFAULT_OPTIONS,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_OPTIONS).contains(l))
            .ok_or_else(|| {
                ApiError::validation(
                    "limit",
                    "invalid_limit",
                    format!("limit must be a whole number from 1 to {MAX_OPTIONS}"),
                )
            })?,
    } as usize;
    let after = params.get("cursor").map(|c| decode_cursor(c)).transpose()?;

    let tenant_id = caller.tenant_id;
    let context = load_service_context(&state, tenant_id, &service_id).await?;
    let staff: Vec<StaffId> = if staff_filter.is_empty() {
        context
            .performers
            .iter()
            .filter(|s| context.fully_mapped(s))
            .cloned()
            .collect()
    } else {
        for member in &staff_filter {
            if !context.performers.contains(member) {
                return Err(Refusal::NotPerformer {
                    staff_id: member.clone(),
                    service_id: service_id.clone(),
                    field: "staff_id".to_string(),
                }
                .into());
            }
            if let Some(segment) = context
                .service
                .service
                .segments()
                .iter()
                .find(|s| context.bookable(&s.key, member).is_none())
            {
                let unverified = context.unverified();
                let reason = unverified
                    .iter()
                    .find(|(key, who, _)| key == &segment.key && who == member)
                    .map(|(_, _, reason)| reason.clone());
                return Err(match reason {
                    Some(reason) => Refusal::SegmentMapUnverified {
                        service_id: service_id.clone(),
                        segment: segment.key.clone(),
                        staff_id: member.clone(),
                        reason,
                    },
                    None => Refusal::SegmentUnmapped {
                        service_id: service_id.clone(),
                        segment: segment.key.clone(),
                        staff_id: member.clone(),
                    },
                }
                .into());
            }
        }
        staff_filter
    };

    // Only starts from now (rounded up to the minute) to the horizon can be booked.
    let now = Utc::now();
    let earliest = (now + Duration::seconds(59))
        .duration_trunc(Duration::minutes(1))
        .unwrap_or(now);
    let window = Span::new(
        requested.start.max(earliest),
        requested
            .end
            .min(latest_start(now, context.settings.horizon_days) + Duration::seconds(1)),
    );
    if staff.is_empty() || window.start >= window.end {
        return Ok(axum::Json(AvailabilityView {
            options: vec![],
            next_cursor: None,
        }));
    }
    let service = &context.service.service;
    let longest: i64 = service
        .segments()
        .iter()
        .map(|s| i64::from(s.duration_minutes + s.max_gap_minutes()))
        .sum();
    let reach = Span::new(window.start, window.end + Duration::minutes(longest));

    let event_types: Vec<i64> = staff
        .iter()
        .flat_map(|member| {
            service
                .segments()
                .iter()
                .filter_map(|s| context.bookable(&s.key, member))
                .collect::<Vec<_>>()
        })
        .collect();
    let tenant = tenant_connection(&state, tenant_id).await?;
    // A search waits for the tenant's rate limiter at most this long: a caller on the
    // phone is better served by a 503 and Retry-After than by silence.
    let free = tokio::time::timeout(
        FREE_TIME_WAIT,
        state.free_time.read(&tenant, &event_types, reach),
    )
    .await
    .unwrap_or_else(|_| {
        Err(FreeTimeError {
            reason: "timed out waiting for Cal.com".to_string(),
            retry_after: std::time::Duration::from_secs(5),
        })
    })
    .map_err(|err| {
            tracing::warn!(reason = %err.reason, "availability refused: Cal.com unavailable");
            ApiError::Typed {
                status: StatusCode::SERVICE_UNAVAILABLE,
                slug: "calcom-unavailable",
                title: "Cal.com is unavailable",
                detail: "Cal.com could not be asked for free time and nothing recent is cached, so no option can be offered; retry after the Retry-After delay.".to_string(),
                field: None,
                retry_after: Some(err.retry_after.as_secs().max(1)),
            }
        })?;
    let busy = state
        .db
        .booking()
        .busy_time(tenant_id, &staff, reach, now)
        .await?;

    let staff_time: Vec<StaffTime> = staff
        .iter()
        .map(|member| StaffTime {
            staff_id: member.clone(),
            free: service
                .segments()
                .iter()
                .map(|s| {
                    context
                        .bookable(&s.key, member)
                        .and_then(|et| free.get(&et).cloned())
                        .unwrap_or_default()
                })
                .collect(),
            busy: busy
                .iter()
                .filter(|(who, _)| who == member)
                .map(|(_, span)| *span)
                .collect(),
        })
        .collect();
    let mut options: Vec<AvailableOption> = availability::search(service, &staff_time, window)
        .into_iter()
        .filter(|o| match &after {
            Some((start, staff)) => (o.start, &o.staff_id) > (*start, staff),
            None => true,
        })
        .collect();
    let next_cursor = if options.len() > limit {
        options.truncate(limit);
        options.last().map(encode_cursor)
    } else {
        None
    };
    Ok(axum::Json(AvailabilityView {
        options: options.iter().map(OptionView::from).collect(),
        next_cursor,
    }))
}
