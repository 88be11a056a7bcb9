//! The HTTP face of the sim: Cal.com's `/v2/…` routes behind one gate (version routing,
//! throttling, fault injection, request counting) and the `/__sim/…` admin API.

use std::collections::BTreeMap;
use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use chrono::{Duration, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::Sim;
use crate::config::{Faults, RateLimitConfig, WebhookConfig};
use crate::error::{CalError, INVALID_KEY, LIST_NO_AUTH, NO_AUTH};
use crate::http_fault::Fault;
use crate::model::{AttendeeRecord, BookingRecord, HostRecord, SchedulingType};
use crate::seed::{Seed, SeedBooking, SeedReservation};
use crate::store::{BookingFilter, NewBooking, ReserveInput, TeamEventTypeInput, slots_output};
use crate::time::parse_instant;

type ApiResult = Result<Response, CalError>;

impl IntoResponse for CalError {
    /// The body needs the request path, which the gate knows: it is built there.
    fn into_response(self) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self.status;
        response.extensions_mut().insert(self);
        response
    }
}

fn success(status: StatusCode, data: Value) -> Response {
    (
        status,
        axum::Json(json!({"status": "success", "data": data})),
    )
        .into_response()
}

pub(crate) fn router(sim: Sim) -> Router {
    let v2 = Router::new()
        .route("/v2/bookings", post(create_booking).get(list_bookings))
        .route("/v2/bookings/{uid}", get(get_booking))
        .route("/v2/bookings/{uid}/cancel", post(cancel_booking))
        .route("/v2/bookings/{uid}/reschedule", post(reschedule_booking))
        .route("/v2/event-types", get(list_event_types))
        .route(
            "/v2/event-types/{id}",
            get(get_event_type).patch(update_event_type),
        )
        .route(
            "/v2/teams/{team_id}/event-types",
            get(list_team_event_types).post(create_team_event_type),
        )
        .route(
            "/v2/teams/{team_id}/event-types/{id}",
            get(get_team_event_type).patch(update_team_event_type),
        )
        .route("/v2/me", get(get_me))
        .route(
            "/v2/teams/{team_id}/memberships",
            get(list_team_memberships),
        )
        .route("/v2/slots", get(get_slots))
        .route("/v2/slots/reservations", post(reserve_slot))
        .route(
            "/v2/slots/reservations/{uid}",
            get(get_reservation)
                .patch(update_reservation)
                .delete(delete_reservation),
        )
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(sim.clone(), gate));
    let admin = Router::new()
        .route("/__sim/state", get(admin_state))
        .route("/__sim/seed", post(admin_seed))
        .route("/__sim/reset", post(admin_reset))
        .route("/__sim/faults", put(admin_faults).get(admin_get_faults))
        .route("/__sim/rate-limit", put(admin_rate_limit))
        .route("/__sim/webhook", put(admin_webhook))
        .route("/__sim/bookings", post(admin_insert_booking))
        .route("/__sim/bookings/{uid}", delete(admin_remove_booking))
        .route("/__sim/reservations", post(admin_insert_reservation));
    v2.merge(admin).with_state(sim)
}

async fn no_route(method: Method, uri: axum::http::Uri) -> ApiResult {
    Err(CalError::no_route(method.as_str(), uri.path()))
}

// ---- the gate ---------------------------------------------------------------------------

/// Route names used for fault rules and request counts.
pub const ROUTE_NAMES: [&str; 14] = [
    "bookings.create",
    "bookings.list",
    "bookings.get",
    "bookings.cancel",
    "bookings.reschedule",
    "event_types.list",
    "event_types.get",
    "event_types.update",
    "event_types.team_list",
    "event_types.team_get",
    "event_types.team_create",
    "event_types.team_update",
    "slots.list",
    "slots.reservations",
];

fn route_name(method: &Method, path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("POST", ["v2", "bookings"]) => "bookings.create",
        ("GET", ["v2", "bookings"]) => "bookings.list",
        ("GET", ["v2", "bookings", _]) => "bookings.get",
        ("POST", ["v2", "bookings", _, "cancel"]) => "bookings.cancel",
        ("POST", ["v2", "bookings", _, "reschedule"]) => "bookings.reschedule",
        ("GET", ["v2", "event-types"]) => "event_types.list",
        ("GET", ["v2", "event-types", _]) => "event_types.get",
        ("PATCH", ["v2", "event-types", _]) => "event_types.update",
        ("GET", ["v2", "teams", _, "event-types"]) => "event_types.team_list",
        ("POST", ["v2", "teams", _, "event-types"]) => "event_types.team_create",
        ("GET", ["v2", "teams", _, "event-types", _]) => "event_types.team_get",
        ("PATCH", ["v2", "teams", _, "event-types", _]) => "event_types.team_update",
        (_, ["v2", "slots"]) => "slots.list",
        (_, ["v2", "slots", "reservations", ..]) => "slots.reservations",
        _ => "other",
    }
}

const KNOWN_VERSIONS: [&str; 5] = [
    "2024-04-15",
    "2024-06-11",
    "2024-06-14",
    "2024-08-13",
    "2024-09-04",
];

