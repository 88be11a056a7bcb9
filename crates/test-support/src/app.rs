//! The one harness, in the `spawn_app` style: a fresh database, a salon on the Cal.com
//! emulator (tenant, service, stylists, every segment mapped), the router on a loopback
//! port and, when asked for, the sync worker in the background. Tests reach everything
//! through the returned [`TestApp`]; "run the worker until idle" is
//! [`TestApp::run_worker_until_idle`].
//!
//! ```ignore
//! let app = spawn_app(database).await;
//! let app = TestApp::builder().stylists(2).worker(fast_sync_config("my-test")).spawn(database).await;
//! ```

use std::time::Duration;

use calcom_sim::{Faults, RateLimitConfig, RunningSim, Seed, Sim, SimConfig};
use chrono::Utc;
use phasebook_api::state::AppState;
use phasebook_api::store::Database;
use phasebook_api::store::keys::{ApiRateLimit, TenantUpdate};
use phasebook_api::sync::{ClientSettings, SyncConfig, SyncHandle, Worker};
use phasebook_domain::SegmentSpec;
use phasebook_domain::sync::RetryPolicy;
use tokio_util::sync::CancellationToken;

use crate::database::TestDatabase;
use crate::fixtures::{self, FixtureSalon, SimAccount};

/// How long [`TestApp::run_worker_until_idle`] waits before it fails the test.
const IDLE_LIMIT: Duration = Duration::from_secs(20);

/// The worker settings the HTTP suites share: quick polls and retries (4 attempts, 20 ms
/// doubling up to 100 ms) and a 700 ms Cal.com timeout without read retries, so a fault
/// shows within a test's patience.
pub fn fast_sync_config(worker_id: &str) -> SyncConfig {
    SyncConfig {
        worker_id: worker_id.into(),
        poll_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            min_delay: Duration::from_millis(5),
        },
        client: ClientSettings {
            timeout: Duration::from_millis(700),
            read_retries: 0,
            ..ClientSettings::default()
        },
        ..SyncConfig::default()
    }
}

/// The worker settings of the fault soaks: 8 attempts from 10 ms doubling up to 200 ms, a
/// 400 ms Cal.com timeout (what a hang costs: the emulator never answers one), one read
/// retry, and no client-side rate limit in the way.
pub fn soak_sync_config(worker_id: &str) -> SyncConfig {
    SyncConfig {
        worker_id: worker_id.into(),
        poll_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(200),
            min_delay: Duration::from_millis(2),
        },
        client: ClientSettings {
            timeout: Duration::from_millis(400),
            rate_limit: calcom_client::RateLimit {
                requests: 1_000_000,
                per: Duration::from_secs(60),
            },
            read_retries: 1,
        },
        ..SyncConfig::default()
    }
}

/// The emulator with `config`, seeded with `seed` (e.g. a [`SimAccount`]'s), on a
/// loopback port.
pub async fn spawn_sim(config: SimConfig, seed: Seed) -> RunningSim {
    let sim = Sim::new(config);
    sim.seed(seed).expect("seeding the emulator");
    sim.spawn().await.expect("starting the emulator")
}

/// The emulator's settings for suites that inject faults: Cal.com's own throttling is
/// out of the way (a million requests a minute), and a 429 (injected or not) asks the
/// client to wait one second, as Cal.com's block does.
pub fn faulty_sim(faults: Faults) -> SimConfig {
    SimConfig {
        faults,
        rate_limit: Some(RateLimitConfig {
            limit: 1_000_000,
            window: Duration::from_secs(60),
            block: Duration::from_secs(1),
        }),
        ..SimConfig::default()
    }
}

/// The default app: one stylist, a 4-segment service `colour` of 30-minute segments, the
/// emulator with default settings, and the worker in the background.
pub async fn spawn_app(database: TestDatabase) -> TestApp {
    TestApp::builder().spawn(database).await
}

/// A change a test makes to what the harness built, before it is used.
type Change<T> = Box<dyn FnOnce(&mut T)>;

