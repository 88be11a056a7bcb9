//! `calcom-sim`: a Cal.com API v2 emulator for tests, demos and load runs. It serves the
//! `/v2/…` routes phasebook's client uses, with Cal.com's status codes, error bodies,
//! version-header routing, rate limits and webhooks (see `shared/calcom/FACTS.md`), plus an
//! admin API to seed data, inject faults and look at everything it holds.
//!
//! # Cal.com routes (under `/v2`)
//! | route name (faults, counts) | method and path | `cal-api-version` |
//! |---|---|---|
//! | `bookings.create` | `POST /v2/bookings` | `2024-08-13` |
//! | `bookings.list` | `GET /v2/bookings` | `2024-08-13` |
//! | `bookings.get` | `GET /v2/bookings/{uid}` | `2024-08-13` |
//! | `bookings.cancel` | `POST /v2/bookings/{uid}/cancel` | `2024-08-13` |
//! | `bookings.reschedule` | `POST /v2/bookings/{uid}/reschedule` | `2024-08-13` |
//! | `event_types.list` / `.get` / `.update` | `GET /v2/event-types?username=&eventSlug=`, `GET`/`PATCH /v2/event-types/{id}` | `2024-06-14` |
//! | `event_types.team_list` / `.team_get` / `.team_create` / `.team_update` | `/v2/teams/{teamId}/event-types[/{id}]` | any |
//! | `slots.list` | `GET /v2/slots` | `2024-09-04` |
//! | `slots.reservations` | `POST /v2/slots/reservations`, `GET`/`PATCH`/`DELETE /v2/slots/reservations/{uid}` | `2024-09-04` |
//!
//! A missing or unknown version header is read as `2024-04-15` (Cal.com's fallback). The
//! legacy controllers are not emulated: such a call answers 400 with a text that says so;
//! a valid but wrong version (e.g. `2024-09-04` on bookings) is Cal.com's 404.
//!
//! # Admin API (no auth)
//! * `GET /__sim/state` — [`State`]: bookings, event types, users, teams, reservations,
//!   webhook deliveries, request counts per route (with 429s), faults and rate limit.
//! * `POST /__sim/seed` — body: a [`Seed`] (the seed-file format); adds to the state.
//! * `POST /__sim/reset` — forget all data, deliveries and counts (config stays).
//! * `GET`/`PUT /__sim/faults` — body: [`Faults`], replaces the fault rules (and reseeds the RNG).
//! * `PUT /__sim/rate-limit` — body: [`RateLimitConfig`] `{limit, windowMs, blockMs}` or `null`.
//! * `PUT /__sim/webhook` — body: [`WebhookConfig`] `{url, secret?}` or `null`.
//! * `POST /__sim/bookings` — body: [`SeedBooking`]; inserts a booking without checks or
//!   webhooks (make a host busy). Answers the stored [`BookingRecord`].
//! * `DELETE /__sim/bookings/{uid}` — removes a booking silently (it "vanished in Cal.com").
//! * `POST /__sim/reservations` — body: [`SeedReservation`]; inserts a slot reservation
//!   without checks, with any `reservationUntil` (a past one is an expired hold). Answers the
//!   stored [`ReservationRecord`].
//!
//! # Behaviour notes
//! * Bookings are checked against the host's working hours and accepted bookings; the
//!   managed-parent 400, the hostless team type 422, past / too-soon starts, busy hosts,
//!   cancel twice, host cancel without reason, reschedule of a cancelled booking all answer
//!   with Cal.com's texts. The unique (start, end, organizer) key answers a plain 409
//!   `booking_conflict_error` when two identical creates race (widen the race with
//!   [`RouteFaults::race_window_ms`]).
//! * Texts the fact sheet does not pin down (pipe validation wording, the metadata limit
//!   message, the team-role refusal) are the sim's own and say what is wrong.
//! * Event-type buffers are stored but not applied to availability.
//! * Where the sim knowingly differs from Cal.com, and how slots are computed: `FIDELITY.md`.

mod config;
mod error;
mod http;
mod model;
mod seed;
mod store;
mod time;
pub mod webhook;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

pub use config::{Faults, RateLimitConfig, RouteFaults, SimConfig, WebhookConfig};
pub use error::SimError;
pub use http::ROUTE_NAMES;
pub use model::{
    AttendeeRecord, BookingHostRecord, BookingRecord, BookingStatus, BookingWindow,
    EventTypeRecord, HostRecord, ReservationRecord, SchedulingType, TeamRecord, UserRecord,
};
pub use seed::{
    SALON_JSON, Seed, SeedApiKey, SeedAttendee, SeedBooking, SeedChild, SeedEventType, SeedHost,
    SeedMember, SeedReservation, SeedTeam, SeedUser, WorkingHours, salon,
};
pub use webhook::WebhookDelivery;

use store::Data;

