//! The HTTP face of the sim: Cal.com's `/v2/…` routes behind one gate (version routing,
//! throttling, fault injection, request counting) and the `/__sim/…` admin API. Each
//! resource has its own file and `router()`; they are merged here, in one place, so the
//! gate covers every Cal.com route and none of the admin ones.

mod admin;
mod bookings;
mod event_types;
mod me;
mod slots;

use std::time::Duration as StdDuration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::Sim;
use crate::config::RateLimitConfig;
use crate::error::{CalError, INVALID_KEY, NO_AUTH};
use crate::http_fault::Fault;

pub(crate) fn router(sim: Sim) -> Router {
    let v2 = Router::new()
        .merge(bookings::router())
        .merge(event_types::router())
        .merge(me::router())
        .merge(slots::router())
        .fallback(no_route)
        .layer(middleware::from_fn_with_state(sim.clone(), gate));
    v2.merge(admin::router()).with_state(sim)
}

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

fn parse_id(raw: &str, what: &str) -> Result<i64, CalError> {
    raw.parse()
        .map_err(|_| CalError::bad_request(format!("Validation failed ({what} is expected)")))
}
