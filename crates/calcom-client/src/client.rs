//! `CalcomClient`: one typed method per Cal.com operation the sync engine uses, on top of a
//! single request path that applies the version header, the key's budget, the read-only
//! retry policy, error classification and tracing.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Method, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api_version;
use crate::budget::{Budget, LocalBudget, Priority, Usage};
use crate::config::{ClientConfig, RateLimit};
use crate::error::{self, CalcomError, RAW_BODY_LIMIT, ResponseContext};
use crate::model::{
    Booking, BookingPage, EventType, Me, OneOrMany, Slot, SlotReservation, TeamMembership,
};
use crate::request::{
    CancelBooking, CreateBooking, CreateTeamEventType, ListBookings, RescheduleBooking,
    ReserveSlot, SlotsQuery, UpdateTeamEventType,
};

/// First GET retry waits this long, doubling each time up to `READ_BACKOFF_MAX`.
const READ_BACKOFF_BASE: Duration = Duration::from_millis(100);
const READ_BACKOFF_MAX: Duration = Duration::from_secs(2);
/// With `wait_when_rate_limited`, how many 429s in a row one call sits out.
const MAX_THROTTLED_WAITS: u32 = 5;

/// What a client took from its key's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BudgetUsage {
    /// Requests sent to Cal.com.
    pub requests: u64,
    /// Time spent waiting for the budget, summed over requests.
    pub waited: Duration,
}

/// A typed Cal.com v2 client for one API key. Clones share the connection pool and the
/// budget, so keep one client per key and clone it freely.
#[derive(Clone)]
pub struct CalcomClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base_url: Url,
    api_key: SecretString,
    /// Built once, marked sensitive so no HTTP-layer debug output prints it.
    authorization: HeaderValue,
    budget: Arc<dyn Budget>,
    usage: Usage,
    wait_when_rate_limited: bool,
    read_retries: u32,
    timeout: Duration,
    rate_limit: RateLimit,
}

impl fmt::Debug for CalcomClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalcomClient")
            .field("base_url", &self.inner.base_url.as_str())
            .field("api_key", &"[redacted]")
            .field("timeout", &self.inner.timeout)
            .field("rate_limit", &self.inner.rate_limit)
            .field("read_retries", &self.inner.read_retries)
            .finish()
    }
}

/// One request as the typed methods describe it.
struct Call {
    method: Method,
    segments: Vec<String>,
    /// The path template for logs: uids are bearer-like secrets and do not belong in logs.
    route: &'static str,
    version: &'static str,
    query: Vec<(&'static str, String)>,
    body: Option<Value>,
    /// The event type the request names, for errors whose text lacks it.
    event_type_id: Option<i64>,
}

impl Call {
    fn new(method: Method, route: &'static str, version: &'static str) -> Self {
        Self {
            method,
            segments: Vec::new(),
            route,
            version,
            query: Vec::new(),
            body: None,
            event_type_id: None,
        }
    }

    fn path(mut self, segments: &[&str]) -> Self {
        self.segments = segments.iter().map(|s| (*s).to_owned()).collect();
        self
    }
}

/// A 2xx answer, parsed as JSON.
struct Success {
    status: u16,
    json: Value,
    raw: String,
}

impl Success {
    fn decode_error(&self, reason: impl Into<String>) -> CalcomError {
        CalcomError::Decode {
            status: self.status,
            reason: reason.into(),
            body: error::truncate(&self.raw, RAW_BODY_LIMIT),
        }
    }