/// Cal.com routes by `cal-api-version`; a missing or unknown value means 2024-04-15
/// (FACTS 1.3). Returns the refusal for a request no 2024-era controller of ours serves.
fn version_check(method: &Method, path: &str, headers: &HeaderMap) -> Result<(), CalError> {
    let sent = headers
        .get("cal-api-version")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let version = sent
        .filter(|v| KNOWN_VERSIONS.contains(v))
        .unwrap_or("2024-04-15");
    let legacy = |want: &str| {
        CalError::bad_request(format!(
            "calcom-sim does not emulate the cal-api-version {version} controller of {path} (the header was {}); send cal-api-version: {want}",
            sent.map_or_else(|| "missing".to_owned(), |s| format!("{s:?}"))
        ))
    };
    let no_route = || CalError::no_route(method.as_str(), path);
    if path.starts_with("/v2/bookings") {
        match version {
            "2024-08-13" => Ok(()),
            "2024-09-04" => Err(no_route()),
            _ => Err(legacy("2024-08-13")),
        }
    } else if path.starts_with("/v2/slots") {
        // The legacy slots controller only has /available and /reserve.
        if version == "2024-09-04" {
            Ok(())
        } else {
            Err(no_route())
        }
    } else if path.starts_with("/v2/event-types") {
        match version {
            "2024-06-14" => Ok(()),
            "2024-08-13" | "2024-09-04" => Err(no_route()),
            _ => Err(legacy("2024-06-14")),
        }
    } else {
        Ok(())
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned())
}

/// Whom the throttler counts the request against (FACTS 7).
fn tracker(headers: &HeaderMap) -> String {
    if let Some(token) = bearer(headers).filter(|t| !t.is_empty()) {
        let hash = crate::store::key_hash(&token);
        if token.starts_with("cal_") {
            return format!("api_key_{hash}");
        }
        return format!("access_token_{hash}");
    }
    if let Some(id) = headers.get("x-cal-client-id").and_then(|v| v.to_str().ok()) {
        return format!("oauth_client_{id}");
    }
    "ip_anonymous".to_owned()
}

/// Extra data the gate hands to handlers.
#[derive(Debug, Clone, Copy)]
struct RaceWindow(StdDuration);

async fn gate(AxState(sim): AxState<Sim>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let route = route_name(&method, &path);
    let headers = request.headers().clone();

    if let Err(err) = version_check(&method, &path, &headers) {
        sim.count(route, err.status.as_u16());
        return finish(err.into_response(), &path);
    }

    let limit_headers = match sim.throttle(|| tracker(&headers)) {
        Ok(h) => h,
        Err(h) => {
            sim.count(route, 429);
            let mut response = finish(CalError::throttled().into_response(), &path);
            apply_headers(&mut response, &h);
            return response;
        }
    };

    let (fault, latency, race) = sim.draw_fault(route);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut response = match fault {
        Fault::RateLimited => {
            let block = sim
                .rate_limit()
                .unwrap_or_else(RateLimitConfig::calcom_default);
            let h = crate::LimitHeaders {
                limit: block.limit,
                remaining: 0,
                reset_secs: block.block.as_secs().max(1),
            };
            sim.count(route, 429);
            let mut response = finish(CalError::throttled().into_response(), &path);
            apply_headers(&mut response, &h);
            return response;
        }
        Fault::Hang => {
            sim.count(route, 0);
            sim.until_shutdown(StdDuration::from_secs(3600)).await;
            return lost_response();
        }
        Fault::Error => finish(CalError::internal().into_response(), &path),
        Fault::None | Fault::LostResponse => {
            let mut request = request;
            request.extensions_mut().insert(RaceWindow(race));
            finish(next.run(request).await, &path)
        }
    };
    sim.count(route, response.status().as_u16());
    if fault == Fault::LostResponse {
        return lost_response();
    }
    apply_headers(&mut response, &limit_headers);
    if !response.headers().contains_key("x-request-id") {
        let id = headers
            .get("x-request-id")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("unknown-request-id"));
        response.headers_mut().insert("x-request-id", id);
    }
    response
}

/// Fills in the body of a `CalError` answer (it needs the path).
fn finish(response: Response, path: &str) -> Response {
    match response.extensions().get::<CalError>() {
        Some(err) => err.clone().into_response_at(path),
        None => response,
    }
}

/// A response whose body fails at once: hyper aborts the connection, so the client sees
/// the request sent and no complete answer.
fn lost_response() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::other("calcom-sim: response lost"))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn apply_headers(response: &mut Response, h: &crate::LimitHeaders) {
    if h.limit == 0 {
        return;
    }
    let pairs = [
        ("limit", h.limit.to_string()),
        ("remaining", h.remaining.to_string()),
        ("reset", h.reset_secs.to_string()),
    ];
    for (name, value) in pairs {
        if let Ok(v) = HeaderValue::from_str(&value) {
            let headers = response.headers_mut();
            // Cal.com suffixes the throttler name; the bare form is what the throttler
            // library emits for its default throttler, and some clients read only that.
            for header in [
                format!("x-ratelimit-{name}-default"),
                format!("x-ratelimit-{name}"),
            ] {
                if let Ok(n) = axum::http::HeaderName::try_from(header) {
                    headers.insert(n, v.clone());
                }
            }
        }
    }
}

// ---- auth ---------------------------------------------------------------------------

/// Optional auth: no header is anonymous, a bad key is a 401 (FACTS 1.2).
fn optional_user(sim: &Sim, headers: &HeaderMap) -> Result<Option<i64>, CalError> {
    match bearer(headers) {
        None => Ok(None),
        Some(token) => sim
            .with_data(|d| d.user_by_key(&token))
            .map(Some)
            .ok_or_else(|| CalError::unauthorized(INVALID_KEY)),
    }
}

fn required_user(sim: &Sim, headers: &HeaderMap) -> Result<i64, CalError> {
    optional_user(sim, headers)?.ok_or_else(|| CalError::unauthorized(NO_AUTH))
}

// ---- bookings -----------------------------------------------------------------------

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, CalError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(CalError::bad_request("Request body must be a JSON object")),
        Err(e) => Err(CalError::bad_request(format!("Invalid JSON body: {e}"))),
    }
}

