//! The client's single error type, `CalcomError`, and the code that turns a Cal.com
//! response or a transport failure into it. A variant says what happened on the wire;
//! deciding what to do about it (retry, reconcile, flag for review) belongs to the caller.

use std::error::Error as StdError;
use std::time::Duration;

use reqwest::header::HeaderMap;

/// Raw bodies kept in errors are cut to this many bytes: enough for a human to review the
/// server's answer, small enough to store in an attempt log.
pub(crate) const RAW_BODY_LIMIT: usize = 2048;

/// Used when a 429 carries no readable reset header: Cal.com blocks a key for 60 s.
pub(crate) const DEFAULT_RATE_LIMIT_RESET: Duration = Duration::from_secs(60);

/// A reset longer than this is treated as garbage (e.g. a misread timestamp) and capped,
/// so one odd header cannot stall a client for days.
const MAX_RATE_LIMIT_RESET: Duration = Duration::from_secs(3600);

/// Why Cal.com refused a time, read from its message (FACTS 2.4, and the reservation
/// service of API version 2024-09-04).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotRefusal {
    /// The host, or one of a team type's hosts, has a booking then or is not working.
    HostUnavailable,
    /// Too soon (the event type's minimum booking notice) or too far ahead (its booking
    /// window): Cal.com answers both with one text (`can't be booked at the "start" time
    /// provided`), so they cannot be told apart.
    OutsideBookingWindow,
    /// The start is in the past.
    InThePast,
    /// A team event type with no hosts.
    NoHosts,
    /// A seated slot is full.
    SeatsFull,
    /// A reservation: the event type already has a live reservation overlapping the time.
    AlreadyReserved,
    /// A reservation: the event type already has a booking overlapping the time.
    AlreadyBooked,
    /// Another availability text (e.g. a round-robin or collective host error code).
    Other,
}

impl SlotRefusal {
    /// A stable snake_case name, for logs and stored failure details.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HostUnavailable => "host_unavailable",
            Self::OutsideBookingWindow => "outside_booking_window",
            Self::InThePast => "in_the_past",
            Self::NoHosts => "no_hosts",
            Self::SeatsFull => "seats_full",
            Self::AlreadyReserved => "already_reserved",
            Self::AlreadyBooked => "already_booked",
            Self::Other => "other",
        }
    }
}

/// Everything that can go wrong on a call to Cal.com.
#[derive(Debug, thiserror::Error)]
pub enum CalcomError {
    /// Our own check refused the request before anything was sent.
    #[error("invalid request: {field}: {reason}")]
    InvalidRequest { field: String, reason: String },