/// Everything the sim holds, as `GET /__sim/state` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// Ordered by id.
    pub bookings: Vec<BookingRecord>,
    pub event_types: Vec<EventTypeRecord>,
    pub users: Vec<UserRecord>,
    pub teams: Vec<TeamRecord>,
    pub reservations: Vec<ReservationRecord>,
    pub webhooks: Vec<WebhookDelivery>,
    /// Per route name (see [`ROUTE_NAMES`]).
    pub requests: BTreeMap<String, RouteCounts>,
    pub faults: Faults,
    pub rate_limit: Option<RateLimitConfig>,
}

impl State {
    pub fn booking(&self, uid: &str) -> Option<&BookingRecord> {
        self.bookings.iter().find(|b| b.uid == uid)
    }

    pub fn event_type(&self, id: i64) -> Option<&EventTypeRecord> {
        self.event_types.iter().find(|e| e.id == id)
    }
}

/// How often a route was called and how it was answered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCounts {
    pub total: u64,
    /// Answers that were 429 (real throttling and injected).
    pub rate_limited: u64,
    /// Requests left hanging on purpose.
    pub hung: u64,
    /// HTTP status → count (`"0"` never appears; hangs are in `hung`).
    pub by_status: BTreeMap<String, u64>,
}

/// Rate-limit header values for one answer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LimitHeaders {
    pub limit: u32,
    pub remaining: u32,
    pub reset_secs: u64,
}

#[derive(Debug)]
struct Bucket {
    window_start: Instant,
    hits: u32,
    blocked_until: Option<Instant>,
}

#[derive(Debug)]
struct Throttle {
    config: Option<RateLimitConfig>,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct FaultState {
    faults: Faults,
    rng: StdRng,
}

struct Inner {
    data: Mutex<Data>,
    throttle: Mutex<Throttle>,
    faults: Mutex<FaultState>,
    webhook: Mutex<Option<WebhookConfig>>,
    deliveries: Mutex<Vec<WebhookDelivery>>,
    requests: Mutex<BTreeMap<String, RouteCounts>>,
    http: reqwest::Client,
    shutdown: watch::Sender<bool>,
}

/// The emulator. Cheap to clone (an `Arc` inside); clones share all state.
#[derive(Clone)]
pub struct Sim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim").finish_non_exhaustive()
    }
}