fn pipe_error(property: &str, constraint: &str) -> CalError {
    CalError::bad_request(format!("{property} property is wrong,{constraint}"))
}

const BOOKING_FIELDS: [&str; 17] = [
    "start",
    "attendee",
    "eventTypeId",
    "eventTypeSlug",
    "username",
    "teamSlug",
    "organizationSlug",
    "bookingFieldsResponses",
    "metadata",
    "lengthInMinutes",
    "guests",
    "location",
    "meetingUrl",
    "routing",
    "emailVerificationCode",
    "instant",
    "recurrenceCount",
];

const LANGUAGES: [&str; 43] = [
    "ar", "bg", "bn", "ca", "cs", "da", "de", "el", "en", "es", "es-419", "et", "eu", "fi", "fr",
    "he", "hr", "hu", "id", "it", "iw", "ja", "km", "ko", "lv", "nl", "no", "pl", "pt", "pt-BR",
    "ro", "ru", "sk", "sr", "sv", "ta", "th", "tr", "uk", "vi", "zh-CN", "zh-TW", "az",
];

fn valid_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn valid_phone(phone: &str) -> bool {
    phone.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.chars().all(|c| c.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Cal.com's `validate-metadata`: ≤ 50 keys, keys ≤ 40 chars, values a string ≤ 500 chars,
/// a number or a boolean (FACTS 2.1). The message wording is the sim's.
fn validate_metadata(meta: &Value) -> Result<Map<String, Value>, CalError> {
    let Value::Object(map) = meta else {
        return Err(pipe_error("metadata", "metadata must be an object"));
    };
    if map.len() > 50 {
        return Err(pipe_error(
            "metadata",
            "Metadata can have at most 50 keys, each key up to 40 characters and string values up to 500 characters",
        ));
    }
    for (k, v) in map {
        if k.chars().count() > 40 {
            return Err(pipe_error(
                "metadata",
                &format!("Metadata key '{k}' is longer than 40 characters"),
            ));
        }
        match v {
            Value::String(s) if s.chars().count() > 500 => {
                return Err(pipe_error(
                    "metadata",
                    &format!("Metadata value of key '{k}' is longer than 500 characters"),
                ));
            }
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
            _ => {
                return Err(pipe_error(
                    "metadata",
                    &format!("Metadata value of key '{k}' must be a string, number or boolean"),
                ));
            }
        }
    }
    Ok(map.clone())
}

fn parse_attendee(v: Option<&Value>) -> Result<AttendeeRecord, CalError> {
    let Some(Value::Object(a)) = v else {
        return Err(pipe_error("attendee", "attendee must be an object"));
    };
    for key in a.keys() {
        if !["name", "email", "timeZone", "phoneNumber", "language"].contains(&key.as_str()) {
            return Err(pipe_error(
                "attendee",
                &format!("property {key} should not exist"),
            ));
        }
    }
    let text = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_owned);
    let name = text("name")
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| pipe_error("attendee", "name must be a string"))?;
    let time_zone = text("timeZone")
        .ok_or_else(|| pipe_error("attendee", "timeZone must be a valid IANA time-zone"))?;
    if time_zone.parse::<Tz>().is_err() {
        return Err(pipe_error(
            "attendee",
            "timeZone must be a valid IANA time-zone",
        ));
    }
    let email = text("email");
    let phone = text("phoneNumber");
    if email.is_none() && phone.is_none() {
        return Err(pipe_error(
            "attendee",
            "Attendee must have at least one contact method: email or phoneNumber",
        ));
    }
    if let Some(e) = &email
        && !valid_email(e)
    {
        return Err(pipe_error("attendee", "email must be an email"));
    }
    if let Some(p) = &phone
        && !valid_phone(p)
    {
        return Err(pipe_error(
            "attendee",
            "phoneNumber must be a valid phone number",
        ));
    }
    let language = text("language").unwrap_or_else(|| "en".to_owned());
    if !LANGUAGES.contains(&language.as_str()) {
        return Err(pipe_error(
            "attendee",
            &format!(
                "language must be one of the following values: {}",
                LANGUAGES.join(", ")
            ),
        ));
    }
    Ok(AttendeeRecord {
        name,
        email,
        time_zone,
        language,
        phone_number: phone,
    })
}

/// The address Cal.com stores for an attendee who gave only a phone number: the number
/// without its `+`, at `sms.cal.com` (`packages/lib/contructEmailFromPhoneNumber.ts` in
/// calcom/cal.com; the v2 e2e test `team-bookings.e2e-spec.ts` expects
/// `919876543210@sms.cal.com` for `+919876543210`). Newer upstream keeps only the digits;
/// for the E.164 numbers the pipe accepts both give the same address.
fn sms_placeholder_email(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    format!("{digits}@sms.cal.com")
}