/// What the harness starts, and how.
pub struct TestAppBuilder {
    stylists: usize,
    segments: Vec<SegmentSpec>,
    service: String,
    sim: SimConfig,
    worker: Option<SyncConfig>,
    request_limit: Option<u32>,
    account: Option<Change<SimAccount>>,
    state: Option<Change<AppState>>,
}

impl Default for TestAppBuilder {
    fn default() -> Self {
        Self {
            stylists: 1,
            segments: fixtures::segments(4, 30, 0),
            service: "colour".into(),
            sim: SimConfig::default(),
            worker: Some(fast_sync_config("test-worker")),
            request_limit: None,
            account: None,
            state: None,
        }
    }
}

impl TestAppBuilder {
    /// Stylists `stylist-1`, … (Cal.com users 501, …); 1 by default.
    pub fn stylists(mut self, count: usize) -> Self {
        self.stylists = count;
        self
    }

    /// The service's segments; four of 30 minutes without gaps by default.
    pub fn segments(mut self, segments: Vec<SegmentSpec>) -> Self {
        self.segments = segments;
        self
    }

    /// The service id; `colour` by default.
    pub fn service(mut self, service_id: &str) -> Self {
        self.service = service_id.into();
        self
    }

    /// The emulator's settings (faults, throttling, webhooks).
    pub fn sim(mut self, config: SimConfig) -> Self {
        self.sim = config;
        self
    }

    /// The background worker's settings; [`fast_sync_config`] by default.
    pub fn worker(mut self, config: SyncConfig) -> Self {
        self.worker = Some(config);
        self
    }

    /// No background worker: the test drives it with [`TestApp::run_worker_until_idle`].
    pub fn without_worker(mut self) -> Self {
        self.worker = None;
        self
    }

    /// Lifts the salon's per-key request limit to `per_second` (burst alike), for suites
    /// that send many requests on one key and are not about that limit.
    pub fn request_limit(mut self, per_second: u32) -> Self {
        self.request_limit = Some(per_second);
        self
    }

    /// Changes the Cal.com account before the emulator is seeded (extra keys, users).
    pub fn account(mut self, change: impl FnOnce(&mut SimAccount) + 'static) -> Self {
        self.account = Some(Box::new(change));
        self
    }

    /// Changes the app's state before it serves (e.g. another free-time reader).
    pub fn state(mut self, change: impl FnOnce(&mut AppState) + 'static) -> Self {
        self.state = Some(Box::new(change));
        self
    }

    /// Database, emulator and salon, not yet serving: for suites that store more before
    /// the app starts. [`Seeded::serve`] starts it.
    pub async fn seed(mut self, database: TestDatabase) -> Seeded {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let db = database.connect().await.expect("database");
        let mut account = fixtures::sim_account(self.stylists, &self.segments);
        if let Some(change) = self.account.take() {
            change(&mut account);
        }
        let sim = spawn_sim(self.sim.clone(), account.seed.clone()).await;
        let salon = fixtures::seed_sim_salon(
            &db,
            &sim.base_url,
            &account,
            &self.service,
            self.segments.clone(),
        )
        .await
        .expect("salon");
        if let Some(per_second) = self.request_limit {
            lift_request_limit(&db, &salon, per_second).await;
        }
        Seeded {
            db,
            salon,
            account,
            sim,
            database,
            builder: self,
        }
    }

    /// Everything, serving.
    pub async fn spawn(self, database: TestDatabase) -> TestApp {
        self.seed(database).await.serve().await
    }
}

/// Sets the salon's per-key request limit to `per_second`, burst alike.
pub async fn lift_request_limit(db: &Database, salon: &FixtureSalon, per_second: u32) {
    db.keys()
        .update_tenant(
            salon.tenant_id,
            &TenantUpdate {
                rate_limit: Some(ApiRateLimit {
                    per_second,
                    burst: per_second,
                }),
                ..Default::default()
            },
        )
        .await
        .expect("setting the request limit");
}