/// A poisoned lock only means a panic elsewhere; the data is still consistent enough for
/// an emulator, so keep serving.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ceil_secs(d: Duration) -> u64 {
    let secs = d.as_secs();
    if d.subsec_nanos() > 0 { secs + 1 } else { secs }
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        // reqwest is built without a default TLS provider; webhook URLs may be https.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        let (shutdown, _) = watch::channel(false);
        let rng = StdRng::seed_from_u64(config.faults.seed);
        Self {
            inner: Arc::new(Inner {
                data: Mutex::new(Data::default()),
                throttle: Mutex::new(Throttle {
                    config: config.rate_limit,
                    buckets: HashMap::new(),
                }),
                faults: Mutex::new(FaultState {
                    faults: config.faults,
                    rng,
                }),
                webhook: Mutex::new(config.webhook),
                deliveries: Mutex::new(Vec::new()),
                requests: Mutex::new(BTreeMap::new()),
                http,
                shutdown,
            }),
        }
    }

    /// A sim with the example salon loaded and default (test) config.
    pub fn salon() -> Self {
        let sim = Self::new(SimConfig::default());
        // The salon seed is checked by a unit test; it cannot fail on an empty sim.
        let _ = sim.seed(Seed::salon());
        sim
    }

    /// Adds `seed` to the state. On error nothing before the failing item is rolled back.
    pub fn seed(&self, seed: Seed) -> Result<(), SimError> {
        lock(&self.inner.data).seed(seed)
    }

    /// The whole app: `/v2/…` and `/__sim/…`.
    pub fn router(&self) -> axum::Router {
        http::router(self.clone())
    }

    /// Replaces the fault rules and reseeds the fault RNG with `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        let mut f = lock(&self.inner.faults);
        f.rng = StdRng::seed_from_u64(faults.seed);
        f.faults = faults;
    }

    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).faults.clone()
    }

    /// `None` switches throttling off. Counters restart.
    pub fn set_rate_limit(&self, rl: Option<RateLimitConfig>) {
        let mut t = lock(&self.inner.throttle);
        t.config = rl;
        t.buckets.clear();
    }

    pub fn rate_limit(&self) -> Option<RateLimitConfig> {
        lock(&self.inner.throttle).config
    }

    pub fn set_webhook(&self, webhook: Option<WebhookConfig>) {
        *lock(&self.inner.webhook) = webhook;
    }

    /// Forgets data, deliveries, request counts and throttle counters; keeps config.
    pub fn reset(&self) {
        lock(&self.inner.data).reset();
        lock(&self.inner.deliveries).clear();
        lock(&self.inner.requests).clear();
        lock(&self.inner.throttle).buckets.clear();
    }

    /// Inserts a booking directly (no availability check, no webhook).
    pub fn insert_booking(&self, booking: SeedBooking) -> Result<BookingRecord, SimErrorDetail> {
        lock(&self.inner.data)
            .insert_direct(booking)
            .map_err(|e| SimErrorDetail {
                status: e.status,
                message: e.message,
            })
    }

    /// Inserts a slot reservation directly (no checks), e.g. one that has already expired.
    pub fn insert_reservation(
        &self,
        reservation: SeedReservation,
    ) -> Result<ReservationRecord, SimErrorDetail> {
        lock(&self.inner.data)
            .insert_reservation(reservation)
            .map_err(|e| SimErrorDetail {
                status: e.status,
                message: e.message,
            })
    }

    /// Removes a booking silently; `None` if there was none.
    pub fn remove_booking(&self, uid: &str) -> Option<BookingRecord> {
        lock(&self.inner.data).remove(uid)
    }

    /// A snapshot of everything.
    pub fn state(&self) -> State {
        let (bookings, event_types, users, teams, reservations) = {
            let d = lock(&self.inner.data);
            let mut bookings: Vec<BookingRecord> = d.bookings.values().cloned().collect();
            bookings.sort_by_key(|b| b.id);
            let mut reservations: Vec<ReservationRecord> =
                d.reservations.values().cloned().collect();
            reservations.sort_by_key(|r| r.slot_start);
            (
                bookings,
                d.event_types.values().cloned().collect(),
                d.users.values().cloned().collect(),
                d.teams.values().cloned().collect(),
                reservations,
            )
        };
        State {
            bookings,
            event_types,
            users,
            teams,
            reservations,
            webhooks: lock(&self.inner.deliveries).clone(),
            requests: lock(&self.inner.requests).clone(),
            faults: self.faults(),
            rate_limit: self.rate_limit(),
        }
    }

    /// Serves on `127.0.0.1:0` in a background task.
    pub async fn spawn(self) -> std::io::Result<RunningSim> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        self.serve_on(listener).await
    }

    /// Serves on an already bound listener in a background task.
    pub async fn serve_on(self, listener: tokio::net::TcpListener) -> std::io::Result<RunningSim> {
        let addr = listener.local_addr()?;
        let app = self.router();
        let mut stop = self.inner.shutdown.subscribe();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "calcom-sim server stopped");
            }
        });
        Ok(RunningSim {
            base_url: format!("http://{addr}"),
            addr,
            sim: self,
            task: Some(task),
        })
    }

    /// Serves until ctrl-c (the binary).
    pub async fn serve_until_ctrl_c(
        self,
        listener: tokio::net::TcpListener,
    ) -> std::io::Result<()> {
        let app = self.router();
        let shutdown = self.inner.shutdown.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = tokio::signal::ctrl_c().await;
                let _ = shutdown.send(true);
            })
            .await
    }

    // ---- internals used by the HTTP layer -------------------------------------------

    pub(crate) fn with_data<T>(&self, f: impl FnOnce(&Data) -> T) -> T {
        f(&lock(&self.inner.data))
    }

    pub(crate) fn with_data_mut<T>(&self, f: impl FnOnce(&mut Data) -> T) -> T {
        f(&mut lock(&self.inner.data))
    }

    pub(crate) fn event_title(&self, event_type_id: Option<i64>) -> String {
        event_type_id
            .and_then(|id| self.with_data(|d| d.event_types.get(&id).map(|e| e.title.clone())))
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, route: &str, status: u16) {
        let mut requests = lock(&self.inner.requests);
        // Look up before inserting: the hot path should not allocate the key.
        if !requests.contains_key(route) {
            requests.insert(route.to_owned(), RouteCounts::default());
        }
        let Some(c) = requests.get_mut(route) else {
            return;
        };
        c.total += 1;
        match status {
            0 => c.hung += 1,
            s => {
                if s == 429 {
                    c.rate_limited += 1;
                }
                *c.by_status.entry(s.to_string()).or_default() += 1;
            }
        }
    }

    /// Cal.com's throttler: `Ok` with the headers to send, or `Err` when refused.
    pub(crate) fn throttle(
        &self,
        tracker: impl FnOnce() -> String,
    ) -> Result<LimitHeaders, LimitHeaders> {
        let mut t = lock(&self.inner.throttle);
        let Some(cfg) = t.config else {
            return Ok(NO_LIMIT);
        };
        let tracker = tracker();
        let now = Instant::now();
        let bucket = t.buckets.entry(tracker).or_insert(Bucket {
            window_start: now,
            hits: 0,
            blocked_until: None,
        });
        if let Some(until) = bucket.blocked_until {
            if until > now {
                return Err(LimitHeaders {
                    limit: cfg.limit,
                    remaining: 0,
                    reset_secs: ceil_secs(until - now),
                });
            }
            bucket.blocked_until = None;
            bucket.window_start = now;
            bucket.hits = 0;
        }
        if now >= bucket.window_start + cfg.window {
            bucket.window_start = now;
            bucket.hits = 0;
        }
        bucket.hits += 1;
        if bucket.hits > cfg.limit {
            bucket.blocked_until = Some(now + cfg.block);
            return Err(LimitHeaders {
                limit: cfg.limit,
                remaining: 0,
                reset_secs: ceil_secs(cfg.block),
            });
        }
        Ok(LimitHeaders {
            limit: cfg.limit,
            remaining: cfg.limit - bucket.hits,
            reset_secs: ceil_secs(
                (bucket.window_start + cfg.window).saturating_duration_since(now),
            ),
        })
    }

    /// One draw from the seeded RNG decides the request's fault.
    pub(crate) fn draw_fault(&self, route: &str) -> (http_fault::Fault, Duration, Duration) {
        let mut f = lock(&self.inner.faults);
        let Some(rule) = f.faults.for_route(route).cloned() else {
            return (http_fault::Fault::None, Duration::ZERO, Duration::ZERO);
        };
        let latency = Duration::from_millis(rule.latency_ms);
        let race = Duration::from_millis(rule.race_window_ms);
        let rates = [
            (rule.rate_limited_rate, http_fault::Fault::RateLimited),
            (rule.hang_rate, http_fault::Fault::Hang),
            (rule.error_rate, http_fault::Fault::Error),
            (rule.lost_response_rate, http_fault::Fault::LostResponse),
        ];
        if rates.iter().all(|(r, _)| *r <= 0.0) {
            return (http_fault::Fault::None, latency, race);
        }
        let u: f64 = f.rng.random();
        let mut acc = 0.0;
        for (rate, fault) in rates {
            acc += rate.max(0.0);
            if u < acc {
                return (fault, latency, race);
            }
        }
        (http_fault::Fault::None, latency, race)
    }

    /// Waits for shutdown, at most `max`.
    pub(crate) async fn until_shutdown(&self, max: Duration) {
        let mut rx = self.inner.shutdown.subscribe();
        let _ = tokio::time::timeout(max, rx.wait_for(|s| *s)).await;
    }

    /// Sends a signed webhook in the background and records the delivery.
    pub(crate) fn send_webhook(&self, booking: &BookingRecord, body: Value) {
        let Some(cfg) = lock(&self.inner.webhook).clone() else {
            return;
        };
        let text = body.to_string();
        let signature = webhook::sign(cfg.secret.as_deref(), text.as_bytes());
        let trigger = body
            .get("triggerEvent")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let index = {
            let mut d = lock(&self.inner.deliveries);
            d.push(WebhookDelivery {
                trigger_event: trigger,
                booking_uid: booking.uid.clone(),
                url: cfg.url.clone(),
                body: text.clone(),
                signature: signature.clone(),
                response_status: None,
                error: None,
                sent_at: chrono::Utc::now(),
            });
            d.len() - 1
        };
        let sim = self.clone();
        tokio::spawn(async move {
            let sent = sim
                .inner
                .http
                .post(&cfg.url)
                .header("content-type", "application/json")
                .header(webhook::SIGNATURE_HEADER, signature)
                .body(text)
                .send()
                .await;
            let mut d = lock(&sim.inner.deliveries);
            if let Some(delivery) = d.get_mut(index) {
                match sent {
                    Ok(r) => delivery.response_status = Some(r.status().as_u16()),
                    Err(e) => delivery.error = Some(e.without_url().to_string()),
                }
            }
        });
    }
}

/// Throttling off: no rate-limit headers are sent.
const NO_LIMIT: LimitHeaders = LimitHeaders {
    limit: 0,
    remaining: 0,
    reset_secs: 0,
};

/// Why a direct insert was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub struct SimErrorDetail {
    pub status: axum::http::StatusCode,
    pub message: String,
}

pub(crate) mod http_fault {
    /// What a request was decided to suffer.
    #[derive(Debug, Clone, Copy, PartialEq)]
    pub enum Fault {
        None,
        RateLimited,
        Hang,
        Error,
        LostResponse,
    }
}

/// A sim serving on loopback. Dropping it (or [`RunningSim::shutdown`]) stops the server
/// and releases hung requests.
pub struct RunningSim {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    pub addr: SocketAddr,
    pub sim: Sim,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningSim {
    pub fn state(&self) -> State {
        self.sim.state()
    }

    /// Stops serving and waits for the server task.
    pub async fn shutdown(mut self) {
        let _ = self.sim.inner.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.sim.inner.shutdown.send(true);
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
