//! Sync benchmark (prints figures, asserts nothing). The API and its sync worker run in this
//! process against the Cal.com emulator on loopback, on SQLite (and on PostgreSQL too when
//! `DATABASE_URL` is set).
//!
//! 1. Latency: with every emulator answer delayed by L = 100 ms, the time from
//!    `POST /appointments` (with `Prefer: wait=10`, which answers once the sync is final) to
//!    `synced` for a four-segment appointment, as a multiple of L. Segments are booked in
//!    parallel, so the target is <= 1.5 L + 50 ms; one after the other it would be >= 4 L.
//! 2. Throughput: with the emulator throttling the API key at R = 600 requests per minute
//!    (100 per 10 s window, blocked for a window when exceeded — Cal.com's throttler, scaled
//!    down in time) and more work queued than R allows, the bookings made in four windows
//!    as a fraction of R (target >= 0.9), and the share of requests answered 429 (< 1 %).
//!
//! Run: `cargo bench -p phasebook-api --bench sync_latency`
//! (optional `BENCH_LATENCY_RUNS`, default 20).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use calcom_sim::{Faults, RateLimitConfig, RouteFaults, RunningSim, Sim, SimConfig};
use chrono::{TimeDelta, TimeZone, Utc};
use phasebook_api::state::AppState;
use phasebook_api::store::Database;
use phasebook_api::sync::{ClientSettings, SyncConfig};
use phasebook_domain::sync::RetryPolicy;
use phasebook_test_support::TestDatabase;
use phasebook_test_support::fixtures::{self, FixtureSalon, SimAccount};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const L: Duration = Duration::from_millis(100);
const STYLISTS: usize = 10;
/// The emulator's throttle: `LIMIT` requests per `WINDOW` (= 600 per minute).
const LIMIT: u32 = 100;
const WINDOW: Duration = Duration::from_secs(10);
const WINDOWS_MEASURED: u32 = 4;

struct Bench {
    base_url: String,
    http: reqwest::Client,
    salon: FixtureSalon,
    account: SimAccount,
    sim: RunningSim,
    stop: CancellationToken,
    _db: Database,
}

