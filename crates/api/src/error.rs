//! The one error type of the HTTP API, rendered as RFC 9457 `application/problem+json`
//! with a stable `type` URI per kind. Internal failures are logged here and never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phasebook_domain::FieldError;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::StoreError;

pub const PROBLEM_JSON: &str = "application/problem+json";
const PROBLEM_BASE: &str = "https://phasebook.dev/problems/";

/// Everything a handler or extractor can answer with other than success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this API key's role may not do this")]
    Forbidden { needed: &'static str },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("no route")]
    NoRoute,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A well-formed request whose content breaks a rule (422).
    #[error("{0}")]
    Validation(FieldError),
    /// A request that is not readable as what it claims to be (400).
    #[error("{detail}")]
    MalformedRequest {
        detail: String,
        field: Option<String>,
    },
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    #[error("double booking")]
    DoubleBooking {
        conflicting_appointment_id: Option<Uuid>,
    },
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this idempotency key is in flight")]
    IdempotencyKeyInFlight,
    /// Cal.com's answer makes the requested configuration unusable (422); `slug` names
    /// why, `fix` says what to do.
    #[error("{detail}")]
    Refused {
        slug: &'static str,
        title: &'static str,
        detail: String,
        fix: String,
    },
    /// Cal.com could not be asked, or refused the tenant's key (502).
    #[error("Cal.com {kind}: {detail}")]
    Calcom { kind: &'static str, detail: String },
    /// A change of a service that would silently delete the event maps of the segments it
    /// drops (409).
    #[error("{detail}")]
    ServiceChangeLosesMaps { detail: String },
    #[error("internal error: {0}")]
    Internal(String),
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// The API key's request limit is used up (429).
    #[error("request limit reached")]
    RateLimited { retry_after_seconds: u64 },
    /// The request conflicts with the resource's state (409), e.g. revoking the last ops key.
    #[error("{detail}")]
    Conflict { slug: &'static str, detail: String },
    /// A refusal with its own problem `type` (pre-flight, holds, Cal.com unavailable).
    #[error("{detail}")]
    Typed {
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: String,
        field: Option<String>,
        /// Seconds, sent as `Retry-After`.
        retry_after: Option<u64>,
    },
}

/// The problem document (RFC 9457) every error response carries.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Path of the offending request field, e.g. `customer.email` or `segments[1].key`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Stable machine code of a validation error, e.g. `invalid_email`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For a double booking: the appointment that holds the time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicting_appointment_id: Option<Uuid>,
    /// For a refused configuration: what to do about it, in one sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl ApiError {
    pub fn validation(
        field: impl Into<String>,
        code: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::Validation(FieldError::new(field, code, detail))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound { .. } | Self::NoRoute => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Validation(_) | Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::DoubleBooking { .. }
            | Self::IdempotencyKeyInFlight
            | Self::ServiceChangeLosesMaps { .. } => StatusCode::CONFLICT,
            Self::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Calcom { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::Typed { status, .. } => *status,
        }
    }

    /// The problem document; internal details never leave the process.
    pub fn problem(&self) -> Problem {
        let status = self.status().as_u16();
        let (slug, title, detail, field, code, conflicting) = match self {
            Self::Unauthorized => (
                "unauthorized",
                "Unauthorized",
                "Send a valid API key as `Authorization: Bearer <key>`.".to_string(),
                None,
                None,
                None,
            ),
            Self::Forbidden { needed } => (
                "forbidden",
                "Forbidden",
                format!("This API key's role may not do this; it needs the {needed} role."),
                None,
                None,
                None,
            ),
            Self::NotFound { what } => (
                "not-found",
                "Not found",
                format!("No {what} with this id exists for your tenant."),
                None,
                None,
                None,
            ),
            Self::NoRoute => (
                "not-found",
                "Not found",
                "No such endpoint; see /openapi.json.".to_string(),
                None,
                None,
                None,
            ),
            Self::MethodNotAllowed => (
                "method-not-allowed",
                "Method not allowed",
                "This endpoint does not accept this method; see /openapi.json.".to_string(),
                None,
                None,
                None,
            ),
            Self::Validation(e) => (
                "validation",
                "Invalid request",
                e.message.clone(),
                Some(e.field.clone()),
                Some(e.code.to_string()),
                None,
            ),
            Self::MalformedRequest { detail, field } => (
                "malformed-request",
                "Malformed request",
                detail.clone(),
                field.clone(),
                None,
                None,
            ),
            Self::PayloadTooLarge { limit } => (
                "payload-too-large",
                "Payload too large",
                format!("The request body is larger than {limit} bytes."),
                None,
                None,
                None,
            ),
            Self::UnsupportedMediaType => (
                "unsupported-media-type",
                "Unsupported media type",
                "Send the body as JSON with `Content-Type: application/json`.".to_string(),
                None,
                None,
                None,
            ),
            Self::DoubleBooking {
                conflicting_appointment_id,
            } => (
                "double-booking",
                "Staff member already booked",
                match conflicting_appointment_id {
                    Some(id) => format!(
                        "A segment overlaps a segment of appointment {id} for the same staff member."
                    ),
                    None => "A segment overlaps another appointment of the same staff member."
                        .to_string(),
                },
                None,
                None,
                *conflicting_appointment_id,
            ),
            Self::IdempotencyKeyReused => (
                "idempotency-key-reused",
                "Idempotency key reused",
                "This Idempotency-Key was already used with a different request body; use a new key for a new request.".to_string(),
                Some("Idempotency-Key".to_string()),
                None,
                None,
            ),
            Self::IdempotencyKeyInFlight => (
                "idempotency-key-in-flight",
                "Request in progress",
                "A request with this Idempotency-Key is still being processed; retry shortly.".to_string(),
                Some("Idempotency-Key".to_string()),
                None,
                None,
            ),
            Self::Refused {
                slug,
                title,
                detail,
                fix,
            } => (
                *slug,
                *title,
                format!("{detail} Fix: {fix}"),
                None,
                Some(slug.to_string()),
                None,
            ),
            Self::Calcom { kind, detail } => (
                "calcom-failed",
                "Cal.com did not answer as expected",
                match *kind {
                    "transport" => format!("Cal.com could not be reached: {detail}"),
                    "outcome_unknown" => format!("Cal.com did not answer in time: {detail}"),
                    _ => format!("Cal.com answered {kind}: {detail}"),
                },
                None,
                Some(kind.to_string()),
                None,
            ),
            Self::ServiceChangeLosesMaps { detail } => (
                "service-change-loses-event-maps",
                "The change would delete event maps",
                detail.clone(),
                Some("segments".to_string()),
                None,
                None,
            ),
            Self::Internal(_) => (
                "internal",
                "Internal error",
                "Something went wrong on our side; it has been logged.".to_string(),
                None,
                None,
                None,
            ),
            Self::Unavailable(_) => (
                "unavailable",
                "Service unavailable",
                "A dependency is not reachable right now; retry shortly.".to_string(),
                None,
                None,
                None,
            ),
            Self::RateLimited {
                retry_after_seconds,
            } => (
                "rate-limited",
                "Too many requests",
                format!(
                    "This API key sent more requests than its limit allows; retry after {retry_after_seconds} s."
                ),
                None,
                None,
                None,
            ),
            Self::Conflict { slug, detail } => {
                (*slug, "Conflict", detail.clone(), None, None, None)
            }
            Self::Typed {
                slug,
                title,
                detail,
                field,
                ..
            } => (
                *slug,
                *title,
                detail.clone(),
                field.clone(),
                Some(slug.to_string()),
                None,
            ),
        };
        Problem {
            kind: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_string(),
            status,
            detail,
            field,
            code,
            conflicting_appointment_id: conflicting,
            fix: match self {
                Self::Refused { fix, .. } => Some(fix.clone()),
                _ => None,
            },
        }
    }

    /// The response as bytes, for pinning to an idempotency key.
    pub fn body_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.problem()).unwrap_or_default()
    }
}

impl From<phasebook_domain::preflight::Refusal> for ApiError {
    fn from(refusal: phasebook_domain::preflight::Refusal) -> Self {
        Self::Typed {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            slug: refusal.slug(),
            title: refusal.title(),
            detail: refusal.detail(),
            field: Some(refusal.field()),
            retry_after: None,
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(value: FieldError) -> Self {
        Self::Validation(value)
    }
}

impl From<StoreError> for ApiError {
    fn from(value: StoreError) -> Self {
        match value {
            StoreError::DoubleBooking {
                conflicting_appointment_id,
            } => Self::DoubleBooking {
                conflicting_appointment_id,
            },
            StoreError::Database(sqlx::Error::PoolTimedOut) => {
                Self::Unavailable("database pool timed out".to_string())
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Builds a problem response from status and pre-rendered body.
pub fn problem_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(error = %detail, "request failed"),
            Self::Unavailable(detail) => tracing::warn!(error = %detail, "dependency unavailable"),
            _ => {}
        }
        let mut response = problem_response(self.status(), self.body_bytes());
        if let Self::Typed {
            retry_after: Some(seconds),
            ..
        } = &self
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