/// The create-booking pipe: whitelist + forbidNonWhitelisted, then field checks.
fn parse_new_booking(sim: &Sim, body: &Map<String, Value>) -> Result<NewBooking, CalError> {
    for key in body.keys() {
        if !BOOKING_FIELDS.contains(&key.as_str()) {
            return Err(pipe_error(key, &format!("property {key} should not exist")));
        }
    }
    let start = body
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .ok_or_else(|| pipe_error("start", "start must be a valid ISO 8601 date string"))?;
    let attendee = parse_attendee(body.get("attendee"))?;
    let metadata = match body.get("metadata") {
        Some(m) => validate_metadata(m)?,
        None => Map::new(),
    };
    let event_type_id = match body.get("eventTypeId") {
        Some(v) => v
            .as_i64()
            .ok_or_else(|| pipe_error("eventTypeId", "eventTypeId must be an integer number"))?,
        None => {
            let slug = body.get("eventTypeSlug").and_then(Value::as_str);
            let username = body.get("username").and_then(Value::as_str);
            let team = body.get("teamSlug").and_then(Value::as_str);
            let found = sim.with_data(|d| match (slug, username, team) {
                (Some(slug), Some(user), _) => d.usernames.get(user).and_then(|uid| {
                    d.event_types
                        .values()
                        .find(|e| e.owner_id == Some(*uid) && e.slug == slug)
                        .map(|e| e.id)
                }),
                (Some(slug), None, Some(team)) => {
                    d.teams.values().find(|t| t.slug == team).and_then(|t| {
                        d.event_types
                            .values()
                            .find(|e| e.team_id == Some(t.id) && e.slug == slug)
                            .map(|e| e.id)
                    })
                }
                _ => None,
            });
            match (slug, found) {
                (Some(slug), None) => {
                    return Err(CalError::not_found(format!(
                        "Event type with slug {slug} not found"
                    )));
                }
                (Some(_), Some(id)) => id,
                (None, _) => {
                    return Err(CalError::bad_request(
                        "Either eventTypeId or eventTypeSlug + username or eventTypeSlug + teamSlug must be provided",
                    ));
                }
            }
        }
    };
    if body.contains_key("lengthInMinutes") {
        return Err(CalError::bad_request(
            "Can't specify 'lengthInMinutes' because event type does not have multiple possible lengths. Please, remove the 'lengthInMinutes' field from the request.",
        ));
    }
    let mut fields = match body.get("bookingFieldsResponses") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(pipe_error(
                "bookingFieldsResponses",
                "bookingFieldsResponses must be an object",
            ));
        }
        None => Map::new(),
    };
    fields.insert("name".into(), json!(attendee.name));
    if let Some(e) = &attendee.email {
        fields.insert("email".into(), json!(e));
    }
    if let Some(p) = &attendee.phone_number {
        fields.insert("attendeePhoneNumber".into(), json!(p));
    }
    let mut attendee = attendee;
    if attendee.email.is_none() {
        attendee.email = attendee.phone_number.as_deref().map(sms_placeholder_email);
    }
    Ok(NewBooking {
        start,
        event_type_id,
        attendee,
        metadata,
        booking_fields_responses: fields,
    })
}

async fn create_booking(
    AxState(sim): AxState<Sim>,
    race: Option<axum::Extension<RaceWindow>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let body = parse_body(&body)?;
    let new = parse_new_booking(&sim, &body)?;
    let race = race.map(|r| r.0.0).unwrap_or_default();
    let now = Utc::now();
    // Cal.com reads the booking window's days in the booker's zone.
    let booker_tz: Tz = new.attendee.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let booking = if race.is_zero() {
        sim.with_data_mut(|d| {
            let plan = d.plan(new.event_type_id, new.start, now, None, &booker_tz)?;
            d.commit(plan, new, now, None)
        })?
    } else {
        // Cal.com checks availability and inserts in separate steps; a twin request in
        // between passes the check and is stopped only by the unique key.
        let plan =
            sim.with_data(|d| d.plan(new.event_type_id, new.start, now, None, &booker_tz))?;
        tokio::time::sleep(race).await;
        sim.with_data_mut(|d| d.commit(plan, new, now, None))?
    };
    let title = sim.event_title(booking.event_type_id);
    sim.send_webhook(
        &booking,
        crate::webhook::created_payload(&booking, &title, None),
    );
    Ok(success(StatusCode::CREATED, booking.output()))
}

fn not_found_booking(uid: &str) -> CalError {
    CalError::not_found(format!(
        "Booking with uid={uid} was not found in the database"
    ))
}

async fn get_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let booking = sim
        .with_data(|d| d.booking_by_uid(&uid).cloned())
        .ok_or_else(|| not_found_booking(&uid))?;
    Ok(success(StatusCode::OK, booking.output()))
}