/// Serves the router of `state` on a loopback port until `stop` is cancelled; returns
/// `http://127.0.0.1:<port>`.
pub async fn serve_app(state: AppState, stop: CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = phasebook_api::app::serve(listener, state, async move {
            stop.cancelled().await;
        })
        .await;
    });
    url
}

/// A seeded salon whose app is not serving yet.
pub struct Seeded {
    pub db: Database,
    pub salon: FixtureSalon,
    pub account: SimAccount,
    pub sim: RunningSim,
    pub database: TestDatabase,
    builder: TestAppBuilder,
}

impl Seeded {
    /// Starts the router on a loopback port, and the worker when one was asked for.
    pub async fn serve(mut self) -> TestApp {
        let mut state = AppState::new(self.db.clone());
        if let Some(change) = self.builder.state.take() {
            change(&mut state);
        }
        let stop = CancellationToken::new();
        let sync = state.sync.clone();
        let worker = self.builder.worker.clone();
        if let Some(config) = &worker {
            state.sync.spawn_worker(
                config.clone(),
                phasebook_api::sync::postgres_pool(&self.db),
                stop.clone(),
            );
        }
        let url = serve_app(state, stop.clone()).await;
        TestApp {
            url,
            http: reqwest::Client::new(),
            db: self.db,
            sync,
            salon: self.salon,
            account: self.account,
            sim: self.sim,
            stop,
            database: self.database,
            worker,
        }
    }
}

/// A running app; stops its server and worker when dropped.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub http: reqwest::Client,
    pub db: Database,
    /// The app's sync handle (store, wake-ups, finished runs).
    pub sync: SyncHandle,
    pub salon: FixtureSalon,
    pub account: SimAccount,
    pub sim: RunningSim,
    pub stop: CancellationToken,
    pub database: TestDatabase,
    worker: Option<SyncConfig>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// `method path` on the app as `key`, with `body` as JSON when there is one.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<serde_json::Value>,
    ) -> reqwest::Response {
        send_as(&self.http, &self.url, method, path, key, body.as_ref()).await
    }

    /// Until no sync job is outstanding: with a background worker, waits for it; without
    /// one, runs a worker in this task (waiting for scheduled retries). Fails the test
    /// when jobs are still outstanding after 20 s.
    pub async fn run_worker_until_idle(&self) {
        match &self.worker {
            Some(_) => wait_until_idle(&self.sync, IDLE_LIMIT, "the database").await,
            None => {
                run_until_idle(&Worker::new(
                    self.sync.clone(),
                    fast_sync_config("test-drain"),
                ))
                .await
            }
        }
    }
}

/// A plain HTTP client (reqwest wants a TLS provider installed even for plain HTTP).
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("http client")
}

/// `method {base_url}{path}` as `key`, with `body` as JSON when there is one: for suites
/// whose app is not a [`TestApp`].
pub async fn send_as(
    http: &reqwest::Client,
    base_url: &str,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Option<&serde_json::Value>,
) -> reqwest::Response {
    let mut request = http
        .request(method, format!("{base_url}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().await.expect("request")
}

/// A response's `Content-Type`, empty when it has none.
pub fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// Runs `worker` in this task, waiting for scheduled retries, until no job is
/// outstanding; fails the test when some still are after 20 s.
pub async fn run_until_idle(worker: &Worker) {
    let left = worker
        .run_until_idle(IDLE_LIMIT)
        .await
        .expect("running the worker");
    assert_eq!(left, 0, "jobs left outstanding");
}

/// Waits, polling, until a worker running elsewhere left no job outstanding; fails the
/// test after `limit`, naming `backend`.
pub async fn wait_until_idle(handle: &SyncHandle, limit: Duration, backend: &str) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let (outstanding, _) = handle
            .store()
            .outstanding_jobs(Utc::now())
            .await
            .expect("outstanding");
        if outstanding == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{outstanding} jobs still outstanding on {backend}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