async fn start(
    database: &TestDatabase,
    rate_limit: Option<RateLimitConfig>,
    client_limit: calcom_client::RateLimit,
) -> Result<Bench> {
    let db = database.connect().await.context("database")?;
    let segments = fixtures::segments(4, 30, 0);
    let account = fixtures::sim_account(STYLISTS, &segments);
    let sim = Sim::new(SimConfig {
        rate_limit,
        faults: Faults::default().route("*", RouteFaults::latency(L.as_millis() as u64)),
        webhook: None,
    });
    sim.seed(account.seed.clone())
        .map_err(|e| anyhow::anyhow!("seed: {e}"))?;
    let sim = sim.spawn().await.context("sim")?;
    let salon = fixtures::seed_sim_salon(&db, &sim.base_url, &account, "colour", segments)
        .await
        .context("salon")?;
    // The bench measures the sync, not phasebook's per-key request limit.
    db.keys()
        .update_tenant(
            salon.tenant_id,
            &phasebook_api::store::keys::TenantUpdate {
                rate_limit: Some(phasebook_api::store::keys::ApiRateLimit {
                    per_second: 1_000_000,
                    burst: 1_000_000,
                }),
                ..Default::default()
            },
        )
        .await
        .context("lifting the request limit")?;
    let state = AppState::new(db.clone());
    let stop = CancellationToken::new();
    state.sync.spawn_worker(
        SyncConfig {
            worker_id: "bench".into(),
            retry: RetryPolicy {
                max_attempts: 8,
                base_delay: Duration::from_millis(50),
                max_delay: Duration::from_secs(2),
                min_delay: Duration::from_millis(10),
            },
            client: ClientSettings {
                timeout: Duration::from_secs(5),
                rate_limit: client_limit,
                read_retries: 1,
            },
            ..SyncConfig::default()
        },
        phasebook_api::sync::postgres_pool(&db),
        stop.clone(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let server_stop = stop.clone();
    tokio::spawn(async move {
        let _ = phasebook_api::app::serve(listener, state, async move {
            server_stop.cancelled().await;
        })
        .await;
    });
    Ok(Bench {
        base_url,
        http: reqwest::Client::new(),
        salon,
        account,
        sim,
        stop,
        _db: db,
    })
}

impl Bench {
    /// Appointment `n`: back-to-back two-hour slots per stylist from 2030-04-01.
    fn body(&self, n: usize) -> Value {
        let first = Utc
            .with_ymd_and_hms(2030, 4, 1, 0, 0, 0)
            .single()
            .unwrap_or_default();
        let start = first + TimeDelta::hours(2 * (n / STYLISTS) as i64);
        json!({
            "service_id": "colour",
            "staff_id": self.account.staff[n % STYLISTS].staff_id.as_str(),
            "start": start.to_rfc3339(),
            "customer": {"name": "Ada Lovelace", "email": "ada@example.com"}
        })
    }

    async fn post(&self, n: usize, wait: Option<u32>) -> Result<reqwest::Response> {
        let mut request = self
            .http
            .post(format!("{}/appointments", self.base_url))
            .bearer_auth(&self.salon.ops_key)
            .json(&self.body(n));
        if let Some(seconds) = wait {
            request = request.header("Prefer", format!("wait={seconds}"));
        }
        let response = request.send().await?;
        if response.status() != reqwest::StatusCode::CREATED {
            bail!("POST /appointments answered {}", response.status());
        }
        Ok(response)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

fn in_l(d: Duration) -> f64 {
    d.as_secs_f64() / L.as_secs_f64()
}

async fn latency(database: &TestDatabase, label: &str) -> Result<()> {
    let runs: usize = std::env::var("BENCH_LATENCY_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let bench = start(
        database,
        None,
        calcom_client::RateLimit {
            requests: 1_000_000,
            per: Duration::from_secs(60),
        },
    )
    .await?;
    // One unmeasured booking warms up connections and the tenant's client.
    bench.post(0, Some(10)).await?;
    let mut times = Vec::with_capacity(runs);
    for n in 1..=runs {
        let sent = Instant::now();
        let response = bench.post(n, Some(10)).await?;
        let finished = response
            .headers()
            .get("phasebook-sync-finished")
            .and_then(|v| v.to_str().ok())
            == Some("true");
        let body: Value = response.json().await?;
        let elapsed = sent.elapsed();
        if !finished || body["sync"]["status"] != "synced" {
            bail!("appointment {n} did not reach synced: {}", body["sync"]);
        }
        times.push(elapsed);
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    let target = L.mul_f64(1.5) + Duration::from_millis(50);
    println!(
        "[{label}] POST /appointments -> synced, 4 segments, L = {} ms, {runs} runs: \
         p50 {:.0} ms = {:.2} L, p95 {:.0} ms = {:.2} L, max {:.0} ms = {:.2} L, mean {:.2} L \
         (target <= 1.5 L + 50 ms = {} ms; one segment after the other >= 4 L)",
        L.as_millis(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        in_l(percentile(&times, 0.5)),
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        in_l(percentile(&times, 0.95)),
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        in_l(times.last().copied().unwrap_or_default()),
        in_l(mean),
        target.as_millis(),
    );
    bench.stop.cancel();
    Ok(())
}

async fn throughput(database: &TestDatabase, label: &str) -> Result<()> {
    let bench = start(
        database,
        Some(RateLimitConfig {
            limit: LIMIT,
            window: WINDOW,
            block: WINDOW,
        }),
        // The client is told the same limit Cal.com enforces.
        calcom_client::RateLimit {
            requests: LIMIT,
            per: WINDOW,
        },
    )
    .await?;
    // More than the measured windows allow, so the queue never runs dry.
    let appointments = (LIMIT * (WINDOWS_MEASURED + 1)) as usize / 4 + STYLISTS;
    for n in 0..appointments {
        bench.post(n, None).await?;
    }
    let measured = WINDOW * WINDOWS_MEASURED;
    let deadline = Instant::now() + measured + WINDOW * 2;
    // The measurement starts at the first booking Cal.com made.
    let first = loop {
        if let Some(b) = bench.sim.state().bookings.first() {
            break b.created_at;
        }
        if Instant::now() > deadline {
            bail!("nothing was booked");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let end = first + TimeDelta::from_std(measured)?;
    while Utc::now() < end + TimeDelta::milliseconds(500) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = bench.sim.state();
    let booked = state
        .bookings
        .iter()
        .filter(|b| b.created_at >= first && b.created_at < end)
        .count();
    let (requests, throttled) = state
        .requests
        .values()
        .fold((0, 0), |(r, t), c| (r + c.total, t + c.rate_limited));
    let per_minute = booked as f64 / measured.as_secs_f64() * 60.0;
    let r = f64::from(LIMIT) * 60.0 / WINDOW.as_secs_f64();
    println!(
        "[{label}] throttled at R = {r:.0}/min ({LIMIT} per {} s window): {booked} bookings in \
         {} s = {per_minute:.0}/min = {:.3} R (target >= 0.9); {throttled} of {requests} \
         requests answered 429 = {:.2} % (target < 1 %)",
        WINDOW.as_secs(),
        measured.as_secs(),
        per_minute / r,
        if requests == 0 {
            0.0
        } else {
            throttled as f64 * 100.0 / requests as f64
        },
    );
    bench.stop.cancel();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let postgres = std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    latency(&TestDatabase::sqlite(), "sqlite").await?;
    if postgres && let Some(pg) = TestDatabase::postgres_from_env().await {
        latency(&pg, "postgres").await?;
    }
    throughput(&TestDatabase::sqlite(), "sqlite").await?;
    if postgres && let Some(pg) = TestDatabase::postgres_from_env().await {
        throughput(&pg, "postgres").await?;
    }
    Ok(())
}