fn query_instant(
    q: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<chrono::DateTime<Utc>>, CalError> {
    match q.get(key) {
        None => Ok(None),
        Some(raw) => parse_instant(raw).map(Some).ok_or_else(|| {
            CalError::bad_request(format!("{key} must be a valid ISO 8601 date string"))
        }),
    }
}

fn query_u32(q: &BTreeMap<String, String>, key: &str) -> Result<Option<u32>, CalError> {
    match q.get(key) {
        None => Ok(None),
        Some(raw) => raw
            .parse()
            .map(Some)
            .map_err(|_| CalError::bad_request(format!("{key} must be an integer number"))),
    }
}

async fn list_bookings(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    let caller = match bearer(&headers) {
        None => return Err(CalError::forbidden(LIST_NO_AUTH)),
        Some(_) => required_user(&sim, &headers)?,
    };
    let mut ids: Vec<i64> = Vec::new();
    if let Some(raw) = q.get("eventTypeId") {
        ids.push(raw.parse().map_err(|_| {
            CalError::bad_request(
                "eventTypeId must be a number conforming to the specified constraints",
            )
        })?);
    }
    if let Some(raw) = q.get("eventTypeIds") {
        for part in raw.split(',').filter(|p| !p.trim().is_empty()) {
            ids.push(
                part.trim()
                    .parse()
                    .map_err(|_| CalError::bad_request("eventTypeIds must be a list of numbers"))?,
            );
        }
    }
    let take = query_u32(&q, "take")?.unwrap_or(100);
    if !(1..=250).contains(&take) {
        return Err(CalError::bad_request("take must not be greater than 250"));
    }
    let skip = query_u32(&q, "skip")?.unwrap_or(0);
    let mut sort = None;
    for (key, field) in [
        ("sortStart", "start"),
        ("sortEnd", "end"),
        ("sortCreated", "created"),
        ("sortUpdatedAt", "updated"),
    ] {
        if let Some(order) = q.get(key) {
            sort = Some((field, order == "desc"));
        }
    }
    let filter = BookingFilter {
        event_type_ids: (!ids.is_empty()).then_some(ids),
        // A `+` in a query string arrives as a space (FACTS 4.1).
        attendee_email: q.get("attendeeEmail").map(|e| e.replace(' ', "+")),
        attendee_name: q.get("attendeeName").cloned(),
        booking_uid: q.get("bookingUid").cloned(),
        status: q
            .get("status")
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect())
            .unwrap_or_default(),
        after_start: query_instant(&q, "afterStart")?,
        before_end: query_instant(&q, "beforeEnd")?,
        after_created_at: query_instant(&q, "afterCreatedAt")?,
        before_created_at: query_instant(&q, "beforeCreatedAt")?,
        after_updated_at: query_instant(&q, "afterUpdatedAt")?,
        before_updated_at: query_instant(&q, "beforeUpdatedAt")?,
        sort,
    };
    let now = Utc::now();
    let (page, total): (Vec<BookingRecord>, usize) = sim.with_data(|d| {
        let all = d.list(caller, &filter, now);
        let total = all.len();
        (
            all.into_iter()
                .skip(skip as usize)
                .take(take as usize)
                .cloned()
                .collect(),
            total,
        )
    });
    let returned = page.len();
    let take_usize = take as usize;
    let total_pages = total.div_ceil(take_usize);
    let current_page = skip as usize / take_usize + 1;
    let remaining = total.saturating_sub(skip as usize + returned);
    let body = json!({
        "status": "success",
        "data": page.iter().map(BookingRecord::output).collect::<Vec<_>>(),
        "pagination": {
            "returnedItems": returned,
            "totalItems": total,
            "itemsPerPage": take,
            "remainingItems": remaining,
            "currentPage": current_page,
            "totalPages": total_pages,
            "hasNextPage": remaining > 0,
            "hasPreviousPage": skip > 0,
        },
    });
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

async fn cancel_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let body = if body.is_empty() {
        Map::new()
    } else {
        parse_body(&body)?
    };
    let reason = body
        .get("cancellationReason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let now = Utc::now();
    let booking = sim.with_data_mut(|d| d.cancel(&uid, caller, reason, now))?;
    let title = sim.event_title(booking.event_type_id);
    sim.send_webhook(
        &booking,
        crate::webhook::cancelled_payload(&booking, &title),
    );
    Ok(success(StatusCode::OK, booking.output()))
}

async fn reschedule_booking(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let body = parse_body(&body)?;
    for key in body.keys() {
        if ![
            "start",
            "rescheduledBy",
            "reschedulingReason",
            "emailVerificationCode",
            "seatUid",
        ]
        .contains(&key.as_str())
        {
            return Err(pipe_error(key, &format!("property {key} should not exist")));
        }
    }
    let start = body
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_instant)
        .ok_or_else(|| pipe_error("start", "start must be a valid ISO 8601 date string"))?;
    let reason = body
        .get("reschedulingReason")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let by = body
        .get("rescheduledBy")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            caller.and_then(|c| sim.with_data(|d| d.users.get(&c).map(|u| u.email.clone())))
        });
    let now = Utc::now();
    let (old, new) = sim.with_data_mut(|d| {
        // A missing booking here is a plain Error in Cal.com: a 500 (FACTS 4.4).
        let old = d.booking_by_uid(&uid).cloned().ok_or_else(CalError::internal)?;
        if old.status == crate::model::BookingStatus::Cancelled {
            return Err(CalError::bad_request(match &old.rescheduled_to_uid {
                Some(next) => format!(
                    "Can't reschedule booking with uid={uid} because it has been cancelled and rescheduled already to booking with uid={next}. You need to reschedule the latest booking."
                ),
                None => format!(
                    "Can't reschedule booking with uid={uid} because it has been cancelled. Please book a new time instead."
                ),
            }));
        }
        let event_type_id = old.event_type_id.ok_or_else(CalError::internal)?;
        let attendee = old.attendees.first().cloned().ok_or_else(CalError::internal)?;
        let booker_tz: Tz = attendee.time_zone.parse().unwrap_or(chrono_tz::UTC);
        let plan = d.plan(event_type_id, start, now, Some(&uid), &booker_tz)?;
        let new = NewBooking {
            start,
            event_type_id,
            attendee,
            metadata: old.metadata.clone(),
            booking_fields_responses: old.booking_fields_responses.clone(),
        };
        // Free the old slot first so a move that overlaps itself does not collide; put it
        // back if the insert fails.
        d.release_busy(&uid);
        let created =
            match d.commit(plan, new, now, Some((uid.clone(), reason.clone(), by.clone()))) {
                Ok(created) => created,
                Err(e) => {
                    d.restore_busy(&uid);
                    return Err(e);
                }
            };
        let old = d
            .mark_rescheduled(&uid, &created.uid, by.clone(), now)
            .unwrap_or(old);
        Ok((old, created))
    })?;
    let title = sim.event_title(new.event_type_id);
    sim.send_webhook(
        &new,
        crate::webhook::created_payload(&new, &title, Some(&old)),
    );
    Ok(success(StatusCode::CREATED, new.output()))
}

// ---- event types --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventTypesQuery {
    username: Option<String>,
    event_slug: Option<String>,
}

