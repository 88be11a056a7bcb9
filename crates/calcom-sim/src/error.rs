//! Errors: `SimError` for the library's own API, and `CalError`, an answer in one of the
//! three bodies Cal.com uses for failures (FACTS 1.4).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// What the library API (seeding, spawning) can refuse.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid seed: {0}")]
    InvalidSeed(String),
    #[error("{what} with id {id} already exists")]
    Duplicate { what: &'static str, id: i64 },
    #[error("unknown {what} {id}")]
    Unknown { what: &'static str, id: i64 },
}

/// The body shape of a Cal.com failure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Shape {
    /// Nest `HttpException` through Cal.com's filter: `{status:"error", timestamp, path,
    /// error:{code, message, details}}`.
    Envelope { code: &'static str },
    /// Nest's base filter: `{statusCode, message}`.
    Plain,
}

/// A Cal.com failure answer. `path` is filled in by the request gate.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CalError {
    pub status: StatusCode,
    pub shape: Shape,
    pub message: String,
}

impl CalError {
    fn envelope(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            shape: Shape::Envelope { code },
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::envelope(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::envelope(StatusCode::NOT_FOUND, "NotFoundException", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::envelope(StatusCode::UNAUTHORIZED, "UnauthorizedException", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::envelope(StatusCode::FORBIDDEN, "ForbiddenException", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::envelope(
            StatusCode::UNPROCESSABLE_ENTITY,
            "UnprocessableEntityException",
            message,
        )
    }

    pub fn throttled() -> Self {
        Self::envelope(
            StatusCode::TOO_MANY_REQUESTS,
            "ThrottlerException",
            THROTTLED_MESSAGE,
        )
    }

    pub fn plain(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            shape: Shape::Plain,
            message: message.into(),
        }
    }

    pub fn internal() -> Self {
        Self::plain(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }

    /// Nest's answer for a path/method/version with no controller.
    pub fn no_route(method: &str, path: &str) -> Self {
        Self::not_found(format!("Cannot {method} {path}"))
    }

    pub fn body(&self, path: &str) -> Value {
        match &self.shape {
            Shape::Plain => json!({"statusCode": self.status.as_u16(), "message": self.message}),
            Shape::Envelope { code } => json!({
                "status": "error",
                "timestamp": crate::time::iso_now(),
                "path": path,
                "error": {
                    "code": code,
                    "message": self.message,
                    "details": {
                        "message": self.message,
                        "error": self.status.canonical_reason().unwrap_or("Error"),
                        "statusCode": self.status.as_u16(),
                    },
                },
            }),
        }
    }

    pub fn into_response_at(self, path: &str) -> Response {
        (self.status, axum::Json(self.body(path))).into_response()
    }
}

pub(crate) const THROTTLED_MESSAGE: &str =
    "CustomThrottlerGuard - Too many requests. Please try again later.";
pub(crate) const INVALID_KEY: &str = "ApiAuthStrategy - api key - Your api key is not valid";
pub(crate) const NO_AUTH: &str = "ApiAuthStrategy - No authentication method provided. Either pass an API key as 'Bearer' header or OAuth client credentials as 'x-cal-secret-key' and 'x-cal-client-id' headers";
pub(crate) const LIST_NO_AUTH: &str = "PermissionsGuard - no authentication provided. Provide either authorization bearer token containing managed user access token or oAuth client id in 'x-cal-client-id' header.";