    /// The request never reached Cal.com (connection refused, DNS, TLS setup):
    /// nothing was created.
    #[error("request was not sent to Cal.com: {source}")]
    Transport {
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    /// The request may have reached Cal.com but no answer came back (timeout, connection
    /// lost after sending): a booking may or may not exist.
    #[error("outcome unknown: {reason}")]
    OutcomeUnknown { reason: String },

    /// HTTP 429. `reset_after` comes from the `X-RateLimit-Reset-*` headers.
    #[error("rate limited by Cal.com for {reset_after:?}: {message}")]
    RateLimited {
        reset_after: Duration,
        message: String,
        body: String,
    },

    /// HTTP 400: the event type is a managed parent, which Cal.com refuses to book.
    #[error("event type {event_type_id} is a managed parent and cannot be booked: {message}")]
    ManagedParent {
        event_type_id: i64,
        message: String,
        body: String,
    },

    /// The requested time cannot be booked (or reserved): host busy or unavailable, too
    /// soon or too far ahead, in the past, no hosts on a team type, seats full, already
    /// reserved. `reason` says which, as far as Cal.com's text tells.
    #[error("slot unavailable (HTTP {status}): {message}")]
    SlotUnavailable {
        status: u16,
        reason: SlotRefusal,
        message: String,
        body: String,
    },

    /// HTTP 409 `booking_conflict_error`: the same organizer/start/end was inserted concurrently.
    #[error("duplicate booking (HTTP 409): {message}")]
    DuplicateBooking { message: String, body: String },

    /// HTTP 404.
    #[error("not found: {message}")]
    NotFound { message: String, body: String },

    /// HTTP 401 or 403.
    #[error("unauthorized (HTTP {status}): {message}")]
    Unauthorized {
        status: u16,
        message: String,
        body: String,
    },

    /// Any other 4xx: Cal.com refused the request as it stands.
    #[error("rejected by Cal.com (HTTP {status}): {message}")]
    Validation {
        status: u16,
        message: String,
        body: String,
    },

    /// HTTP 5xx (and any non-2xx status that is neither 4xx nor 5xx).
    #[error("Cal.com server error (HTTP {status}): {message}")]
    Server {
        status: u16,
        message: String,
        body: String,
    },

    /// A 2xx answer whose body is not what the endpoint documents.
    #[error("unexpected response body (HTTP {status}): {reason}")]
    Decode {
        status: u16,
        reason: String,
        body: String,
    },
}

impl CalcomError {
    /// The HTTP status Cal.com answered with, if an answer arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::InvalidRequest { .. } | Self::Transport { .. } | Self::OutcomeUnknown { .. } => {
                None
            }
            Self::RateLimited { .. } => Some(429),
            Self::ManagedParent { .. } => Some(400),
            Self::DuplicateBooking { .. } => Some(409),
            Self::NotFound { .. } => Some(404),
            Self::SlotUnavailable { status, .. }
            | Self::Unauthorized { status, .. }
            | Self::Validation { status, .. }
            | Self::Server { status, .. }
            | Self::Decode { status, .. } => Some(*status),
        }
    }

    /// A one-line human description (Cal.com's own message where there is one).
    pub fn message(&self) -> String {
        match self {
            Self::InvalidRequest { field, reason } => format!("{field}: {reason}"),
            Self::Transport { source } => error_chain(source.as_ref()),
            Self::OutcomeUnknown { reason } | Self::Decode { reason, .. } => reason.clone(),
            Self::RateLimited { message, .. }
            | Self::ManagedParent { message, .. }
            | Self::SlotUnavailable { message, .. }
            | Self::DuplicateBooking { message, .. }
            | Self::NotFound { message, .. }
            | Self::Unauthorized { message, .. }
            | Self::Validation { message, .. }
            | Self::Server { message, .. } => message.clone(),
        }
    }

    /// A stable snake_case name for the variant; the sync engine stores it, so never
    /// rename one.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Transport { .. } => "transport",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::RateLimited { .. } => "rate_limited",
            Self::ManagedParent { .. } => "managed_parent",
            Self::SlotUnavailable { .. } => "slot_unavailable",
            Self::DuplicateBooking { .. } => "duplicate_booking",
            Self::NotFound { .. } => "not_found",
            Self::Unauthorized { .. } => "unauthorized",
            Self::Validation { .. } => "validation",
            Self::Server { .. } => "server",
            Self::Decode { .. } => "decode",
        }
    }

    /// True when the request may have been processed although no answer arrived.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, Self::OutcomeUnknown { .. })
    }

    /// True for Cal.com's answer to cancelling a booking that is already cancelled
    /// (a plain 400, not a no-op on their side).
    pub fn is_already_cancelled(&self) -> bool {
        match self {
            Self::Validation {
                status: 400,
                message,
                ..
            } => message
                .to_ascii_lowercase()
                .contains("has already been cancelled"),
            _ => false,
        }
    }

    /// Why a time was refused, for [`CalcomError::SlotUnavailable`].
    pub fn slot_refusal(&self) -> Option<SlotRefusal> {
        match self {
            Self::SlotUnavailable { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True for Cal.com's 400 on a start too soon (minimum booking notice) or too far
    /// ahead (booking window).
    pub fn is_outside_booking_window(&self) -> bool {
        self.slot_refusal() == Some(SlotRefusal::OutsideBookingWindow)
    }

    /// The raw response body (truncated to ~2 KiB), for HTTP errors.
    pub fn raw_body(&self) -> Option<&str> {
        match self {
            Self::RateLimited { body, .. }
            | Self::ManagedParent { body, .. }
            | Self::SlotUnavailable { body, .. }
            | Self::DuplicateBooking { body, .. }
            | Self::NotFound { body, .. }
            | Self::Unauthorized { body, .. }
            | Self::Validation { body, .. }
            | Self::Server { body, .. }
            | Self::Decode { body, .. } => Some(body),
            _ => None,
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Joins an error and its sources into one line.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        // hyper and reqwest often repeat the inner message in the outer one.
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = inner.source();
    }
    out
}

/// Classifies a reqwest failure. `is_connect` means no byte of the request left this
/// process, so nothing can exist on Cal.com's side; any later failure (timeout, reset,
/// truncated response) leaves the outcome open.
pub(crate) fn from_reqwest(err: reqwest::Error) -> CalcomError {
    // The URL may carry query values such as an attendee email: never keep it.
    let err = err.without_url();
    if err.is_builder() || err.is_connect() {
        return CalcomError::Transport {
            source: Box::new(err),
        };
    }
    let reason = if err.is_timeout() {
        format!("timed out waiting for Cal.com: {}", error_chain(&err))
    } else {
        format!(
            "connection failed after the request was sent: {}",
            error_chain(&err)
        )
    };
    CalcomError::OutcomeUnknown { reason }
}

/// What the caller knows that the response might not say.
pub(crate) struct ResponseContext<'a> {
    /// The API key, scrubbed from anything we keep (defence in depth against echoes).
    pub secret: &'a str,
    /// The event type id the request named, used if a managed-parent message cannot be parsed.
    pub event_type_id: Option<i64>,
}

/// Builds the error for a non-2xx answer.
pub(crate) fn from_response(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    ctx: &ResponseContext<'_>,
) -> CalcomError {
    let text = redact(&String::from_utf8_lossy(body), ctx.secret);
    let message = extract_message(&text).unwrap_or_else(|| {
        if text.trim().is_empty() {
            format!("HTTP {status} with an empty body")
        } else {
            truncate(text.trim(), 300)
        }
    });
    let body = truncate(&text, RAW_BODY_LIMIT);
    let lower = message.to_ascii_lowercase();

    if status == 401 || status == 403 {
        return CalcomError::Unauthorized {
            status,
            message,
            body,
        };
    }
    if status == 429 {
        let reset_after =
            reset_after_from_headers(headers, unix_now_secs()).unwrap_or(DEFAULT_RATE_LIMIT_RESET);
        return CalcomError::RateLimited {
            reset_after,
            message,
            body,
        };
    }
    if (400..500).contains(&status)
        && lower.contains("parent managed event type")
        && let Some(event_type_id) = managed_parent_id(&message).or(ctx.event_type_id)
    {
        return CalcomError::ManagedParent {
            event_type_id,
            message,
            body,
        };
    }
    if status >= 400
        && let Some(reason) = slot_refusal(&lower)
    {
        return CalcomError::SlotUnavailable {
            status,
            reason,
            message,
            body,
        };
    }
    match status {
        409 if lower.contains("booking_conflict_error") => {
            CalcomError::DuplicateBooking { message, body }
        }
        404 => CalcomError::NotFound { message, body },
        400..=499 => CalcomError::Validation {
            status,
            message,
            body,
        },
        _ => CalcomError::Server {
            status,
            message,
            body,
        },
    }
}

/// Texts (lower-cased) by which Cal.com says the time itself cannot be booked or
/// reserved, and what each means.
fn slot_refusal(lower: &str) -> Option<SlotRefusal> {
    const PATTERNS: [(&str, SlotRefusal); 10] = [
        (
            "already has booking at this time or is not available",
            SlotRefusal::HostUnavailable,
        ),
        (
            "can't be booked at the \"start\" time provided",
            SlotRefusal::OutsideBookingWindow,
        ),
        (
            "attempting to book a meeting in the past",
            SlotRefusal::InThePast,
        ),
        ("because it has no hosts", SlotRefusal::NoHosts),
        ("no more seats left", SlotRefusal::SeatsFull),
        (
            "already reserved by another user",
            SlotRefusal::AlreadyReserved,
        ),
        (
            "can't reserve a slot if the event is already booked",
            SlotRefusal::AlreadyBooked,
        ),
        ("no_available_users_found_error", SlotRefusal::Other),
        ("fixed_hosts_unavailable_for_booking", SlotRefusal::Other),
        (
            "round_robin_host_unavailable_for_booking",
            SlotRefusal::Other,
        ),
    ];
    PATTERNS
        .iter()
        .find(|(p, _)| lower.contains(p))
        .map(|(_, reason)| *reason)
}

/// Reads the id out of `Event type with id={id} is the parent managed event type …`.
fn managed_parent_id(message: &str) -> Option<i64> {
    let start = message.find("id=")? + 3;
    let digits: String = message[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// Pulls the human message out of any of Cal.com's three error shapes: the envelope
/// (`error.message`), Nest's plain body (`message`, sometimes an array), or anything else.
pub(crate) fn extract_message(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let from = |v: &serde_json::Value| -> Option<String> {
        match v {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Array(items) => {
                let parts: Vec<&str> = items.iter().filter_map(|i| i.as_str()).collect();
                (!parts.is_empty()).then(|| parts.join("; "))
            }
            _ => None,
        }
    };
    value
        .get("error")
        .and_then(|e| e.get("message"))
        .and_then(from)
        .or_else(|| value.get("message").and_then(from))
        .or_else(|| value.get("error").and_then(from))
}

/// Seconds until a 429 block ends, from any `X-RateLimit-Reset-*` header (or a bare
/// `X-RateLimit-Reset`, or `Retry-After`). Values above 1e9 are epoch seconds. With several
/// named limits the longest wait wins, so the next call is certain to pass.
pub(crate) fn reset_after_from_headers(headers: &HeaderMap, now_epoch: u64) -> Option<Duration> {
    let parse = |raw: &str| -> Option<Duration> {
        let secs: f64 = raw.trim().parse().ok()?;
        if !secs.is_finite() || secs < 0.0 {
            return None;
        }
        let secs = if secs > 1e9 {
            (secs - now_epoch as f64).max(0.0)
        } else {
            secs
        };
        Some(Duration::from_secs_f64(
            secs.min(MAX_RATE_LIMIT_RESET.as_secs_f64()),
        ))
    };
    let from_reset = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ratelimit-reset"))
        .filter_map(|(_, value)| value.to_str().ok().and_then(parse))
        .max();
    from_reset.or_else(|| {
        headers
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse)
    })
}

/// Cal.com's count for the key from a response's `X-RateLimit-Remaining-*` and
/// `X-RateLimit-Reset-*` headers (the smallest remaining of several named limits).
pub(crate) fn window_report(headers: &HeaderMap) -> Option<crate::budget::WindowReport> {
    let remaining = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-ratelimit-remaining"))
        .filter_map(|(_, value)| value.to_str().ok()?.trim().parse::<u32>().ok())
        .min()?;
    let reset_after = headers
        .iter()
        .any(|(name, _)| name.as_str().starts_with("x-ratelimit-reset"))
        .then(|| reset_after_from_headers(headers, unix_now_secs()))??;
    Some(crate::budget::WindowReport {
        remaining,
        reset_after,
    })
}

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Replaces the API key wherever it appears.
pub(crate) fn redact(text: &str, secret: &str) -> String {
    if secret.len() < 4 {
        return text.to_owned();
    }
    text.replace(secret, "[redacted]")
}

/// Cuts `text` to at most `limit` bytes on a char boundary, marking the cut.
pub(crate) fn truncate(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn ctx() -> ResponseContext<'static> {
        ResponseContext {
            secret: "cal_test_secret_key",
            event_type_id: None,
        }
    }

    fn classify(status: u16, body: &str) -> CalcomError {
        from_response(status, &HeaderMap::new(), body.as_bytes(), &ctx())
    }

    const MANAGED_PARENT: &str = r#"{"status":"error","timestamp":"2025-11-03T10:00:00.000Z","path":"/v2/bookings","error":{"code":"BadRequestException","message":"Event type with id=1234 is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.","details":{"message":"Event type with id=1234 is the parent managed event type that can't be booked. You have to provide the child event type id aka id of event type that has been assigned to one of the users.","error":"Bad Request","statusCode":400}}}"#;

    #[test]
    fn managed_parent_envelope_yields_the_parent_id() {
        let err = classify(400, MANAGED_PARENT);
        match &err {
            CalcomError::ManagedParent { event_type_id, .. } => assert_eq!(*event_type_id, 1234),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.kind(), "managed_parent");
        assert_eq!(err.status(), Some(400));
        assert!(
            err.message()
                .starts_with("Event type with id=1234 is the parent")
        );
        assert!(
            err.raw_body()
                .is_some_and(|b| b.contains("BadRequestException"))
        );
    }

    #[test]
    fn busy_host_texts_are_slot_unavailable() {
        for (status, text) in [
            (
                400,
                "User either already has booking at this time or is not available",
            ),
            (
                400,
                "One of the hosts either already has booking at this time or is not available",
            ),
            (
                400,
                "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating the minimum booking notice) or too far in the future (outside the event's scheduling window). Try fetching available slots first using the GET /v2/slots endpoint and then make a booking with \"start\" time equal to one of the available slots.",
            ),
            (400, "Attempting to book a meeting in the past."),
            (
                422,
                "Can't book this team event type because it has no hosts. Please, add at least 1 host to event type with id=5 belonging to team with id=7 and try again.",
            ),
        ] {
            let body = serde_json::json!({"status":"error","error":{"code":"BadRequestException","message":text}}).to_string();
            let err = classify(status, &body);
            assert_eq!(err.kind(), "slot_unavailable", "{text}");
            assert_eq!(err.status(), Some(status));
        }
    }

    #[test]
    fn each_refusal_text_names_its_reason() {
        for (status, text, reason) in [
            (
                400,
                "User either already has booking at this time or is not available",
                SlotRefusal::HostUnavailable,
            ),
            (
                400,
                "The event type can't be booked at the \"start\" time provided. This could be because it's too soon (violating the minimum booking notice) or too far in the future (outside the event's scheduling window).",
                SlotRefusal::OutsideBookingWindow,
            ),
            (
                400,
                "Attempting to book a meeting in the past.",
                SlotRefusal::InThePast,
            ),
            (
                422,
                "This time slot is already reserved by another user. Please choose a different time.",
                SlotRefusal::AlreadyReserved,
            ),
            (
                422,
                "Can't reserve a slot if the event is already booked.",
                SlotRefusal::AlreadyBooked,
            ),
            (
                500,
                "fixed_hosts_unavailable_for_booking",
                SlotRefusal::Other,
            ),
        ] {
            let body = serde_json::json!({"status":"error","error":{"code":"X","message":text}})
                .to_string();
            let err = classify(status, &body);
            assert_eq!(err.slot_refusal(), Some(reason), "{text}");
            assert_eq!(err.kind(), "slot_unavailable");
            assert_eq!(
                err.is_outside_booking_window(),
                reason == SlotRefusal::OutsideBookingWindow
            );
        }
        assert_eq!(classify(400, r#"{"message":"nope"}"#).slot_refusal(), None);
        assert_eq!(
            SlotRefusal::OutsideBookingWindow.as_str(),
            "outside_booking_window"
        );
    }

    #[test]
    fn plain_nest_body_conflict_is_duplicate_booking() {
        let err = classify(
            409,
            r#"{"statusCode":409,"message":"booking_conflict_error"}"#,
        );
        assert_eq!(err.kind(), "duplicate_booking");
        assert_eq!(err.message(), "booking_conflict_error");
    }

    #[test]
    fn already_cancelled_plain_400_is_recognised() {
        let err = classify(
            400,
            r#"{"statusCode":400,"message":"This booking has already been cancelled."}"#,
        );
        assert_eq!(err.kind(), "validation");
        assert!(err.is_already_cancelled());
        assert!(!classify(400, r#"{"message":"Something else"}"#).is_already_cancelled());
    }

    #[test]
    fn zod_envelope_message_is_kept() {
        let err = classify(
            400,
            r#"{"status":"error","error":{"code":"BAD_REQUEST","message":"responses - {title}error_required_field, "}}"#,
        );
        assert_eq!(err.kind(), "validation");
        assert_eq!(err.message(), "responses - {title}error_required_field, ");
    }

    #[test]
    fn nest_validation_array_messages_are_joined() {
        let err = classify(
            400,
            r#"{"statusCode":400,"message":["a must be a string","b should not exist"],"error":"Bad Request"}"#,
        );
        assert_eq!(err.message(), "a must be a string; b should not exist");
    }

    #[test]
    fn unknown_bodies_fall_back_to_raw_text() {
        let err = classify(502, "<html>Bad gateway</html>");
        assert_eq!(err.kind(), "server");
        assert_eq!(err.message(), "<html>Bad gateway</html>");
        let err = classify(500, "");
        assert_eq!(err.message(), "HTTP 500 with an empty body");
        let err = classify(
            500,
            r#"{"statusCode":500,"message":"Internal server error"}"#,
        );
        assert_eq!(err.message(), "Internal server error");
    }

    #[test]
    fn status_families_map_to_variants() {
        assert_eq!(classify(401, r#"{"status":"error","error":{"code":"UnauthorizedException","message":"ApiAuthStrategy - api key - Invalid API Key"}}"#).kind(), "unauthorized");
        assert_eq!(classify(403, "{}").kind(), "unauthorized");
        assert_eq!(
            classify(404, r#"{"status":"error","error":{"message":"Booking with uid=x was not found in the database"}}"#).kind(),
            "not_found"
        );
        assert_eq!(
            classify(409, r#"{"message":"other conflict"}"#).kind(),
            "validation"
        );
        assert_eq!(classify(422, r#"{"message":"nope"}"#).kind(), "validation");
        assert_eq!(classify(503, "{}").kind(), "server");
    }

    #[test]
    fn raw_bodies_are_truncated_and_scrubbed_of_the_key() {
        let long = format!(
            r#"{{"message":"bad key cal_test_secret_key","pad":"{}"}}"#,
            "x".repeat(5000)
        );
        let err = classify(400, &long);
        let body = err.raw_body().unwrap_or_default();
        assert!(body.len() <= RAW_BODY_LIMIT + 4);
        assert!(!body.contains("cal_test_secret_key"));
        assert!(!err.message().contains("cal_test_secret_key"));
        assert!(!format!("{err:?}").contains("cal_test_secret_key"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let text = "é".repeat(2000);
        let cut = truncate(&text, 2049);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short", 10), "short");
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{e}")),
                HeaderValue::from_str(value).unwrap_or_else(|e| panic!("{e}")),
            );
        }
        map
    }

    #[test]
    fn reset_header_in_seconds_with_any_suffix() {
        let h = headers(&[
            ("X-RateLimit-Limit-Default", "120"),
            ("X-RateLimit-Remaining-Default", "0"),
            ("X-RateLimit-Reset-Default", "42"),
        ]);
        assert_eq!(
            reset_after_from_headers(&h, 1_700_000_000),
            Some(Duration::from_secs(42))
        );
        let h = headers(&[
            ("x-ratelimit-reset-short", "3"),
            ("x-ratelimit-reset-long", "17"),
        ]);
        assert_eq!(
            reset_after_from_headers(&h, 0),
            Some(Duration::from_secs(17))
        );
    }

    #[test]
    fn reset_header_as_epoch_seconds() {
        let h = headers(&[("X-RateLimit-Reset-Default", "1700000030")]);
        assert_eq!(
            reset_after_from_headers(&h, 1_700_000_000),
            Some(Duration::from_secs(30))
        );
        // An epoch already past means "now".
        assert_eq!(
            reset_after_from_headers(&h, 1_700_000_100),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn reset_falls_back_to_retry_after_then_sixty_seconds() {
        let h = headers(&[("Retry-After", "5")]);
        assert_eq!(
            reset_after_from_headers(&h, 0),
            Some(Duration::from_secs(5))
        );
        let h = headers(&[("X-RateLimit-Reset-Default", "soon")]);
        assert_eq!(reset_after_from_headers(&h, 0), None);
        let err = from_response(429, &h, b"{}", &ctx());
        match err {
            CalcomError::RateLimited { reset_after, .. } => {
                assert_eq!(reset_after, DEFAULT_RATE_LIMIT_RESET)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn rate_limited_reads_the_throttler_envelope() {
        let h = headers(&[("X-RateLimit-Reset-Default", "12")]);
        let err = from_response(
            429,
            &h,
            br#"{"status":"error","error":{"code":"ThrottlerException","message":"CustomThrottlerGuard - Too many requests. Please try again later."}}"#,
            &ctx(),
        );
        match &err {
            CalcomError::RateLimited {
                reset_after,
                message,
                ..
            } => {
                assert_eq!(*reset_after, Duration::from_secs(12));
                assert!(message.starts_with("CustomThrottlerGuard"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(err.kind(), "rate_limited");
        assert_eq!(err.status(), Some(429));
    }

    #[test]
    fn managed_parent_without_parsable_id_uses_the_request_id() {
        let c = ResponseContext {
            secret: "",
            event_type_id: Some(77),
        };
        let err = from_response(
            400,
            &HeaderMap::new(),
            br#"{"message":"This is the parent managed event type that can't be booked."}"#,
            &c,
        );
        assert!(matches!(
            err,
            CalcomError::ManagedParent {
                event_type_id: 77,
                ..
            }
        ));
    }
}