async fn list_event_types(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<EventTypesQuery>,
) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let Some(username) = q.username else {
        // Without a username Cal.com lists the caller's own types.
        let caller = caller.ok_or_else(|| CalError::unauthorized(NO_AUTH))?;
        let data = sim.with_data(|d| {
            d.event_types
                .values()
                .filter(|e| e.owner_id == Some(caller) && e.team_id.is_none())
                .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
                .map(|e| d.personal_output(e))
                .collect::<Vec<_>>()
        });
        return Ok(success(StatusCode::OK, json!(data)));
    };
    let data = sim.with_data(|d| {
        let Some(user) = d.usernames.get(&username).copied() else {
            return Vec::new();
        };
        d.event_types
            .values()
            .filter(|e| e.owner_id == Some(user) && e.team_id.is_none())
            .filter(|e| !e.hidden || caller == Some(user))
            .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
            .map(|e| d.personal_output(e))
            .collect::<Vec<_>>()
    });
    Ok(success(StatusCode::OK, json!(data)))
}

fn parse_id(raw: &str, what: &str) -> Result<i64, CalError> {
    raw.parse()
        .map_err(|_| CalError::bad_request(format!("Validation failed ({what} is expected)")))
}

async fn get_event_type(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let id = parse_id(&id, "numeric string")?;
    let data = sim
        .with_data(|d| {
            d.event_types
                .get(&id)
                .filter(|e| e.owner_id == Some(caller))
                .map(|e| d.personal_output(e))
        })
        .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
    Ok(success(StatusCode::OK, data))
}