    /// Decodes `data` of the `{status, data}` envelope.
    fn data<T: DeserializeOwned>(&self) -> Result<T, CalcomError> {
        let data = self
            .json
            .get("data")
            .ok_or_else(|| self.decode_error("no `data` in the response"))?;
        serde_json::from_value(data.clone())
            .map_err(|e| self.decode_error(format!("`data` does not match: {e}")))
    }
}

fn require_uid(field: &str, uid: &str) -> Result<(), CalcomError> {
    if uid.trim().is_empty() {
        return Err(CalcomError::invalid(field, "must not be empty"));
    }
    Ok(())
}

fn require_id(field: &str, id: i64) -> Result<(), CalcomError> {
    if id <= 0 {
        return Err(CalcomError::invalid(field, "must be a positive id"));
    }
    Ok(())
}

/// Orders a managed create/update answer as promised: the parent (no parent id of its
/// own) first, then the children in Cal.com's order.
fn parent_first(mut items: Vec<EventType>) -> Vec<EventType> {
    items.sort_by_key(|e| e.parent_event_type_id.is_some());
    items
}

/// A small jitter so replicas retrying the same outage do not move in lockstep.
fn read_backoff(attempt: u32) -> Duration {
    let exp = READ_BACKOFF_BASE
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(10))
        .min(READ_BACKOFF_MAX);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    exp + exp.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// Reads are safe to repeat; these are the failures a repeat can fix.
fn read_is_retryable(err: &CalcomError) -> bool {
    matches!(
        err,
        CalcomError::Transport { .. }
            | CalcomError::OutcomeUnknown { .. }
            | CalcomError::Server { .. }
    )
}

impl CalcomClient {
    /// Builds the client. Installs rustls' ring provider for the process if none is set.
    pub fn new(config: ClientConfig) -> Result<Self, CalcomError> {
        // Another part of the process may have installed a provider first; that is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();

        let base_url = Url::parse(config.base_url.trim_end_matches('/'))
            .map_err(|e| CalcomError::invalid("base_url", e.to_string()))?;
        if !matches!(base_url.scheme(), "http" | "https") || base_url.cannot_be_a_base() {
            return Err(CalcomError::invalid("base_url", "must be an http(s) URL"));
        }
        if config.timeout.is_zero() {
            return Err(CalcomError::invalid("timeout", "must be positive"));
        }
        if config.rate_limit.requests == 0 || config.rate_limit.per.is_zero() {
            return Err(CalcomError::invalid(
                "rate_limit",
                "needs at least one request per positive window",
            ));
        }
        let key = config.api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(CalcomError::invalid("api_key", "must not be empty"));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {key}"))
            .map_err(|_| CalcomError::invalid("api_key", "not a valid header value"))?;
        authorization.set_sensitive(true);

        // A separate, shorter connect timeout makes a dead host a connect error
        // (Transport: nothing sent) instead of a whole-request timeout (OutcomeUnknown).
        let connect_timeout = (config.timeout / 2).min(Duration::from_secs(5));
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(connect_timeout)
            .user_agent(concat!(
                "phasebook-calcom-client/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| CalcomError::Transport {
                source: Box::new(e),
            })?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base_url,
                api_key: config.api_key,
                authorization,
                budget: config.budget.unwrap_or_else(|| {
                    Arc::new(LocalBudget::new(
                        config.rate_limit.requests,
                        config.rate_limit.per,
                    ))
                }),
                usage: Usage::default(),
                wait_when_rate_limited: config.wait_when_rate_limited,
                read_retries: config.read_retries,
                timeout: config.timeout,
                rate_limit: config.rate_limit,
            }),
        })
    }

    /// What this client (and its clones) took from the key's budget so far.
    pub fn usage(&self) -> BudgetUsage {
        use std::sync::atomic::Ordering;
        BudgetUsage {
            requests: self.inner.usage.sent.load(Ordering::Relaxed),
            waited: Duration::from_millis(self.inner.usage.waited_ms.load(Ordering::Relaxed)),
        }
    }

    /// `POST /v2/bookings`. Never retried here: a repeated create is a second booking.
    pub async fn create_booking(&self, req: &CreateBooking) -> Result<Booking, CalcomError> {
        let mut call = Call::new(Method::POST, "/v2/bookings", api_version::BOOKINGS)
            .path(&["v2", "bookings"]);
        call.body = Some(req.wire_body()?);
        call.event_type_id = Some(req.event_type_id);
        self.booking_from(self.execute(call).await?)
    }

    /// `GET /v2/bookings/{uid}`.
    pub async fn get_booking(&self, uid: &str) -> Result<Booking, CalcomError> {
        require_uid("uid", uid)?;
        let call = Call::new(Method::GET, "/v2/bookings/{uid}", api_version::BOOKINGS)
            .path(&["v2", "bookings", uid]);
        self.booking_from(self.execute(call).await?)
    }

    /// `GET /v2/bookings` (one page).
    pub async fn list_bookings(&self, q: &ListBookings) -> Result<BookingPage, CalcomError> {
        let mut call =
            Call::new(Method::GET, "/v2/bookings", api_version::BOOKINGS).path(&["v2", "bookings"]);
        call.query = q.query_pairs()?;
        let success = self.execute(call).await?;
        let bookings: Vec<Booking> = success.data()?;

        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Pagination {
            total_items: Option<u64>,
            #[serde(default)]
            has_next_page: bool,
        }
        let pagination: Option<Pagination> = match success.json.get("pagination") {
            None | Some(Value::Null) => None,
            Some(p) => Some(
                serde_json::from_value(p.clone())
                    .map_err(|e| success.decode_error(format!("`pagination`: {e}")))?,
            ),
        };
        Ok(BookingPage {
            bookings: bookings.into_iter().map(Booking::normalise).collect(),
            total: pagination.as_ref().and_then(|p| p.total_items),
            has_next_page: pagination.is_some_and(|p| p.has_next_page),
        })
    }

    /// `POST /v2/bookings/{uid}/cancel`. A second cancel answers 400 (see
    /// `CalcomError::is_already_cancelled`).
    pub async fn cancel_booking(&self, uid: &str, reason: &str) -> Result<Booking, CalcomError> {
        require_uid("uid", uid)?;
        let body = CancelBooking {
            cancellation_reason: reason.to_owned(),
        }
        .wire_body()?;
        let mut call = Call::new(
            Method::POST,
            "/v2/bookings/{uid}/cancel",
            api_version::BOOKINGS,
        )
        .path(&["v2", "bookings", uid, "cancel"]);
        call.body = Some(body);
        self.booking_from(self.execute(call).await?)
    }

    /// `POST /v2/bookings/{uid}/reschedule`; returns the **new** booking (new uid).
    pub async fn reschedule_booking(
        &self,
        uid: &str,
        req: &RescheduleBooking,
    ) -> Result<Booking, CalcomError> {
        require_uid("uid", uid)?;
        let mut call = Call::new(
            Method::POST,
            "/v2/bookings/{uid}/reschedule",
            api_version::BOOKINGS,
        )
        .path(&["v2", "bookings", uid, "reschedule"]);
        call.body = Some(req.wire_body()?);
        self.booking_from(self.execute(call).await?)
    }

    /// `GET /v2/event-types/{id}`: only the key owner's own event types are visible.
    pub async fn get_event_type(&self, id: i64) -> Result<EventType, CalcomError> {
        require_id("eventTypeId", id)?;
        let id_text = id.to_string();
        let call = Call::new(
            Method::GET,
            "/v2/event-types/{id}",
            api_version::EVENT_TYPES,
        )
        .path(&["v2", "event-types", &id_text]);
        let success = self.execute(call).await?;
        // The spec allows `data: null` with a 200.
        let found: Option<EventType> = success.data()?;
        found.ok_or_else(|| CalcomError::NotFound {
            message: format!("Cal.com returned no event type for id {id}"),
            body: error::truncate(&success.raw, RAW_BODY_LIMIT),
        })
    }

    /// `GET /v2/event-types?username=&eventSlug=`: how a managed parent's child for a host
    /// is found (the item owned by the host whose id differs from the parent's).
    pub async fn list_event_types(
        &self,
        username: &str,
        event_slug: Option<&str>,
    ) -> Result<Vec<EventType>, CalcomError> {
        require_uid("username", username)?;
        let mut call = Call::new(Method::GET, "/v2/event-types", api_version::EVENT_TYPES)
            .path(&["v2", "event-types"]);
        call.query.push(("username", username.to_owned()));
        if let Some(slug) = event_slug {
            call.query.push(("eventSlug", slug.to_owned()));
        }
        self.execute(call).await?.data()
    }

    /// `GET /v2/teams/{teamId}/event-types[?eventSlug=]` (managed children are not listed).
    pub async fn list_team_event_types(
        &self,
        team_id: i64,
        event_slug: Option<&str>,
    ) -> Result<Vec<EventType>, CalcomError> {
        require_id("teamId", team_id)?;
        let team = team_id.to_string();
        let mut call = Call::new(
            Method::GET,
            "/v2/teams/{teamId}/event-types",
            api_version::TEAM_EVENT_TYPES,
        )
        .path(&["v2", "teams", &team, "event-types"]);
        if let Some(slug) = event_slug {
            call.query.push(("eventSlug", slug.to_owned()));
        }
        self.execute(call).await?.data()
    }

    /// `GET /v2/me`: the user the API key acts as.
    pub async fn me(&self) -> Result<Me, CalcomError> {
        let call = Call::new(Method::GET, "/v2/me", api_version::EVENT_TYPES).path(&["v2", "me"]);
        self.execute(call).await?.data()
    }

    /// `GET /v2/teams/{teamId}/memberships`: the team's members and their roles.
    pub async fn list_team_memberships(
        &self,
        team_id: i64,
    ) -> Result<Vec<TeamMembership>, CalcomError> {
        require_id("teamId", team_id)?;
        let team = team_id.to_string();
        let call = Call::new(
            Method::GET,
            "/v2/teams/{teamId}/memberships",
            api_version::TEAM_EVENT_TYPES,
        )
        .path(&["v2", "teams", &team, "memberships"]);
        self.execute(call).await?.data()
    }

    /// `GET /v2/teams/{teamId}/event-types/{id}`.
    pub async fn get_team_event_type(
        &self,
        team_id: i64,
        id: i64,
    ) -> Result<EventType, CalcomError> {
        require_id("teamId", team_id)?;
        require_id("eventTypeId", id)?;
        let (team, id_text) = (team_id.to_string(), id.to_string());
        let call = Call::new(
            Method::GET,
            "/v2/teams/{teamId}/event-types/{id}",
            api_version::TEAM_EVENT_TYPES,
        )
        .path(&["v2", "teams", &team, "event-types", &id_text]);
        self.execute(call).await?.data()
    }

    /// `POST /v2/teams/{teamId}/event-types`. For a managed type: parent first, then one
    /// child per host; a single object answer becomes a one-element list.
    pub async fn create_team_event_type(
        &self,
        team_id: i64,
        req: &CreateTeamEventType,
    ) -> Result<Vec<EventType>, CalcomError> {
        require_id("teamId", team_id)?;
        let team = team_id.to_string();
        let mut call = Call::new(
            Method::POST,
            "/v2/teams/{teamId}/event-types",
            api_version::TEAM_EVENT_TYPES,
        )
        .path(&["v2", "teams", &team, "event-types"]);
        call.body = Some(req.wire_body()?);
        let items: OneOrMany<EventType> = self.execute(call).await?.data()?;
        Ok(parent_first(items.into_vec()))
    }

    /// `PATCH /v2/teams/{teamId}/event-types/{id}`; same answer shape as create.
    pub async fn update_team_event_type(
        &self,
        team_id: i64,
        id: i64,
        req: &UpdateTeamEventType,
    ) -> Result<Vec<EventType>, CalcomError> {
        require_id("teamId", team_id)?;
        require_id("eventTypeId", id)?;
        let (team, id_text) = (team_id.to_string(), id.to_string());
        let mut call = Call::new(
            Method::PATCH,
            "/v2/teams/{teamId}/event-types/{id}",
            api_version::TEAM_EVENT_TYPES,
        )
        .path(&["v2", "teams", &team, "event-types", &id_text]);
        call.body = Some(req.wire_body()?);
        call.event_type_id = Some(id);
        let items: OneOrMany<EventType> = self.execute(call).await?.data()?;
        Ok(parent_first(items.into_vec()))
    }

    /// `GET /v2/slots?format=range`: free slots keyed by date (`YYYY-MM-DD`).
    pub async fn get_slots(
        &self,
        q: &SlotsQuery,
    ) -> Result<BTreeMap<String, Vec<Slot>>, CalcomError> {
        let mut call =
            Call::new(Method::GET, "/v2/slots", api_version::SLOTS).path(&["v2", "slots"]);
        call.query = q.query_pairs()?;
        call.event_type_id = Some(q.event_type_id);
        self.execute(call).await?.data()
    }

    /// `POST /v2/slots/reservations`: hides the slot from slot listings for a while.
    pub async fn reserve_slot(&self, req: &ReserveSlot) -> Result<SlotReservation, CalcomError> {
        let mut call = Call::new(Method::POST, "/v2/slots/reservations", api_version::SLOTS)
            .path(&["v2", "slots", "reservations"]);
        call.body = Some(req.wire_body()?);
        call.event_type_id = Some(req.event_type_id);
        self.execute(call).await?.data()
    }

    /// `GET /v2/slots/reservations/{uid}`. Cal.com answers an unknown uid with a 200 and
    /// `data: null`, which is `Ok(None)` here. An expired reservation is still returned
    /// (compare `reservation_until` with the clock) until Cal.com cleans it up.
    pub async fn get_reservation(&self, uid: &str) -> Result<Option<SlotReservation>, CalcomError> {
        require_uid("uid", uid)?;
        let call = Call::new(
            Method::GET,
            "/v2/slots/reservations/{uid}",
            api_version::SLOTS,
        )
        .path(&["v2", "slots", "reservations", uid]);
        self.execute(call).await?.data()
    }

    /// `PATCH /v2/slots/reservations/{uid}`: moves the reservation to `req`'s event type and
    /// time, and restarts the hold from now (`reservation_duration`, default 5 minutes).
    /// Cal.com's overlap check does not skip the reservation itself, so a new time that
    /// overlaps its own live hold answers 422 ([`crate::SlotRefusal::AlreadyReserved`]);
    /// to keep a time longer, reserve anew before the old hold ends or delete and reserve.
    pub async fn update_reservation(
        &self,
        uid: &str,
        req: &ReserveSlot,
    ) -> Result<SlotReservation, CalcomError> {
        require_uid("uid", uid)?;
        let mut call = Call::new(
            Method::PATCH,
            "/v2/slots/reservations/{uid}",
            api_version::SLOTS,
        )
        .path(&["v2", "slots", "reservations", uid]);
        call.body = Some(req.wire_body()?);
        call.event_type_id = Some(req.event_type_id);
        self.execute(call).await?.data()
    }

    /// `DELETE /v2/slots/reservations/{uid}`. Cal.com answers 200 for an unknown uid too,
    /// so a repeated release succeeds.
    pub async fn delete_reservation(&self, uid: &str) -> Result<(), CalcomError> {
        require_uid("uid", uid)?;
        let call = Call::new(
            Method::DELETE,
            "/v2/slots/reservations/{uid}",
            api_version::SLOTS,
        )
        .path(&["v2", "slots", "reservations", uid]);
        self.execute(call).await.map(|_| ())
    }

    /// Booking endpoints answer one booking, or a list for recurring series.
    fn booking_from(&self, success: Success) -> Result<Booking, CalcomError> {
        let items: OneOrMany<Booking> = success.data()?;
        items
            .into_vec()
            .into_iter()
            .next()
            .map(Booking::normalise)
            .ok_or_else(|| success.decode_error("`data` is an empty list"))
    }

    fn url(&self, segments: &[String]) -> Result<Url, CalcomError> {
        let mut url = self.inner.base_url.clone();
        url.path_segments_mut()
            .map_err(|()| CalcomError::invalid("base_url", "cannot carry a path"))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// Sends `call`, repeating GETs (only) on failures a repeat can fix.
    async fn execute(&self, call: Call) -> Result<Success, CalcomError> {
        let url = self.url(&call.segments)?;
        let attempts = if call.method == Method::GET {
            1 + self.inner.read_retries
        } else {
            1
        };
        let mut attempt = 1;
        let mut throttled = 0;
        loop {
            let span = tracing::info_span!(
                "calcom_request",
                method = %call.method,
                path = call.route,
                attempt,
            );
            let result = self.send_once(&call, &url).instrument(span).await;
            match result {
                // The budget now holds every request of the key until the reset, so the
                // next try waits there.
                Err(CalcomError::RateLimited { .. })
                    if self.inner.wait_when_rate_limited && throttled < MAX_THROTTLED_WAITS =>
                {
                    throttled += 1;
                }
                Err(err) if attempt < attempts && read_is_retryable(&err) => {
                    tokio::time::sleep(read_backoff(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, call: &Call, url: &Url) -> Result<Success, CalcomError> {
        let queued = Instant::now();
        self.inner.budget.acquire(Priority::current()).await;
        self.inner.usage.record(queued.elapsed());
        let queued_ms = queued.elapsed().as_millis() as u64;

        let mut request = self
            .inner
            .http
            .request(call.method.clone(), url.clone())
            .header(AUTHORIZATION, self.inner.authorization.clone())
            .header(api_version::HEADER, call.version)
            .header(ACCEPT, "application/json");
        if !call.query.is_empty() {
            request = request.query(&call.query);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }

        let sent = Instant::now();
        let outcome = self.exchange(request, call).await;
        let elapsed_ms = sent.elapsed().as_millis() as u64;
        match &outcome {
            Ok(success) => tracing::debug!(
                status = success.status,
                elapsed_ms,
                queued_ms,
                "cal.com call succeeded"
            ),
            Err(err) => tracing::warn!(
                status = err.status(),
                kind = err.kind(),
                elapsed_ms,
                queued_ms,
                "cal.com call failed"
            ),
        }
        outcome
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        call: &Call,
    ) -> Result<Success, CalcomError> {
        let response = request.send().await.map_err(error::from_reqwest)?;
        let status = response.status().as_u16();
        let headers: HeaderMap = response.headers().clone();
        if status != 429
            && let Some(report) = error::window_report(&headers)
        {
            self.inner.budget.observe(report);
        }
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            tracing::trace!(request_id = id, "cal.com request id");
        }
        // The status line arrived, but the body can still be cut off: for a write that
        // means it was processed and the answer lost.
        let bytes = response.bytes().await.map_err(error::from_reqwest)?;
        let secret = self.inner.api_key.expose_secret();

        if !(200..300).contains(&status) {
            let err = error::from_response(
                status,
                &headers,
                &bytes,
                &ResponseContext {
                    secret,
                    event_type_id: call.event_type_id,
                },
            );
            if let CalcomError::RateLimited { reset_after, .. } = &err {
                self.inner.budget.pause(*reset_after);
            }
            return Err(err);
        }

        let raw = error::redact(&String::from_utf8_lossy(&bytes), secret);
        let json = if raw.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&raw).map_err(|e| CalcomError::Decode {
                status,
                reason: format!("not JSON: {e}"),
                body: error::truncate(&raw, RAW_BODY_LIMIT),
            })?
        };
        Ok(Success { status, json, raw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let first = read_backoff(1);
        assert!(first >= READ_BACKOFF_BASE && first <= READ_BACKOFF_BASE * 2);
        assert!(read_backoff(2) >= READ_BACKOFF_BASE * 2);
        assert!(read_backoff(30) <= READ_BACKOFF_MAX + READ_BACKOFF_MAX / 4);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let client = CalcomClient::new(ClientConfig::new(
            "https://api.cal.com",
            SecretString::from("cal_live_supersecret"),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let shown = format!("{client:?}");
        assert!(!shown.contains("supersecret"), "{shown}");
        let config = ClientConfig::new(
            "https://api.cal.com",
            SecretString::from("cal_live_supersecret"),
        );
        assert!(!format!("{config:?}").contains("supersecret"));
    }

    #[test]
    fn bad_configuration_is_refused() {
        let key = || SecretString::from("cal_test_x");
        assert!(CalcomClient::new(ClientConfig::new("not a url", key())).is_err());
        assert!(CalcomClient::new(ClientConfig::new("ftp://x", key())).is_err());
        assert!(CalcomClient::new(ClientConfig::new("https://x", SecretString::from(""))).is_err());
        let mut zero = ClientConfig::new("https://x", key());
        zero.rate_limit.requests = 0;
        assert!(CalcomClient::new(zero).is_err());
    }

    #[test]
    fn urls_keep_a_base_path_and_escape_segments() {
        let client = CalcomClient::new(ClientConfig::new(
            "http://localhost:1/api/",
            SecretString::from("cal_test_x"),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let url = client
            .url(&["v2".into(), "bookings".into(), "a/b?c".into()])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url.as_str(), "http://localhost:1/api/v2/bookings/a%2Fb%3Fc");
    }

    #[test]
    fn parent_comes_first() {
        let et = |id: i64, parent: Option<i64>| EventType {
            id,
            slug: "s".into(),
            title: String::new(),
            length_in_minutes: 15,
            owner_id: None,
            team_id: None,
            parent_event_type_id: parent,
            scheduling_type: None,
            hosts: Vec::new(),
            hidden: false,
            metadata: BTreeMap::new(),
        };
        let ordered = parent_first(vec![et(2, Some(1)), et(1, None), et(3, Some(1))]);
        let ids: Vec<i64> = ordered.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
    }
}