async fn update_event_type(
    AxState(sim): AxState<Sim>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let id = parse_id(&id, "numeric string")?;
    let body = parse_body(&body)?;
    let data = sim.with_data_mut(|d| {
        d.update_personal_event_type(id, caller, &body)?;
        d.event_types
            .get(&id)
            .map(|e| d.personal_output(e))
            .ok_or_else(CalError::internal)
    })?;
    Ok(success(StatusCode::OK, data))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TeamEventTypesQuery {
    event_slug: Option<String>,
}

async fn list_team_event_types(
    AxState(sim): AxState<Sim>,
    Path(team_id): Path<String>,
    Query(q): Query<TeamEventTypesQuery>,
) -> ApiResult {
    let team_id = parse_id(&team_id, "numeric string")?;
    let data = sim.with_data(|d| {
        d.event_types
            .values()
            .filter(|e| e.team_id == Some(team_id))
            .filter(|e| q.event_slug.as_ref().is_none_or(|s| &e.slug == s))
            .map(|e| d.team_output(e))
            .collect::<Vec<_>>()
    });
    Ok(success(StatusCode::OK, json!(data)))
}

async fn get_team_event_type(
    AxState(sim): AxState<Sim>,
    Path((team_id, id)): Path<(String, String)>,
) -> ApiResult {
    let team_id = parse_id(&team_id, "numeric string")?;
    let id = parse_id(&id, "numeric string")?;
    let data = sim
        .with_data(|d| {
            d.event_types
                .get(&id)
                .filter(|e| e.team_id == Some(team_id))
                .map(|e| d.team_output(e))
        })
        .ok_or_else(|| CalError::not_found(format!("Event type with id={id} not found")))?;
    Ok(success(StatusCode::OK, data))
}

fn parse_team_input(body: &Map<String, Value>) -> Result<TeamEventTypeInput, CalError> {
    let text = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let int = |k: &str| -> Result<Option<i64>, CalError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| CalError::bad_request(format!("{k} must be an integer number"))),
        }
    };
    let scheduling_type = match body.get("schedulingType").and_then(Value::as_str) {
        Some(raw) => Some(SchedulingType::parse(raw).ok_or_else(|| {
            CalError::bad_request(
                "schedulingType must be one of the following values: collective, roundRobin, managed",
            )
        })?),
        None => None,
    };
    let hosts = match body.get("hosts") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|h| {
                    h.get("userId")
                        .and_then(Value::as_i64)
                        .map(|user_id| HostRecord {
                            user_id,
                            mandatory: h.get("mandatory").and_then(Value::as_bool),
                            priority: h.get("priority").and_then(Value::as_str).map(str::to_owned),
                        })
                        .ok_or_else(|| CalError::bad_request("hosts.userId must be a number"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(CalError::bad_request("hosts must be an array")),
    };
    let length = int("lengthInMinutes")?;
    if length.is_some_and(|l| l < 1) {
        return Err(CalError::bad_request(
            "lengthInMinutes must not be less than 1",
        ));
    }
    Ok(TeamEventTypeInput {
        title: text("title"),
        slug: text("slug"),
        length_in_minutes: length,
        scheduling_type,
        hosts,
        assign_all_team_members: body.get("assignAllTeamMembers").and_then(Value::as_bool),
        description: text("description"),
        hidden: body.get("hidden").and_then(Value::as_bool),
        minimum_booking_notice: int("minimumBookingNotice")?,
        before_event_buffer: int("beforeEventBuffer")?,
        after_event_buffer: int("afterEventBuffer")?,
        slot_interval: int("slotInterval")?,
        booking_window: crate::store::parse_booking_window(body.get("bookingWindow"))?,
    })
}

/// Managed answers are `[parent, child…]`; others a single object (FACTS 5.3).
fn team_answer(sim: &Sim, ids: &[i64], status: StatusCode) -> Response {
    let (items, managed) = sim.with_data(|d| {
        let items: Vec<Value> = ids
            .iter()
            .filter_map(|id| d.event_types.get(id))
            .map(|e| d.team_output(e))
            .collect();
        let managed = ids
            .first()
            .and_then(|id| d.event_types.get(id))
            .is_some_and(|e| e.is_managed_parent());
        (items, managed)
    });
    if managed {
        success(status, json!(items))
    } else {
        success(status, items.into_iter().next().unwrap_or(Value::Null))
    }
}

async fn create_team_event_type(
    AxState(sim): AxState<Sim>,
    Path(team_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    let input = parse_team_input(&parse_body(&body)?)?;
    let ids = sim.with_data_mut(|d| d.create_team_event_type(team_id, caller, input))?;
    Ok(team_answer(&sim, &ids, StatusCode::CREATED))
}

async fn update_team_event_type(
    AxState(sim): AxState<Sim>,
    Path((team_id, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let caller = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    let id = parse_id(&id, "numeric string")?;
    let input = parse_team_input(&parse_body(&body)?)?;
    let ids = sim.with_data_mut(|d| d.update_team_event_type(team_id, id, caller, input))?;
    Ok(team_answer(&sim, &ids, StatusCode::OK))
}

// ---- slots --------------------------------------------------------------------------

async fn get_slots(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> ApiResult {
    optional_user(&sim, &headers)?;
    let bad_range = || {
        CalError::bad_request(
            "Invalid time range given - check the 'start' and 'end' query parameters.",
        )
    };
    let start = q
        .get("start")
        .and_then(|s| parse_instant(s))
        .ok_or_else(bad_range)?;
    let mut end = q
        .get("end")
        .and_then(|s| parse_instant(s))
        .ok_or_else(bad_range)?;
    // An end at exactly midnight means the whole of that day (FACTS 6).
    if end.time() == chrono::NaiveTime::MIN {
        end += Duration::seconds(86_399);
    }
    if end < start {
        return Err(bad_range());
    }
    let tz: Tz = match q.get("timeZone") {
        Some(z) => z
            .parse()
            .map_err(|_| CalError::bad_request("timeZone must be a valid IANA time-zone"))?,
        None => chrono_tz::UTC,
    };
    let duration = match q.get("duration") {
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| CalError::bad_request("duration must be an integer number"))?,
        ),
        None => None,
    };
    let range = q.get("format").map(String::as_str) == Some("range");
    let now = Utc::now();
    let slots = sim.with_data(|d| {
        let et_id = match q.get("eventTypeId") {
            Some(raw) => Some(
                raw.parse::<i64>()
                    .map_err(|_| CalError::bad_request("eventTypeId must be an integer number"))?,
            ),
            None => match (q.get("eventTypeSlug"), q.get("username"), q.get("teamSlug")) {
                (Some(slug), Some(user), _) => d.usernames.get(user).and_then(|u| {
                    d.event_types
                        .values()
                        .find(|e| e.owner_id == Some(*u) && &e.slug == slug)
                        .map(|e| e.id)
                }),
                (Some(slug), None, Some(team)) => {
                    d.teams.values().find(|t| &t.slug == team).and_then(|t| {
                        d.event_types
                            .values()
                            .find(|e| e.team_id == Some(t.id) && &e.slug == slug)
                            .map(|e| e.id)
                    })
                }
                _ => {
                    return Err(CalError::bad_request(
                        "Either eventTypeId or eventTypeSlug + username or eventTypeSlug + teamSlug must be provided",
                    ));
                }
            },
        };
        let et = et_id
            .and_then(|id| d.event_types.get(&id))
            .ok_or_else(|| {
                CalError::not_found(format!(
                    "Event Type with id {} not found",
                    et_id.map_or_else(|| "unknown".to_owned(), |i| i.to_string())
                ))
            })?;
        Ok(d.slots(
            et,
            start,
            end,
            duration,
            q.get("bookingUidToReschedule").map(String::as_str),
            now,
            &tz,
        ))
    })?;
    Ok(success(StatusCode::OK, slots_output(&slots, &tz, range)))
}

/// The reservation body (`ReserveSlotInput_2024_09_04`); Cal.com's global pipe drops
/// unknown properties.
fn parse_reserve_input(body: &Map<String, Value>) -> Result<ReserveInput, CalError> {
    let int = |k: &str| -> Result<Option<i64>, CalError> {
        match body.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .filter(|n| *n > 0)
                .map(Some)
                .ok_or_else(|| CalError::bad_request(format!("{k} must be a positive number"))),
        }
    };
    Ok(ReserveInput {
        event_type_id: int("eventTypeId")?
            .ok_or_else(|| CalError::bad_request("eventTypeId must be a number"))?,
        slot_start: body
            .get("slotStart")
            .and_then(Value::as_str)
            .and_then(parse_instant)
            .ok_or_else(|| CalError::bad_request("Invalid start date"))?,
        slot_duration: int("slotDuration")?,
        reservation_duration: int("reservationDuration")?,
    })
}

async fn reserve_slot(AxState(sim): AxState<Sim>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let caller = optional_user(&sim, &headers)?;
    let input = parse_reserve_input(&parse_body(&body)?)?;
    if input.reservation_duration.is_some() && caller.is_none() {
        return Err(CalError::unauthorized(
            "reservationDuration can only be used for authenticated requests - use access token, api key or OAuth credentials",
        ));
    }
    let now = Utc::now();
    let record = sim.with_data_mut(|d| {
        if let Some(caller) = caller
            && input.reservation_duration.is_some()
            && d.event_types.contains_key(&input.event_type_id)
            && !d.may_set_reservation_duration(caller, input.event_type_id)
        {
            return Err(CalError::forbidden(
                "authenticated user is not owner of event type, does not have memberships in common with owner of the event type, nor does belong to event type's team or org.",
            ));
        }
        d.reserve(&input, now)
    })?;
    Ok(success(StatusCode::CREATED, record.output()))
}

/// An unknown uid is a 200 with `data: null` (the output type is nullable).
async fn get_reservation(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> ApiResult {
    let record = sim.with_data(|d| d.reservations.get(&uid).cloned());
    Ok(success(
        StatusCode::OK,
        record.map_or(Value::Null, |r| r.output()),
    ))
}

async fn update_reservation(
    AxState(sim): AxState<Sim>,
    Path(uid): Path<String>,
    body: Bytes,
) -> ApiResult {
    let input = parse_reserve_input(&parse_body(&body)?)?;
    let now = Utc::now();
    let record = sim.with_data_mut(|d| d.update_reservation(&uid, &input, now))?;
    Ok(success(StatusCode::OK, record.output()))
}

/// Cal.com deletes with `deleteMany`: an unknown uid is a 200 as well.
async fn delete_reservation(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> ApiResult {
    sim.with_data_mut(|d| d.reservations.remove(&uid));
    Ok((StatusCode::OK, axum::Json(json!({"status": "success"}))).into_response())
}

// ---- admin --------------------------------------------------------------------------

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

fn admin_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(admin_error(
            StatusCode::BAD_REQUEST,
            format!("invalid body: {e}"),
        ))
    })
}

async fn admin_state(AxState(sim): AxState<Sim>) -> Response {
    axum::Json(sim.state()).into_response()
}

async fn admin_seed(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: Seed = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.seed(seed) {
        Ok(()) => (StatusCode::CREATED, axum::Json(json!({"seeded": true}))).into_response(),
        Err(e) => admin_error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn admin_reset(AxState(sim): AxState<Sim>) -> Response {
    sim.reset();
    axum::Json(json!({"reset": true})).into_response()
}

async fn admin_faults(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Faults>(&body) {
        Ok(f) => {
            sim.set_faults(f.clone());
            axum::Json(f).into_response()
        }
        Err(r) => *r,
    }
}

async fn admin_get_faults(AxState(sim): AxState<Sim>) -> Response {
    axum::Json(sim.faults()).into_response()
}

/// Body: a `RateLimitConfig` (`{limit, windowMs, blockMs}`) or `null` to switch it off.
async fn admin_rate_limit(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Option<RateLimitConfig>>(&body) {
        Ok(rl) => {
            sim.set_rate_limit(rl);
            axum::Json(json!({"rateLimit": rl})).into_response()
        }
        Err(r) => *r,
    }
}

/// Body: `{url, secret?}` or `null` to stop sending.
async fn admin_webhook(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    match admin_json::<Option<WebhookConfig>>(&body) {
        Ok(w) => {
            sim.set_webhook(w.clone());
            axum::Json(json!({"webhook": w})).into_response()
        }
        Err(r) => *r,
    }
}

async fn admin_insert_booking(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: SeedBooking = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.insert_booking(seed) {
        Ok(b) => (StatusCode::CREATED, axum::Json(b)).into_response(),
        Err(e) => admin_error(e.status, e.message),
    }
}

async fn admin_insert_reservation(AxState(sim): AxState<Sim>, body: Bytes) -> Response {
    let seed: SeedReservation = match admin_json(&body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    match sim.insert_reservation(seed) {
        Ok(r) => (StatusCode::CREATED, axum::Json(r)).into_response(),
        Err(e) => admin_error(e.status, e.message),
    }
}

async fn admin_remove_booking(AxState(sim): AxState<Sim>, Path(uid): Path<String>) -> Response {
    match sim.remove_booking(&uid) {
        Some(b) => axum::Json(b).into_response(),
        None => admin_error(StatusCode::NOT_FOUND, format!("no booking {uid}")),
    }
}

// ---- who a key is: the user and their team memberships --------------------------------

/// `GET /v2/me`: the user the API key acts as.
async fn get_me(AxState(sim): AxState<Sim>, headers: HeaderMap) -> ApiResult {
    let user = required_user(&sim, &headers)?;
    sim.with_data(|d| {
        d.users.get(&user).map(|u| {
            json!({
                "id": u.id,
                "username": u.username,
                "name": u.name,
                "email": u.email,
                "timeZone": u.time_zone,
            })
        })
    })
    .map(|data| success(StatusCode::OK, data))
    .ok_or_else(|| CalError::unauthorized(INVALID_KEY))
}

/// `GET /v2/teams/{teamId}/memberships` (`TeamMembershipOutput` items): readable by the
/// team's members only. A membership id is not stored by the emulator; it is derived from
/// the team and user ids, stable across calls.
async fn list_team_memberships(
    AxState(sim): AxState<Sim>,
    headers: HeaderMap,
    Path(team_id): Path<String>,
) -> ApiResult {
    let user = required_user(&sim, &headers)?;
    let team_id = parse_id(&team_id, "numeric string")?;
    sim.with_data(|d| {
        let team = d
            .teams
            .get(&team_id)
            .ok_or_else(|| CalError::not_found(format!("Team with id {team_id} not found")))?;
        if !team.members.contains_key(&user) {
            return Err(CalError::forbidden(
                "TeamRolesGuard - User is not a member of the team",
            ));
        }
        let items: Vec<Value> = team
            .members
            .iter()
            .map(|(member, role)| {
                let u = d.users.get(member);
                json!({
                    "id": team_id * 1_000_000 + member,
                    "userId": member,
                    "teamId": team_id,
                    "accepted": true,
                    "role": role,
                    "disableImpersonation": false,
                    "user": {
                        "username": u.map(|u| u.username.clone()),
                        "email": u.map(|u| u.email.clone()),
                        "name": u.map(|u| u.name.clone()),
                    },
                })
            })
            .collect();
        Ok(success(StatusCode::OK, json!(items)))
    })
}
